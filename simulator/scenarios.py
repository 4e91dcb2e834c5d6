"""Scenarios: what goes wrong (or changes) on the simulated site, and when.

A ``Scenario`` is declarative: a kind, a start, an optional end, a strength and
the kind's options (defaults filled in). ``Scenarios`` is the list a run plays;
it is read from CLI specs or a JSON/TOML file::

    malformed:start=2026-11-20T06:00,strength=0.01
    taste_drift:genre=Horror,strength=1.0,start=+2d
    follow:strength=0.9

``start``/``end`` are local ISO times (like the movielog's) or offsets from the
run's origin (``+6h``, ``+1d12h``, ``+90s``); without a start a scenario is on
from the beginning of the run. What each kind does is applied by
simulator.director (time-dependent effects) and simulator.damage (broken lines).
"""

from __future__ import annotations

import ipaddress
import json
import re
import tomllib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Any

from simulator.catalog import GENRE_NAMES


class ScenarioError(ValueError):
    """A scenario spec or file that cannot be understood."""


@dataclass(frozen=True)
class Kind:
    """One kind of scenario: what it does, what its strength means, its options and defaults."""

    name: str
    doc: str
    strength: float  # default
    strength_doc: str
    options: Mapping[str, tuple[Any, str]] = field(default_factory=dict)  # name -> (default, doc)
    modes: str = "backfill, live"
    max_strength: float | None = None


FORMS = ("space_time", "extra_field")

KINDS: dict[str, Kind] = {
    kind.name: kind
    for kind in (
        Kind(
            "malformed",
            "an extra damaged copy of a real line, of a kind drawn from a table covering every "
            "reason the grammar rejects (the real line is kept)",
            0.01,
            "probability per emitted line",
            max_strength=1.0,
        ),
        Kind(
            "format_drift",
            "lines written in a new format the grammar does not accept (they replace the real line)",
            0.1,
            "share of lines in the new format",
            {
                "form": ("space_time", "space_time (a space instead of 'T') or extra_field"),
                "field": ("device", "name of the trailing field of form=extra_field"),
            },
            max_strength=1.0,
        ),
        Kind(
            "catalog_outage",
            "the catalog API fails (set through its /_faults admin route)",
            1.0,
            "share of answers failing; 1 = full outage (every answer 503)",
            modes="live (backfill: recorded only)",
            max_strength=1.0,
        ),
        Kind(
            "taste_drift",
            "a genre rising: viewers like its movies more (the ground truth stays unchanged)",
            0.8,
            "affinity bonus for the genre's movies (standard units)",
            {
                "genre": ("Horror", "TMDB genre name"),
                "ramp_hours": (0.0, "hours to grow from 0 to full strength (0: at once)"),
            },
        ),
        Kind(
            "new_releases",
            "the newest movies are held back (not watchable, not browsable) until start, then enter "
            "with a popularity boost",
            0.02,
            "share of movies held back, newest by release date",
            {
                "count": (0, "number of movies held back (overrides strength when > 0)"),
                "boost": (3.0, "popularity multiplier once released"),
            },
            max_strength=1.0,
        ),
        Kind(
            "rating_spam",
            "a ring of new accounts watching a few minutes of one movie and rating it 5",
            1.0,
            "sessions per hour per account",
            {
                "accounts": (50, "accounts in the ring"),
                "movie": ("", "target movie id (default: the least popular movie)"),
                "minutes": (3, "at most this many minutes watched per session"),
                "first_id": (0, "first account id (0: just above the world's users)"),
            },
        ),
        Kind(
            "scraper",
            "a client enumerating GET /recommend/<id> on our service over consecutive user ids "
            "(the site's client did not make these calls: no movielog lines)",
            20.0,
            "requests per second",
            {
                "first": (1, "first user id requested"),
                "source": (
                    "127.0.0.2",
                    "address the scraper connects from, as another host would ('': the system's choice)",
                ),
            },
            modes="live (backfill: recorded only)",
        ),
        Kind(
            "follow",
            "the viewers-follow-recommendations knob changes (drives feedback loops)",
            0.9,
            "the knob from start (0..1)",
            max_strength=1.0,
        ),
    )
}


@dataclass(frozen=True)
class Scenario:
    """One scenario of a run; ``options`` holds every option of its kind (defaults filled in)."""

    kind: str
    start: datetime
    end: datetime | None
    strength: float
    options: dict[str, Any]

    def active(self, moment: datetime) -> bool:
        return self.start <= moment and (self.end is None or moment < self.end)

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "start": self.start.isoformat(),
            "end": None if self.end is None else self.end.isoformat(),
            "strength": self.strength,
            "options": dict(self.options),
        }


