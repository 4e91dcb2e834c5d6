"""The movielog grammar: the one parser and formatter of the site's event lines.

Every part of movierec that reads or writes movielog lines (ingest, monitoring,
the simulator, the ``movierec parse`` command) goes through this module, so the
format is defined in exactly one place. See DESIGN.md, "The movielog stream":

    <time>,<userid>,recommendation request <server>, status <code>, result: <recs>, <ms> ms
    <time>,<userid>,GET /data/m/<movieid>/<minute>.mpg
    <time>,<userid>,GET /rate/<movieid>=<rating>

``parse_line`` never raises on bad input: it returns a typed event or a
``Malformed`` value carrying a ``Reason`` code, so callers can quarantine and
count instead of crashing. It is the reference. ``parse_batch`` parses a whole
batch into Arrow columns: well-formed lines in the plain form the site writes
are matched and converted by pyarrow compute (RE2, vectorised); every other
line (malformed, non-ASCII ids, 19-digit user ids...) goes through
``parse_line``, so the fast path only ever accepts, and every reason and
detail comes from the reference.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from functools import cache
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np
    import pyarrow as pa

# numpy and pyarrow are imported inside the batch functions: the service imports this module
# for the user-id rule, and its workers should not pay for them at start.

MAX_USER_ID = 2**63 - 1  # what fits a signed 64-bit column in Parquet and SQLite
MAX_LINE_CHARS = 64 * 1024  # a longer line is not something the site writes
MIN_RATING, MAX_RATING = 1, 5

# Three timestamp forms: seconds, fractional seconds (1-6 digits), minutes.
# Checked by regex first because datetime.fromisoformat accepts far more
# (week dates, offsets, a space separator) than the site writes.
_TIME_RE = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(?::\d{2}(?:\.\d{1,6})?)?")
_USER_RE = re.compile(r"[1-9][0-9]{0,18}")
# A movie id is a slug of the title and the year: no spaces, commas, slashes or
# '=' (those delimit the line), ending in '+<4-digit year>'.
MOVIE_ID_PATTERN = r"[^\s,/=+][^\s,/=]*\+[0-9]{4}"
_MOVIE_ID_RE = re.compile(MOVIE_ID_PATTERN)
_MINUTE_RE = re.compile(r"0|[1-9][0-9]{0,8}")
_RECO_RE = re.compile(
    r"recommendation request (?P<server>\S+?), status (?P<status>[^,]*), "
    r"result: (?P<result>.*), (?P<latency>[^,]*) ms",
    re.DOTALL,
)
_WATCH_PREFIX = "GET /data/m/"
_WATCH_STEM = "GET /data/m"  # a watch request with a broken path, e.g. no '/' after 'm'
_RATE_PREFIX = "GET /rate/"
_RECO_PREFIX = "recommendation request "
_HTTP_STATUS_RE = re.compile(r"0|[1-9][0-9]{2}")
_LATENCY_RE = re.compile(r"0|[1-9][0-9]{0,8}")


class Reason(StrEnum):
    """Why a line was rejected; stable codes stored in the quarantine table."""

    EMPTY = "empty"
    NOT_UTF8 = "not_utf8"
    TOO_LONG = "too_long"
    TRUNCATED = "truncated"  # fewer than the three comma-separated fields
    BAD_TIME = "bad_time"
    BAD_USER = "bad_user"
    UNKNOWN_REQUEST = "unknown_request"
    BAD_MOVIE_ID = "bad_movie_id"
    BAD_WATCH_PATH = "bad_watch_path"
    BAD_MINUTE = "bad_minute"
    BAD_RATE_REQUEST = "bad_rate_request"
    BAD_RATING = "bad_rating"
    EXTRA_FIELDS = "extra_fields"
    BAD_RECO_REQUEST = "bad_reco_request"
    MISSING_STATUS = "missing_status"
    BAD_STATUS = "bad_status"
    BAD_LATENCY = "bad_latency"
    BAD_RESULT = "bad_result"


@dataclass(frozen=True, slots=True)
class WatchEvent:
    """One minute of a movie streamed to a user."""

    time: datetime
    user_id: int
    movie_id: str
    minute: int

    kind = "watch"


@dataclass(frozen=True, slots=True)
class RateEvent:
    """A user's 1-5 star rating of a movie."""

    time: datetime
    user_id: int
    movie_id: str
    rating: int

    kind = "rate"


