"""Broken lines: a real movielog line turned into one the grammar rejects, for a chosen reason.

``DAMAGES`` has one entry per ``movierec.movielog.Reason``: which kind of real
line it starts from (``needs``) and how it breaks it, so each injected line
looks like real log damage (a cut write, a bad byte, a glued field...) of a
real event, and its intended reason is known. ``drift`` writes a line in one of
the new formats of the format_drift scenario. Pure functions of a numpy
``Generator`` and the line; the tests check every builder against the grammar.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

import numpy as np

from movierec.movielog import MAX_LINE_CHARS, Reason

_WATCH = "GET /data/m/"
_RATE = "GET /rate/"
_RECO = "recommendation request "
_STATUS = ", status "
_RESULT = ", result: "
_FILLED_200 = re.compile(r", status 200, result: [^,]")  # a 200 line with at least one id

T = TypeVar("T")
Builder = Callable[[np.random.Generator, str], str | bytes]


@dataclass(frozen=True)
class Damage:
    """How to break a line so the grammar rejects it with ``reason``."""

    reason: Reason
    needs: str  # the kind of line it starts from: any, watch, rate, watch_or_rate, reco, reco200
    build: Builder


NEEDS = ("any", "watch", "rate", "watch_or_rate", "reco", "reco200")
LINE_KINDS = ("watch", "rate", "reco200", "reco", "other")


def line_kind(line: str) -> str:
    """watch, rate, reco200 (status 200 with ids), reco (other recommendation lines) or other."""
    request = line.split(",", 2)[-1]
    if request.startswith(_WATCH):
        return "watch"
    if request.startswith(_RATE):
        return "rate"
    if request.startswith(_RECO):
        return "reco200" if _FILLED_200.search(request) else "reco"
    return "other"


def fits(needs: str, kind: str) -> bool:
    """Whether a line of ``kind`` can be broken by a damage that ``needs`` it."""
    if needs == "any":
        return True
    if needs == "watch_or_rate":
        return kind in ("watch", "rate")
    if needs == "reco":
        return kind in ("reco", "reco200")
    return needs == kind


def _pick(rng: np.random.Generator, options: Sequence[T]) -> T:
    return options[int(rng.integers(len(options)))]


def _split(line: str) -> tuple[str, str, str]:
    time_text, user_text, request = line.split(",", 2)
    return time_text, user_text, request


def _join(time_text: str, user_text: str, request: str) -> str:
    return f"{time_text},{user_text},{request}"


def _watch_parts(request: str) -> tuple[str, str]:
    """(movie id, minute) of a watch request."""
    slug, _, file_name = request[len(_WATCH) :].rpartition("/")
    return slug, file_name.removesuffix(".mpg")


def _rate_parts(request: str) -> tuple[str, str]:
    """(movie id, rating) of a rate request."""
    slug, _, rating = request[len(_RATE) :].rpartition("=")
    return slug, rating


# --- one builder per reason ---------------------------------------------------------


def _not_utf8(rng: np.random.Generator, line: str) -> bytes:
    # a byte of another encoding (Latin-1 'é', a stray 0xff, half a UTF-8 sequence)
    raw = line.encode()
    cut = int(rng.integers(len(raw) // 2, len(raw) + 1))
    return raw[:cut] + _pick(rng, (b"\xe9", b"\xff", b"\xc3")) + raw[cut:]


def _empty(rng: np.random.Generator, line: str) -> str:
    return _pick(rng, ("", " ", "\t", "\r\n"))


def _too_long(rng: np.random.Generator, line: str) -> str:
    # lines glued together by a writer that lost its newlines
    return line * (MAX_LINE_CHARS // len(line) + 1)


def _truncated(rng: np.random.Generator, line: str) -> str:
    # a write cut before the request: at most two comma-separated fields
    second_comma = line.index(",", line.index(",") + 1)
    return line[: int(rng.integers(1, second_comma + 1))]


def _bad_time(rng: np.random.Generator, line: str) -> str:
    time_text, user_text, request = _split(line)
    broken = _pick(
        rng,
        (
            time_text[:5] + "13" + time_text[7:],  # month 13
            time_text[:11] + "24" + time_text[13:],  # hour 24
            time_text.replace("-", "/"),
            time_text + "+01:00",  # an offset the site never writes
            time_text[:8],  # cut in the date
        ),
    )
    return _join(broken, user_text, request)


def _bad_user(rng: np.random.Generator, line: str) -> str:
    time_text, user_text, request = _split(line)
    broken = _pick(rng, ("", f"-{user_text}", f"0{user_text}", f"user{user_text}", "null", "9" * 20))
    return _join(time_text, broken, request)


def _unknown_request(rng: np.random.Generator, line: str) -> str:
    time_text, user_text, request = _split(line)
    if request.startswith("GET "):
        broken = _pick(rng, ("HEAD " + request[4:], "get " + request[4:], "GET /favicon.ico"))
    else:
        broken = _pick(rng, (request.replace(_RECO, "recommendation-request ", 1), "GET /favicon.ico"))
    return _join(time_text, user_text, broken)


def _broken_slug(rng: np.random.Generator, slug: str) -> str:
    # a two-digit year, spaces for '+', URL-encoded '+': never '+<4 digits>' at the end, never empty
    return _pick(rng, (slug[:-2], slug.replace("+", " "), slug.replace("+", "%2B"), "null"))


def _bad_movie_id(rng: np.random.Generator, line: str) -> str:
    time_text, user_text, request = _split(line)
    if request.startswith(_WATCH):
        slug, minute = _watch_parts(request)
        broken = f"{_WATCH}{_broken_slug(rng, slug)}/{minute}.mpg"
    else:
        slug, rating = _rate_parts(request)
        broken = f"{_RATE}{_broken_slug(rng, slug)}={rating}"
    return _join(time_text, user_text, broken)


def _bad_watch_path(rng: np.random.Generator, line: str) -> str:
    time_text, user_text, request = _split(line)
    slug, minute = _watch_parts(request)
    broken = _pick(
        rng,
        (
            f"{_WATCH}{slug}/{minute}.mp4",
            f"{_WATCH}{slug}/{minute}.mp",  # cut
            f"{_WATCH}{slug}-{minute}.mpg",
            f"GET /data/m{slug}/{minute}.mpg",
        ),
    )
    return _join(time_text, user_text, broken)


def _bad_minute(rng: np.random.Generator, line: str) -> str:
    time_text, user_text, request = _split(line)
    slug, minute = _watch_parts(request)
    broken = _pick(rng, (f"-{minute}", f"{minute}.5", f"0{minute}", "", "NaN"))
    return _join(time_text, user_text, f"{_WATCH}{slug}/{broken}.mpg")


def _bad_rate_request(rng: np.random.Generator, line: str) -> str:
    time_text, user_text, request = _split(line)
    slug, rating = _rate_parts(request)
    broken = _pick(rng, (f"{slug}:{rating}", slug, f"{slug}{rating}"))
    return _join(time_text, user_text, f"{_RATE}{broken}")


def _bad_rating(rng: np.random.Generator, line: str) -> str:
    time_text, user_text, request = _split(line)
    slug, rating = _rate_parts(request)
    broken = _pick(rng, ("0", "6", "10", f"{rating}.5", "five", "", "-1"))
    return _join(time_text, user_text, f"{_RATE}{slug}={broken}")


def _extra_fields(rng: np.random.Generator, line: str) -> str:
    return line + _pick(rng, (",", ",200", ",-", f",{line.split(',', 2)[2]}"))


def _bad_reco_request(rng: np.random.Generator, line: str) -> str:
    time_text, user_text, request = _split(line)
    broken = _pick(
        rng,
        (
            request.replace(_RECO, _RECO + " ", 1),  # a blank server name
            request.replace(_RESULT, ", result ", 1),  # the status is never followed by ', result: '
        ),
    )
    return _join(time_text, user_text, broken)


def _missing_status(rng: np.random.Generator, line: str) -> str:
    time_text, user_text, request = _split(line)
    server = request[len(_RECO) : request.index(_STATUS)]
    broken = _pick(rng, (f"{_RECO}{server}", request.replace(_STATUS, ", state ")))
    return _join(time_text, user_text, broken)


def _bad_status(rng: np.random.Generator, line: str) -> str:
    time_text, user_text, request = _split(line)
    begin = request.index(_STATUS) + len(_STATUS)
    end = request.index(",", begin)
    broken = _pick(rng, ("OK", "2000", "-1", "20O", "", "200 OK"))
    return _join(time_text, user_text, request[:begin] + broken + request[end:])


def _bad_latency(rng: np.random.Generator, line: str) -> str:
    time_text, user_text, request = _split(line)
    head, _, tail = request.rpartition(", ")
    latency = tail.removesuffix(" ms")
    broken = _pick(rng, (f"{latency}.5 ms", f"-{latency} ms", f"{latency}ms", latency, "NaN ms"))
    return _join(time_text, user_text, f"{head}, {broken}")


def _bad_result(rng: np.random.Generator, line: str) -> str:
    time_text, user_text, request = _split(line)
    head, _, latency = request.rpartition(", ")
    prefix, _, result = head.partition(_RESULT)
    items = result.split(", ")
    spot = int(rng.integers(len(items)))
    items[spot] = _pick(rng, (_broken_slug(rng, items[spot]), "undefined"))
    return _join(time_text, user_text, f"{prefix}{_RESULT}{', '.join(items)}, {latency}")


DAMAGES: tuple[Damage, ...] = (
    Damage(Reason.NOT_UTF8, "any", _not_utf8),
    Damage(Reason.EMPTY, "any", _empty),
    Damage(Reason.TOO_LONG, "any", _too_long),
    Damage(Reason.TRUNCATED, "any", _truncated),
    Damage(Reason.BAD_TIME, "any", _bad_time),
    Damage(Reason.BAD_USER, "any", _bad_user),
    Damage(Reason.UNKNOWN_REQUEST, "any", _unknown_request),
    Damage(Reason.BAD_MOVIE_ID, "watch_or_rate", _bad_movie_id),
    Damage(Reason.BAD_WATCH_PATH, "watch", _bad_watch_path),
    Damage(Reason.BAD_MINUTE, "watch", _bad_minute),
    Damage(Reason.BAD_RATE_REQUEST, "rate", _bad_rate_request),
    Damage(Reason.BAD_RATING, "rate", _bad_rating),
    Damage(Reason.EXTRA_FIELDS, "watch_or_rate", _extra_fields),
    Damage(Reason.BAD_RECO_REQUEST, "reco", _bad_reco_request),
    Damage(Reason.MISSING_STATUS, "reco", _missing_status),
    Damage(Reason.BAD_STATUS, "reco", _bad_status),
    Damage(Reason.BAD_LATENCY, "reco", _bad_latency),
    Damage(Reason.BAD_RESULT, "reco200", _bad_result),
)


# --- format drift -------------------------------------------------------------------

DEVICES = ("web", "ios", "android", "tv")


def drift(rng: np.random.Generator, line: str, form: str, field: str = "device") -> tuple[str, Reason]:
    """``line`` in a new format, and the reason the grammar rejects it.

    space_time: ``2026-11-20 06:00:01`` (bad_time). extra_field: a trailing
    ``,<field>=<value>``, which is extra_fields on watch and rate lines and
    bad_latency on recommendation lines (the grammar reads those from both
    ends, so the trailing field is where the latency should be).
    """
    if form == "space_time":
        return f"{line[:10]} {line[11:]}", Reason.BAD_TIME
    if form == "extra_field":
        reason = Reason.BAD_LATENCY if line_kind(line).startswith("reco") else Reason.EXTRA_FIELDS
        return f"{line},{field}={_pick(rng, DEVICES)}", reason
    raise ValueError(f"unknown format drift form {form!r}")