def make(
    kind: str,
    start: datetime,
    end: datetime | None = None,
    strength: float | None = None,
    options: Mapping[str, Any] | None = None,
) -> Scenario:
    """A validated scenario with the kind's defaults filled in."""
    spec = KINDS.get(kind)
    if spec is None:
        raise ScenarioError(f"unknown scenario kind {kind!r} (one of: {', '.join(KINDS)})")
    strength = spec.strength if strength is None else float(strength)
    if not strength >= 0 or (spec.max_strength is not None and strength > spec.max_strength):
        upper = "" if spec.max_strength is None else f", at most {spec.max_strength:g}"
        raise ScenarioError(f"{kind}: strength must be >= 0{upper}, not {strength}")
    if end is not None and end <= start:
        raise ScenarioError(f"{kind}: end {end} is not after start {start}")
    values = {name: default for name, (default, _) in spec.options.items()}
    for name, value in (options or {}).items():
        if name not in spec.options:
            known = ", ".join(spec.options) or "none"
            raise ScenarioError(f"{kind}: unknown option {name!r} (options: {known})")
        values[name] = _coerce(kind, name, value, spec.options[name][0])
    _check_options(kind, values)
    return Scenario(kind, start, end, strength, values)


def _coerce(kind: str, name: str, value: Any, default: Any) -> Any:
    try:
        if isinstance(default, int):
            return int(value)
        if isinstance(default, float):
            return float(value)
    except (TypeError, ValueError):
        raise ScenarioError(f"{kind}: option {name}={value!r} is not a {type(default).__name__}") from None
    return str(value)


def _check_options(kind: str, values: dict[str, Any]) -> None:
    if kind == "format_drift" and values["form"] not in FORMS:
        raise ScenarioError(f"format_drift: form must be one of {', '.join(FORMS)}")
    if kind == "format_drift" and not re.fullmatch(r"[A-Za-z0-9_.-]+", values["field"]):
        raise ScenarioError("format_drift: field must be a plain word")
    if kind == "taste_drift":
        values["genre"] = genre_name(values["genre"])
        if values["ramp_hours"] < 0:
            raise ScenarioError("taste_drift: ramp_hours must be >= 0")
    if kind == "new_releases" and (values["count"] < 0 or values["boost"] <= 0):
        raise ScenarioError("new_releases: count must be >= 0 and boost > 0")
    if kind == "rating_spam" and (values["accounts"] < 1 or values["minutes"] < 1 or values["first_id"] < 0):
        raise ScenarioError("rating_spam: accounts and minutes must be >= 1, first_id >= 0")
    if kind == "scraper" and values["first"] < 1:
        raise ScenarioError("scraper: first must be a user id >= 1")
    if kind == "scraper" and values["source"]:
        try:
            ipaddress.ip_address(values["source"])
        except ValueError:
            raise ScenarioError(f"scraper: source {values['source']!r} is no IP address") from None


def genre_name(text: str) -> str:
    """The TMDB genre name for ``text`` (any case; '_' or '+' for spaces)."""
    wanted = re.sub(r"[_+]", " ", text).strip().lower()
    for name in GENRE_NAMES:
        if name.lower() == wanted:
            return name
    raise ScenarioError(f"unknown genre {text!r} (one of: {', '.join(GENRE_NAMES)})")


# --- times -----------------------------------------------------------------------

_OFFSET_RE = re.compile(r"\+((?:\d+(?:\.\d+)?[dhms])+)")
_OFFSET_PART_RE = re.compile(r"(\d+(?:\.\d+)?)([dhms])")
_UNIT_SECONDS = {"d": 86_400, "h": 3_600, "m": 60, "s": 1}


def parse_when(value: str | datetime, origin: datetime) -> datetime:
    """A local time: ISO 8601 (``2026-11-20T06:00``) or an offset from ``origin`` (``+1d6h``)."""
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, date):  # a TOML local date
        moment = datetime.combine(value, time())
    elif not isinstance(value, str):
        raise ScenarioError(f"not a time: {value!r}")
    else:
        text = value.strip()
        offset = _OFFSET_RE.fullmatch(text)
        if offset:
            seconds = sum(
                float(number) * _UNIT_SECONDS[unit] for number, unit in _OFFSET_PART_RE.findall(offset[1])
            )
            return origin + timedelta(seconds=seconds)
        try:
            moment = datetime.fromisoformat(text)
        except ValueError:
            raise ScenarioError(f"not a time: {value!r} (ISO 8601 like 2026-11-20T06:00, or +6h)") from None
    if moment.tzinfo is not None:
        raise ScenarioError(f"{value!r}: use local time without an offset, as the movielog does")
    return moment