@dataclass(frozen=True, slots=True)
class RecoEvent:
    """The site's record of one call to a recommendation service.

    On status 200 ``items`` holds the ids as the site parsed them and ``error``
    is None; on any other status (0 = timeout or refused) ``items`` is empty and
    ``error`` holds the client's text.
    """

    time: datetime
    user_id: int
    server: str
    status: int
    items: tuple[str, ...]
    error: str | None
    latency_ms: int

    kind = "reco"


Event = WatchEvent | RateEvent | RecoEvent


@dataclass(frozen=True, slots=True)
class Malformed:
    """A line that is not in the grammar, with the reason it was rejected."""

    reason: Reason
    line: str
    detail: str = ""


# --- formatting -------------------------------------------------------------


def format_time(moment: datetime) -> str:
    """Seconds precision, with a fraction only when there is one (as the site does)."""
    if moment.microsecond:
        return moment.isoformat(timespec="microseconds").rstrip("0")
    return moment.isoformat(timespec="seconds")


def format_event(event: Event) -> str:
    """The exact line the site writes for ``event`` (no trailing newline)."""
    head = f"{format_time(event.time)},{event.user_id},"
    if isinstance(event, WatchEvent):
        return f"{head}GET /data/m/{event.movie_id}/{event.minute}.mpg"
    if isinstance(event, RateEvent):
        return f"{head}GET /rate/{event.movie_id}={event.rating}"
    if isinstance(event, RecoEvent):
        result = ", ".join(event.items) if event.status == 200 else (event.error or "")
        return (
            f"{head}recommendation request {event.server}, status {event.status}, "
            f"result: {result}, {event.latency_ms} ms"
        )
    raise TypeError(f"not a movielog event: {event!r}")


# --- parsing ----------------------------------------------------------------


def parse_time(text: str) -> datetime | None:
    """One of the three timestamp forms, or None."""
    if not _TIME_RE.fullmatch(text):
        return None
    try:
        return datetime.fromisoformat(text)
    except ValueError:  # e.g. month 13 or 25 o'clock
        return None


def parse_user_id(text: str) -> int | None:
    """A positive decimal integer that fits 64 bits, written without sign or leading zeros."""
    if not _USER_RE.fullmatch(text):
        return None
    value = int(text)
    return value if value <= MAX_USER_ID else None


def is_movie_id(text: str) -> bool:
    return _MOVIE_ID_RE.fullmatch(text) is not None


def parse_line(raw: str | bytes) -> Event | Malformed:
    """Parse one movielog line (a trailing newline is allowed) into an event."""
    if isinstance(raw, bytes):
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            return Malformed(Reason.NOT_UTF8, raw.decode("utf-8", "backslashreplace"), str(exc))
    else:
        line = raw
    line = line.removesuffix("\n").removesuffix("\r")
    if not line.strip():
        return Malformed(Reason.EMPTY, line)
    if len(line) > MAX_LINE_CHARS:
        return Malformed(Reason.TOO_LONG, line, f"{len(line)} characters")

    fields = line.split(",", 2)
    if len(fields) < 3:
        return Malformed(Reason.TRUNCATED, line, f"{len(fields)} of 3 fields")
    time_text, user_text, request = fields
    moment = parse_time(time_text)
    if moment is None:
        return Malformed(Reason.BAD_TIME, line, time_text)
    user_id = parse_user_id(user_text)
    if user_id is None:
        return Malformed(Reason.BAD_USER, line, user_text)

    if request.startswith(_WATCH_PREFIX):
        return _parse_watch(line, moment, user_id, request)
    if request.startswith(_RATE_PREFIX):
        return _parse_rate(line, moment, user_id, request)
    if request.startswith(_RECO_PREFIX):
        return _parse_reco(line, moment, user_id, request)
    if request.startswith(_WATCH_STEM):
        return Malformed(Reason.BAD_WATCH_PATH, line, request[len(_WATCH_STEM) :][:80])
    return Malformed(Reason.UNKNOWN_REQUEST, line, request[:80])


def _parse_watch(line: str, moment: datetime, user_id: int, request: str) -> Event | Malformed:
    if "," in request:
        return Malformed(Reason.EXTRA_FIELDS, line)
    path = request[len(_WATCH_PREFIX) :]
    movie_id, slash, file_name = path.rpartition("/")
    if not slash or not file_name.endswith(".mpg"):
        return Malformed(Reason.BAD_WATCH_PATH, line, path)
    if not is_movie_id(movie_id):
        return Malformed(Reason.BAD_MOVIE_ID, line, movie_id)
    minute_text = file_name[: -len(".mpg")]
    if not _MINUTE_RE.fullmatch(minute_text):
        return Malformed(Reason.BAD_MINUTE, line, minute_text)
    return WatchEvent(moment, user_id, movie_id, int(minute_text))


def _parse_rate(line: str, moment: datetime, user_id: int, request: str) -> Event | Malformed:
    if "," in request:
        return Malformed(Reason.EXTRA_FIELDS, line)
    movie_id, equals, rating_text = request[len(_RATE_PREFIX) :].rpartition("=")
    if not equals:
        return Malformed(Reason.BAD_RATE_REQUEST, line, "no '=<rating>'")
    if not is_movie_id(movie_id):
        return Malformed(Reason.BAD_MOVIE_ID, line, movie_id)
    if len(rating_text) != 1 or not MIN_RATING <= ord(rating_text) - ord("0") <= MAX_RATING:
        return Malformed(Reason.BAD_RATING, line, rating_text)
    return RateEvent(moment, user_id, movie_id, int(rating_text))


def _parse_reco(line: str, moment: datetime, user_id: int, request: str) -> Event | Malformed:
    match = _RECO_RE.fullmatch(request)
    if match is None:
        if ", status " not in request:
            return Malformed(Reason.MISSING_STATUS, line)
        if not request.endswith(" ms"):
            return Malformed(Reason.BAD_LATENCY, line, "no '<ms> ms' at the end")
        return Malformed(Reason.BAD_RECO_REQUEST, line)
    status_text, latency_text = match["status"], match["latency"]
    if not _HTTP_STATUS_RE.fullmatch(status_text):
        return Malformed(Reason.BAD_STATUS, line, status_text)
    if not _LATENCY_RE.fullmatch(latency_text):
        return Malformed(Reason.BAD_LATENCY, line, latency_text)
    status, result = int(status_text), match["result"]
    if status != 200:
        return RecoEvent(moment, user_id, match["server"], status, (), result, int(latency_text))
    items = tuple(result.split(", ")) if result else ()
    for item in items:
        if not is_movie_id(item):
            return Malformed(Reason.BAD_RESULT, line, item[:80])
    return RecoEvent(moment, user_id, match["server"], status, items, None, int(latency_text))


# --- parsing a whole batch (vectorised, same results as parse_line) --------------------

# The fast path's grammar: a strict subset of the reference, written with explicit ASCII
# classes (RE2's \s and \d differ from Python's), so whatever it accepts parse_line
# accepts with the same values. Years 1000-9999, valid clock fields (the day of the month
# is checked below), user ids of at most 18 digits (always under MAX_USER_ID).
_FAST_HEAD = (
    r"^[1-9][0-9]{3}-(?:0[1-9]|1[0-2])-(?:0[1-9]|[12][0-9]|3[01])"
    r"T(?:[01][0-9]|2[0-3]):[0-5][0-9](?::[0-5][0-9](?:\.[0-9]{1,6})?)?"
    r",[1-9][0-9]{0,17},"
)
# A movie id of printable ASCII without space , / = (and no leading '+'), ending '+<year>'.
_FAST_MOVIE = r"[!-*\-.0-9:-<>-~][!-+\-.0-9:-<>-~]*\+[0-9]{4}"
_FAST_LINE = (
    _FAST_HEAD + r"(?:GET /data/m/" + _FAST_MOVIE + r"/(?:0|[1-9][0-9]{0,8})\.mpg"
    r"|GET /rate/" + _FAST_MOVIE + r"=[1-5]"
    r"|recommendation request [!-~]+, status (?:0|[1-9][0-9]{2}), result: .*, (?:0|[1-9][0-9]{0,8}) ms)$"
)
# Only run on lines _FAST_LINE accepted, whose split into these groups is unique.
_FAST_RECO = (
    r"^[^,]*,[^,]*,recommendation request (?P<server>[^ ]+), status (?P<status>[0-9]+), "
    r"result: (?P<result>.*), (?P<latency>[0-9]+) ms$"
)
_FAST_ITEM = "^" + _FAST_MOVIE + "$"
# The lake's event columns (without the Kafka coordinates) and the line's row in the batch.
_DAYS_IN_MONTH = (0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)