# --- the list a run plays --------------------------------------------------------


@dataclass(frozen=True)
class Scenarios:
    """The scenarios of a run, in the order given."""

    items: tuple[Scenario, ...] = ()

    def __iter__(self) -> Iterator[Scenario]:
        return iter(self.items)

    def __len__(self) -> int:
        return len(self.items)

    def __add__(self, other: Scenarios) -> Scenarios:
        return Scenarios(self.items + other.items)

    def of(self, kind: str) -> list[Scenario]:
        return [s for s in self.items if s.kind == kind]

    @classmethod
    def of_specs(cls, specs: Iterable[str], origin: datetime) -> Scenarios:
        """From CLI specs, ``kind[:key=value,...]`` (keys: start, end, strength and the kind's options)."""
        return cls(tuple(parse_spec(spec, origin) for spec in specs))

    @classmethod
    def load(cls, path: Path, origin: datetime) -> Scenarios:
        """From a JSON file (a list, or ``{"scenario": [...]}``) or a TOML file (``[[scenario]]`` tables)."""
        try:
            text = Path(path).read_text()
        except OSError as exc:
            raise ScenarioError(f"cannot read scenarios file {path}: {exc}") from None
        try:
            data: Any = tomllib.loads(text) if Path(path).suffix == ".toml" else json.loads(text)
        except (tomllib.TOMLDecodeError, json.JSONDecodeError) as exc:
            raise ScenarioError(f"{path}: {exc}") from None
        if isinstance(data, dict):
            data = data.get("scenario", data.get("scenarios"))
        if not isinstance(data, list) or not all(isinstance(entry, dict) for entry in data):
            raise ScenarioError(f"{path}: expected a list of scenario tables")
        return cls(tuple(from_mapping(entry, origin) for entry in data))

    @classmethod
    def gather(cls, specs: Sequence[str], file: Path | None, origin: datetime) -> Scenarios:
        """The file's scenarios (if any), then the specs'."""
        loaded = cls.load(file, origin) if file is not None else cls()
        return loaded + cls.of_specs(specs, origin)


def parse_spec(spec: str, origin: datetime) -> Scenario:
    """``malformed:start=2026-11-20T06:00,strength=0.01`` -> a Scenario."""
    kind, _, rest = spec.strip().partition(":")
    entry: dict[str, Any] = {"kind": kind.strip()}
    for part in filter(None, (p.strip() for p in rest.split(","))):
        key, equals, value = part.partition("=")
        if not equals:
            raise ScenarioError(f"{spec!r}: expected key=value, got {part!r}")
        entry[key.strip()] = value.strip()
    return from_mapping(entry, origin)


def from_mapping(entry: Mapping[str, Any], origin: datetime) -> Scenario:
    """A scenario from a table: kind, start, end, strength, options (or the options inline)."""
    values = dict(entry)
    kind = values.pop("kind", None)
    if not isinstance(kind, str):
        raise ScenarioError(f"scenario without a kind: {dict(entry)}")
    start_value = values.pop("start", None)
    start = parse_when(start_value, origin) if start_value is not None else origin
    end_value = values.pop("end", None)
    end = parse_when(end_value, origin) if end_value is not None else None
    strength = values.pop("strength", None)
    try:
        strength = None if strength is None else float(strength)
    except (TypeError, ValueError):
        raise ScenarioError(f"{kind}: strength {strength!r} is not a number") from None
    options = dict(values.pop("options", None) or {}) | values
    return make(kind, start, end, strength, options)


def describe_kinds() -> str:
    """The kinds, their strength and options with defaults: what ``movierec world scenario list`` prints."""
    out = []
    for kind in KINDS.values():
        out.append(f"{kind.name}  [{kind.modes}]")
        out.append(f"    {kind.doc}")
        out.append(f"    strength = {kind.strength:g}: {kind.strength_doc}")
        for name, (default, doc) in kind.options.items():
            out.append(f"    {name} = {default!r}: {doc}")
    out.append("")
    out.append("every kind also takes start= and end= (ISO local time, or +1d6h from the run's start)")
    return "\n".join(out)