@cache
def _event_schemas() -> dict[str, pa.Schema]:
    import pyarrow as pa

    from movierec.schemas import EVENT_TABLES

    return {
        kind: pa.schema([*(f for f in schema if f.name not in ("partition", "offset")), ("row", pa.int64())])
        for kind, schema in EVENT_TABLES.items()
    }


@dataclass(frozen=True)
class ParsedBatch:
    """A batch of lines parsed into columns; ``row`` columns index the input lines."""

    lines: pa.StringArray  # each line as text (undecodable bytes as backslash escapes)
    undecodable: np.ndarray  # bool per line: not UTF-8 (its original bytes are worth keeping)
    events: dict[str, pa.Table]  # watch, rate, reco: the event fields and "row", in line order
    malformed: list[tuple[int, Malformed]]  # (row, why), in line order
    fallback: int  # lines the fast path could not decide, parsed one by one by parse_line


def decode_lines(values: Sequence[bytes]) -> tuple[pa.StringArray, np.ndarray]:
    """The lines as an Arrow string array, and which of them were not valid UTF-8."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    binary = _binary_array(values)
    bad = np.zeros(len(values), dtype=bool)
    _find_undecodable(binary, 0, bad)
    if bad.any():  # escaped as parse_line and the raw table show them
        texts = pa.array([values[i].decode("utf-8", "backslashreplace") for i in np.flatnonzero(bad)])
        rows = pa.array(np.maximum(np.cumsum(bad) - 1, 0))  # the escaped text of each bad line
        binary = pc.if_else(pa.array(bad), texts.cast(pa.binary()).take(rows), binary)
    return binary.cast(pa.string()), bad


def _binary_array(values: Sequence[bytes]) -> pa.BinaryArray:
    """The values as one Arrow array, built from a joined buffer (several times faster than pa.array)."""
    import numpy as np
    import pyarrow as pa

    lengths = np.fromiter(map(len, values), np.int64, len(values))
    if lengths.sum() >= 2**31:  # beyond 32-bit offsets: let pyarrow chunk it
        return pa.array(values, pa.binary())
    offsets = np.zeros(len(values) + 1, np.int32)
    np.cumsum(lengths, out=offsets[1:])
    buffers = [None, pa.py_buffer(offsets), pa.py_buffer(b"".join(values))]
    return pa.Array.from_buffers(pa.binary(), len(values), buffers)


def _find_undecodable(binary: pa.Array, begin: int, bad: np.ndarray) -> None:
    """Mark the lines that are not UTF-8: halve each slice that fails to cast (cheap for a few bad lines)."""
    import pyarrow as pa

    try:
        binary.cast(pa.string())
        return
    except pa.ArrowInvalid:
        pass
    if len(binary) == 1:
        bad[begin] = True
        return
    half = len(binary) // 2
    _find_undecodable(binary.slice(0, half), begin, bad)
    _find_undecodable(binary.slice(half), begin + half, bad)


def parse_batch(values: Sequence[bytes]) -> ParsedBatch:
    """Parse a batch of raw lines; the same events and reasons as ``parse_line`` on each."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    lines, undecodable = decode_lines(values)
    ok = pc.match_substring_regex(lines, _FAST_LINE).to_numpy(zero_copy_only=False)
    ok &= ~undecodable  # an escaped line could look well-formed
    ok &= pc.less_equal(pc.utf8_length(lines), MAX_LINE_CHARS).to_numpy(zero_copy_only=False)

    # Below, only lines the fast grammar accepted: fixed positions and splits are safe.
    rows = np.flatnonzero(ok)
    accepted = lines.take(pa.array(rows))
    parts = pc.split_pattern(accepted, ",", max_splits=2)
    times, real_day = _clock(pc.list_element(parts, 0))
    users = pc.cast(pc.list_element(parts, 1), pa.int64())
    request = pc.list_element(parts, 2)
    fast: dict[str, pa.Table] = {}
    decided = np.zeros(len(values), dtype=bool)
    for kind, prefix in (("watch", _WATCH_PREFIX), ("rate", _RATE_PREFIX), ("reco", _RECO_PREFIX)):
        mask = real_day & pc.starts_with(request, prefix).to_numpy(zero_copy_only=False)
        picked = pa.array(np.flatnonzero(mask))
        if kind == "reco":
            columns, keep = _reco_columns(accepted.take(picked))
            mask[np.flatnonzero(mask)[~keep]] = False
            picked = pa.array(np.flatnonzero(mask))
        else:
            columns = _watch_or_rate_columns(kind, request.take(picked))
        columns |= {"time": times.take(picked), "user_id": users.take(picked), "row": pa.array(rows[mask])}
        fast[kind] = pa.table(columns).select(_event_schemas()[kind].names).cast(_event_schemas()[kind])
        decided[rows[mask]] = True

    slow = np.flatnonzero(~decided)
    slow_columns, malformed = _parse_one_by_one(values, slow)
    events = {}
    for kind, schema in _event_schemas().items():
        if not slow_columns[kind]:
            events[kind] = fast[kind]
            continue
        merged = pa.concat_tables([fast[kind], pa.Table.from_pydict(slow_columns[kind], schema=schema)])
        events[kind] = merged.take(pc.sort_indices(merged["row"]))
    return ParsedBatch(lines, undecodable, events, malformed, len(slow))


def _clock(time_text: pa.Array) -> tuple[pa.Array, np.ndarray]:
    """Accepted time texts -> timestamps, and whether the day exists in its month (Feb 30 does not)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    year, month, day, hour, minute = (_ints(pc.utf8_slice_codeunits(time_text, i, i + w)) for i, w in _CLOCK)
    has_seconds = pc.greater(pc.utf8_length(time_text), len("YYYY-MM-DDTHH:MM"))
    seconds = _ints(pc.if_else(has_seconds, pc.utf8_slice_codeunits(time_text, 17, 19), "0"))
    fraction = _ints(pc.utf8_rpad(pc.utf8_slice_codeunits(time_text, 20, 26), 6, "0"))
    leap = (year % 4 == 0) & ((year % 100 != 0) | (year % 400 == 0))
    real_day = day <= np.array(_DAYS_IN_MONTH)[month] + (leap & (month == 2))
    micros = ((_days_from_civil(year, month, day) * 24 + hour) * 60 + minute) * 60 + seconds
    return pa.array(micros * 1_000_000 + fraction).cast(
        _event_schemas()["watch"].field("time").type
    ), real_day


def _watch_or_rate_columns(kind: str, request: pa.Array) -> dict[str, pa.Array]:
    """``GET /data/m/<movie>/<minute>.mpg`` or ``GET /rate/<movie>=<rating>``, accepted -> columns."""
    import pyarrow as pa
    import pyarrow.compute as pc

    prefix, separator, name, cut = (
        (_WATCH_PREFIX, "/", "minute", -len(".mpg"))
        if kind == "watch"
        else (_RATE_PREFIX, "=", "rating", None)
    )
    halves = pc.split_pattern(request, separator, max_splits=1, reverse=True)
    number = (
        pc.utf8_slice_codeunits(pc.list_element(halves, 1), 0, cut) if cut else pc.list_element(halves, 1)
    )
    return {
        "movie_id": pc.utf8_slice_codeunits(pc.list_element(halves, 0), len(prefix)),
        name: pc.cast(number, pa.int64()),
    }


def _reco_columns(lines: pa.Array) -> tuple[dict[str, pa.Array], np.ndarray]:
    """Accepted recommendation lines -> columns of those to keep, and which to keep (not a bad id)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    reco = pc.extract_regex(lines, _FAST_RECO)
    status = pc.cast(reco.field("status"), pa.int64())
    result = reco.field("result")
    is_200 = pc.equal(status, 200)
    filled = pc.and_(is_200, pc.greater(pc.utf8_length(result), 0)).to_numpy(zero_copy_only=False)
    items = pc.split_pattern(result, ", ")
    item_ok = pc.match_substring_regex(pc.list_flatten(items), _FAST_ITEM).to_numpy(zero_copy_only=False)
    bad_item = np.zeros(len(result), dtype=bool)
    bad_item[pc.list_parent_indices(items).to_numpy()[~item_ok]] = True
    keep = ~(filled & bad_item)  # a bad id: parse_line names it
    columns = {
        "server": reco.field("server"),
        "status": status,
        "items": pc.if_else(pa.array(filled), items, pa.scalar([], pa.list_(pa.string()))),
        "error": pc.if_else(is_200, pa.scalar(None, pa.string()), result),
        "latency_ms": pc.cast(reco.field("latency"), pa.int64()),
    }
    return {name: pc.filter(column, pa.array(keep)) for name, column in columns.items()}, keep


def _parse_one_by_one(
    values: Sequence[bytes], rows: np.ndarray
) -> tuple[dict[str, dict[str, list[Any]]], list[tuple[int, Malformed]]]:
    """The reference on the lines the fast path left: event columns by kind, and the malformed lines."""
    columns: dict[str, dict[str, list[Any]]] = {kind: {} for kind in _event_schemas()}
    malformed: list[tuple[int, Malformed]] = []
    for row in rows.tolist():
        parsed = parse_line(values[row])
        if isinstance(parsed, Malformed):
            malformed.append((row, parsed))
            continue
        kind_columns = columns[parsed.kind]
        for name, value in _event_fields(parsed):
            kind_columns.setdefault(name, []).append(value)
        kind_columns.setdefault("row", []).append(row)
    return columns, malformed


_CLOCK = ((0, 4), (5, 2), (8, 2), (11, 2), (14, 2))  # year, month, day, hour, minute in the time text


def _event_fields(event: Event) -> list[tuple[str, Any]]:
    """An event's values under its column names (the names of the lake schemas)."""
    head: list[tuple[str, Any]] = [("time", event.time), ("user_id", event.user_id)]
    if isinstance(event, WatchEvent):
        return [*head, ("movie_id", event.movie_id), ("minute", event.minute)]
    if isinstance(event, RateEvent):
        return [*head, ("movie_id", event.movie_id), ("rating", event.rating)]
    return [
        *head,
        ("server", event.server),
        ("status", event.status),
        ("items", list(event.items)),
        ("error", event.error),
        ("latency_ms", event.latency_ms),
    ]


def _ints(texts: pa.Array) -> np.ndarray:
    import pyarrow as pa
    import pyarrow.compute as pc

    return pc.cast(texts, pa.int64()).to_numpy(zero_copy_only=False)


def _days_from_civil(year: np.ndarray, month: np.ndarray, day: np.ndarray) -> np.ndarray:
    """Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm), vectorised."""
    import numpy as np

    year = year - (month <= 2)
    era = year // 400
    year_of_era = year - era * 400
    day_of_year = (153 * (month + np.where(month > 2, -3, 9)) + 2) // 5 + day - 1
    day_of_era = year_of_era * 365 + year_of_era // 4 - year_of_era // 100 + day_of_year
    return era * 146_097 + day_of_era - 719_468


# --- JSON views (for `movierec parse` and logs) ---------------------------------


def to_json_dict(parsed: Event | Malformed) -> dict[str, Any]:
    """A JSON-ready view: the typed event, or ``{"error": <reason>, "line": ...}``."""
    if isinstance(parsed, Malformed):
        view: dict[str, Any] = {"error": parsed.reason.value, "line": parsed.line}
        if parsed.detail:
            view["detail"] = parsed.detail
        return view
    view = {"kind": parsed.kind, "time": parsed.time.isoformat(), "user_id": parsed.user_id}
    if isinstance(parsed, WatchEvent):
        view |= {"movie_id": parsed.movie_id, "minute": parsed.minute}
    elif isinstance(parsed, RateEvent):
        view |= {"movie_id": parsed.movie_id, "rating": parsed.rating}
    else:
        view |= {
            "server": parsed.server,
            "status": parsed.status,
            "items": list(parsed.items),
            "error": parsed.error,
            "latency_ms": parsed.latency_ms,
        }
    return view
