"""The movielog grammar: round trips, real site lines, and the malformed lines real logs contain."""

from __future__ import annotations

import json
from datetime import datetime

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from movierec.movielog import (
    MAX_LINE_CHARS,
    MAX_USER_ID,
    Malformed,
    RateEvent,
    Reason,
    RecoEvent,
    WatchEvent,
    format_event,
    format_time,
    parse_line,
    to_json_dict,
)

# --- strategies ---------------------------------------------------------------

# Slug words as the site writes them: lowercase letters and digits with a little punctuation.
SLUG_WORD = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789':.-&", min_size=1, max_size=12)
movie_ids = st.builds(
    lambda words, year: "+".join(words) + f"+{year:04d}",
    st.lists(SLUG_WORD, min_size=1, max_size=8),
    st.integers(0, 9999),
)
user_ids = st.integers(1, MAX_USER_ID)
# Seconds form (no fraction) and fractional form (microseconds); the minute form is
# tested on literal text below because format_event always writes seconds.
times = st.one_of(
    st.datetimes().map(lambda moment: moment.replace(microsecond=0)),
    st.datetimes(),
)
servers = st.one_of(
    st.from_regex(r"[0-9]{1,5}-team[0-9]{1,2}\.isri\.cmu\.edu:8082", fullmatch=True),
    st.text(st.characters(whitelist_categories=("L", "N", "P", "S")), min_size=1, max_size=40),
)
latencies = st.integers(0, 999_999_999)
REAL_ERRORS = [
    "java.util.concurrent.TimeoutException: Request timeout to "
    "17645-team19.isri.cmu.edu/128.2.204.215:8082 after 800 ms",
    "java.net.ConnectException: Connection refused: 17645-team19.isri.cmu.edu/128.2.204.215:8082",
    "java.util.concurrent.ExecutionException: java.net.ConnectException: Connection refused",
    "java.io.IOException: Connection reset by peer",
    "",
]
# Any text on one line: the error is the last thing before ", <ms> ms", so it may hold
# commas, "status", "ms" and the like.
error_texts = st.one_of(
    st.sampled_from(REAL_ERRORS),
    st.text(st.characters(codec="utf-8", blacklist_characters="\r\n"), max_size=200),
    st.lists(st.sampled_from(["a, ", ", 5 ms", "status 200, ", "result: ", ",", " ms", "x"])).map("".join),
)
# 0..25 ids, evenly spread so empty lists and full 20+ lists both come up often.
item_lists = st.integers(0, 25).flatmap(lambda n: st.lists(movie_ids, min_size=n, max_size=n))


def roundtrip(event: WatchEvent | RateEvent | RecoEvent) -> None:
    line = format_event(event)
    assert "\n" not in line
    assert parse_line(line) == event
    assert parse_line(line + "\n") == event
    assert parse_line(line + "\r\n") == event
    assert parse_line(line.encode("utf-8")) == event
    assert parse_line(line.encode("utf-8") + b"\n") == event


# --- round trips ----------------------------------------------------------------


@given(times, user_ids, movie_ids, st.integers(0, 999_999_999))
def test_watch_roundtrip(moment: datetime, user_id: int, movie_id: str, minute: int) -> None:
    roundtrip(WatchEvent(moment, user_id, movie_id, minute))


@given(times, user_ids, movie_ids, st.integers(1, 5))
def test_rate_roundtrip(moment: datetime, user_id: int, movie_id: str, rating: int) -> None:
    roundtrip(RateEvent(moment, user_id, movie_id, rating))


@given(times, user_ids, servers, item_lists, latencies)
@example(datetime(2026, 11, 28, 10, 15), 5, "h:8082", [], 0)
@example(datetime(2026, 11, 28, 10, 15), 5, "h:8082", [f"movie+{n}+2001" for n in range(20)], 180)
def test_reco_ok_roundtrip(moment: datetime, user_id: int, server: str, items: list[str], ms: int) -> None:
    roundtrip(RecoEvent(moment, user_id, server, 200, tuple(items), None, ms))


@given(times, user_ids, servers, error_texts, latencies)
def test_reco_failure_roundtrip(moment: datetime, user_id: int, server: str, error: str, ms: int) -> None:
    roundtrip(RecoEvent(moment, user_id, server, 0, (), error, ms))


@given(
    times,
    user_ids,
    servers,
    st.integers(100, 999).filter(lambda code: code != 200),
    error_texts,
    latencies,
)
def test_reco_other_status_roundtrip(
    moment: datetime, user_id: int, server: str, status: int, error: str, ms: int
) -> None:
    roundtrip(RecoEvent(moment, user_id, server, status, (), error, ms))


# --- the three timestamp forms ------------------------------------------------------


def stamp(moment: datetime) -> str:
    """'YYYY-MM-DDTHH:MM', the minute-precision form, written by hand."""
    return f"{moment.year:04d}-{moment.month:02d}-{moment.day:02d}T{moment.hour:02d}:{moment.minute:02d}"


@given(st.datetimes(), user_ids, movie_ids, st.integers(0, 200))
def test_minute_precision_time_parses(moment: datetime, user_id: int, movie_id: str, minute: int) -> None:
    parsed = parse_line(f"{stamp(moment)},{user_id},GET /data/m/{movie_id}/{minute}.mpg")
    assert parsed == WatchEvent(moment.replace(second=0, microsecond=0), user_id, movie_id, minute)


@given(st.datetimes(), st.from_regex(r"[0-9]{1,6}", fullmatch=True))
def test_fractional_seconds_of_any_length_parse(moment: datetime, digits: str) -> None:
    text = f"{stamp(moment)}:{moment.second:02d}.{digits}"
    parsed = parse_line(f"{text},7,GET /rate/up+2009=4")
    expected = moment.replace(microsecond=int(digits.ljust(6, "0")))
    assert parsed == RateEvent(expected, 7, "up+2009", 4)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-11-28T10:15:02", datetime(2026, 11, 28, 10, 15, 2)),
        ("2026-11-28T10:15", datetime(2026, 11, 28, 10, 15)),
        ("2021-03-04T19:15:47.513", datetime(2021, 3, 4, 19, 15, 47, 513000)),
        ("2021-03-04T19:15:47.5", datetime(2021, 3, 4, 19, 15, 47, 500000)),
        ("2021-03-04T19:15:47.000001", datetime(2021, 3, 4, 19, 15, 47, 1)),
    ],
)
def test_time_forms(text: str, expected: datetime) -> None:
    parsed = parse_line(f"{text},1,GET /data/m/up+2009/0.mpg")
    assert isinstance(parsed, WatchEvent)
    assert parsed.time == expected


def test_format_time_writes_a_fraction_only_when_there_is_one() -> None:
    assert format_time(datetime(2026, 11, 28, 10, 15)) == "2026-11-28T10:15:00"
    assert format_time(datetime(2021, 3, 4, 19, 15, 47, 513000)) == "2021-03-04T19:15:47.513"
    assert format_time(datetime(2021, 3, 4, 19, 15, 47, 1)) == "2021-03-04T19:15:47.000001"
    assert format_time(datetime(999, 1, 2, 3, 4, 5)) == "0999-01-02T03:04:05"


# --- lines from the real site's logs ------------------------------------------------


def test_real_watch_line() -> None:
    parsed = parse_line("2021-03-04T19:15:47.513,69185,GET /data/m/the+lion+king+1994/22.mpg")
    assert isinstance(parsed, WatchEvent)
    assert parsed.kind == "watch"
    assert parsed.time == datetime(2021, 3, 4, 19, 15, 47, 513000)
    assert parsed.user_id == 69185
    assert parsed.movie_id == "the+lion+king+1994"
    assert parsed.minute == 22


def test_real_reco_line_minute_precision() -> None:
    parsed = parse_line(
        "2026-11-28T10:15,5,recommendation request 17645-team19.isri.cmu.edu:8082, status 200, "
        "result: the+godfather+1972, a+b+2001, 180 ms"
    )
    assert isinstance(parsed, RecoEvent)
    assert parsed.kind == "reco"
    assert parsed.time == datetime(2026, 11, 28, 10, 15)
    assert parsed.user_id == 5
    assert parsed.server == "17645-team19.isri.cmu.edu:8082"
    assert parsed.status == 200
    assert parsed.items == ("the+godfather+1972", "a+b+2001")
    assert parsed.error is None
    assert parsed.latency_ms == 180


def test_real_rate_line_with_punctuation_in_the_slug() -> None:
    parsed = parse_line("2021-03-04T19:16:02,40582,GET /rate/harry+potter+and+the+sorcerer's+stone+2001=4")
    assert parsed == RateEvent(
        datetime(2021, 3, 4, 19, 16, 2), 40582, "harry+potter+and+the+sorcerer's+stone+2001", 4
    )


@pytest.mark.parametrize(
    "movie_id",
    [
        "star+wars+episode+iv+-+a+new+hope+1977",
        "the+lord+of+the+rings:+the+fellowship+of+the+ring+2001",
        "dr.+strangelove+or:+how+i+learned+to+stop+worrying+and+love+the+bomb+1964",
        "the+good+the+bad+&+the+ugly+1966",
        "2001:+a+space+odyssey+1968",
        "9+2009",
    ],
)
def test_real_slugs(movie_id: str) -> None:
    parsed = parse_line(f"2021-03-04T19:15:47,1,GET /data/m/{movie_id}/0.mpg")
    assert parsed == WatchEvent(datetime(2021, 3, 4, 19, 15, 47), 1, movie_id, 0)


def test_real_timeout_line_keeps_the_error_text_and_the_latency() -> None:
    error = (
        "java.util.concurrent.TimeoutException: Request timeout to "
        "17645-team19.isri.cmu.edu/128.2.204.215:8082 after 800 ms"
    )
    parsed = parse_line(
        "2021-03-04T19:15:48.219,112233,recommendation request 17645-team19.isri.cmu.edu:8082, "
        f"status 0, result: {error}, 800 ms"
    )
    assert parsed == RecoEvent(
        datetime(2021, 3, 4, 19, 15, 48, 219000),
        112233,
        "17645-team19.isri.cmu.edu:8082",
        0,
        (),
        error,
        800,
    )


def test_real_connection_refused_line() -> None:
    parsed = parse_line(
        "2021-03-04T19:15:48,9,recommendation request 17645-team19.isri.cmu.edu:8082, status 0, "
        "result: java.net.ConnectException: Connection refused: "
        "17645-team19.isri.cmu.edu/128.2.204.215:8082, 3 ms"
    )
    assert isinstance(parsed, RecoEvent)
    assert parsed.status == 0
    assert parsed.items == ()
    assert parsed.error == (
        "java.net.ConnectException: Connection refused: 17645-team19.isri.cmu.edu/128.2.204.215:8082"
    )
    assert parsed.latency_ms == 3


def test_status_200_with_twenty_ids() -> None:
    ids = [f"movie+number+{n}+19{n:02d}" for n in range(20)]
    parsed = parse_line(
        f"2021-03-04T19:15:47,77,recommendation request h:8082, status 200, result: {', '.join(ids)}, 42 ms"
    )
    assert isinstance(parsed, RecoEvent)
    assert parsed.items == tuple(ids)
    assert parsed.latency_ms == 42


def test_largest_user_id_is_accepted() -> None:
    parsed = parse_line(f"2021-03-04T19:15:47,{MAX_USER_ID},GET /rate/up+2009=1")
    assert parsed == RateEvent(datetime(2021, 3, 4, 19, 15, 47), MAX_USER_ID, "up+2009", 1)


# --- malformed lines, each with its reason ----------------------------------------

T = "2021-03-04T19:15:47"
WATCH = "GET /data/m/the+matrix+1999/3.mpg"
RATE = "GET /rate/the+matrix+1999=4"
RECO = "recommendation request 17645-team19.isri.cmu.edu:8082"

MALFORMED: list[tuple[str, str | bytes, Reason]] = [
    # rate requests
    ("rate-no-equals", f"{T},5,GET /rate/the+matrix+1999", Reason.BAD_RATE_REQUEST),
    ("rating-0", f"{T},5,GET /rate/the+matrix+1999=0", Reason.BAD_RATING),
    ("rating-6", f"{T},5,GET /rate/the+matrix+1999=6", Reason.BAD_RATING),
    ("rating-five", f"{T},5,GET /rate/the+matrix+1999=five", Reason.BAD_RATING),
    ("rating-negative", f"{T},5,GET /rate/the+matrix+1999=-1", Reason.BAD_RATING),
    ("rating-empty", f"{T},5,GET /rate/the+matrix+1999=", Reason.BAD_RATING),
    ("rating-fraction", f"{T},5,GET /rate/the+matrix+1999=4.5", Reason.BAD_RATING),
    ("rate-extra-field", f"{T},5,{RATE},extra", Reason.EXTRA_FIELDS),
    ("rate-movie-with-space", f"{T},5,GET /rate/the matrix+1999=4", Reason.BAD_MOVIE_ID),
    # watch requests
    ("watch-no-slash-after-m", f"{T},5,GET /data/mthe+matrix+1999/3.mpg", Reason.BAD_WATCH_PATH),
    ("watch-no-minute-file", f"{T},5,GET /data/m/the+matrix+1999", Reason.BAD_WATCH_PATH),
    ("watch-not-mpg", f"{T},5,GET /data/m/the+matrix+1999/3.mp4", Reason.BAD_WATCH_PATH),
    ("minute-negative", f"{T},5,GET /data/m/the+matrix+1999/-1.mpg", Reason.BAD_MINUTE),
    ("minute-not-a-number", f"{T},5,GET /data/m/the+matrix+1999/ten.mpg", Reason.BAD_MINUTE),
    ("minute-empty", f"{T},5,GET /data/m/the+matrix+1999/.mpg", Reason.BAD_MINUTE),
    ("watch-extra-field", f"{T},5,{WATCH},extra", Reason.EXTRA_FIELDS),
    ("movie-no-year", f"{T},5,GET /data/m/the+matrix/3.mpg", Reason.BAD_MOVIE_ID),
    ("movie-two-digit-year", f"{T},5,GET /data/m/the+matrix+99/3.mpg", Reason.BAD_MOVIE_ID),
    ("movie-with-space", f"{T},5,GET /data/m/the matrix+1999/3.mpg", Reason.BAD_MOVIE_ID),
    ("movie-empty", f"{T},5,GET /data/m//3.mpg", Reason.BAD_MOVIE_ID),
    # user ids
    ("user-empty", f"{T},,{WATCH}", Reason.BAD_USER),
    ("user-not-a-number", f"{T},alice,{WATCH}", Reason.BAD_USER),
    ("user-zero", f"{T},0,{WATCH}", Reason.BAD_USER),
    ("user-negative", f"{T},-5,{WATCH}", Reason.BAD_USER),
    ("user-leading-zero", f"{T},007,{WATCH}", Reason.BAD_USER),
    ("user-over-64-bits", f"{T},{MAX_USER_ID + 1},{WATCH}", Reason.BAD_USER),
    ("user-20-digits", f"{T},99999999999999999999,{WATCH}", Reason.BAD_USER),
    # timestamps
    ("time-space-separator", f"2021-03-04 19:15:47,5,{WATCH}", Reason.BAD_TIME),
    ("time-offset", f"2021-03-04T19:15:47+01:00,5,{WATCH}", Reason.BAD_TIME),
    ("time-zulu", f"2021-03-04T19:15:47Z,5,{WATCH}", Reason.BAD_TIME),
    ("time-month-13", f"2021-13-04T19:15:47,5,{WATCH}", Reason.BAD_TIME),
    ("time-hour-24", f"2021-03-04T24:15:47,5,{WATCH}", Reason.BAD_TIME),
    ("time-date-only", f"2021-03-04,5,{WATCH}", Reason.BAD_TIME),
    ("time-seven-fraction-digits", f"2021-03-04T19:15:47.1234567,5,{WATCH}", Reason.BAD_TIME),
    ("time-garbage", f"yesterday,5,{WATCH}", Reason.BAD_TIME),
    ("time-empty", f",5,{WATCH}", Reason.BAD_TIME),
    # recommendation requests
    ("reco-missing-status", f"{T},5,{RECO}, result: a+2001, 10 ms", Reason.MISSING_STATUS),
    ("reco-status-not-a-number", f"{T},5,{RECO}, status OK, result: a+2001, 10 ms", Reason.BAD_STATUS),
    ("reco-status-two-digits", f"{T},5,{RECO}, status 20, result: a+2001, 10 ms", Reason.BAD_STATUS),
    ("reco-missing-latency", f"{T},5,{RECO}, status 200, result: a+2001, b+2002", Reason.BAD_LATENCY),
    ("reco-latency-not-a-number", f"{T},5,{RECO}, status 200, result: a+2001, fast ms", Reason.BAD_LATENCY),
    ("reco-latency-negative", f"{T},5,{RECO}, status 200, result: a+2001, -3 ms", Reason.BAD_LATENCY),
    ("reco-latency-fraction", f"{T},5,{RECO}, status 200, result: a+2001, 1.5 ms", Reason.BAD_LATENCY),
    ("reco-result-non-id", f"{T},5,{RECO}, status 200, result: a+2001, garbage, 10 ms", Reason.BAD_RESULT),
    ("reco-result-empty-id", f"{T},5,{RECO}, status 200, result: a+2001, , 10 ms", Reason.BAD_RESULT),
    ("reco-no-result", f"{T},5,{RECO}, status 200, 10 ms", Reason.BAD_RECO_REQUEST),
    (
        "reco-no-server",
        f"{T},5,recommendation request , status 200, result: , 10 ms",
        Reason.BAD_RECO_REQUEST,
    ),
    # the request itself
    ("post-request", f"{T},5,POST /rate/the+matrix+1999=4", Reason.UNKNOWN_REQUEST),
    ("unknown-path", f"{T},5,GET /foo", Reason.UNKNOWN_REQUEST),
    ("lowercase-get", f"{T},5,get /data/m/the+matrix+1999/3.mpg", Reason.UNKNOWN_REQUEST),
    ("empty-request", f"{T},5,", Reason.UNKNOWN_REQUEST),
    # the line as a whole
    ("truncated-time-and-user", f"{T},5", Reason.TRUNCATED),
    ("truncated-time-only", T, Reason.TRUNCATED),
    ("not-utf8", b"2021-03-04T19:15:47,5,GET /data/m/caf\xe9+1999/3.mpg\n", Reason.NOT_UTF8),
    ("not-utf8-garbage", b"\xff\xfe\x00garbage", Reason.NOT_UTF8),
    ("empty", "", Reason.EMPTY),
    ("empty-bytes-newline", b"\n", Reason.EMPTY),
    ("whitespace-only", " \t  \r\n", Reason.EMPTY),
    ("too-long", f"{T},5,GET /data/m/{'a+' * MAX_LINE_CHARS}1999/3.mpg", Reason.TOO_LONG),
]


@pytest.mark.parametrize(("line", "reason"), [case[1:] for case in MALFORMED], ids=[c[0] for c in MALFORMED])
def test_malformed_line_reason(line: str | bytes, reason: Reason) -> None:
    parsed = parse_line(line)
    assert isinstance(parsed, Malformed)
    assert parsed.reason is reason, parsed.detail


def test_malformed_keeps_the_line_without_its_newline() -> None:
    line = f"{T},5,GET /rate/the+matrix+1999=6"
    assert parse_line(line + "\r\n") == Malformed(Reason.BAD_RATING, line, "6")


def test_malformed_non_utf8_line_is_kept_readable() -> None:
    parsed = parse_line(b"2021-03-04T19:15:47,5,GET /data/m/caf\xe9+1999/3.mpg\n")
    assert isinstance(parsed, Malformed)
    assert parsed.line == "2021-03-04T19:15:47,5,GET /data/m/caf\\xe9+1999/3.mpg\n"
    assert parsed.detail  # the decoder's message, for the quarantine table


def test_line_just_under_the_limit_is_not_too_long() -> None:
    head = f"{T},5,GET /data/m/"
    tail = "+1999/3.mpg"
    slug = "a" * (MAX_LINE_CHARS - len(head) - len(tail))
    parsed = parse_line(head + slug + tail)
    assert isinstance(parsed, WatchEvent)
    parsed = parse_line(head + slug + "a" + tail)
    assert isinstance(parsed, Malformed) and parsed.reason is Reason.TOO_LONG


# --- never raises ------------------------------------------------------------------

PARSED_TYPES = (WatchEvent, RateEvent, RecoEvent, Malformed)


def check_total(raw: str | bytes) -> None:
    """parse_line returns a value; an event it returns formats back to the same event."""
    parsed = parse_line(raw)
    assert isinstance(parsed, PARSED_TYPES)
    if isinstance(parsed, Malformed):
        assert isinstance(parsed.reason, Reason)
        json.dumps(to_json_dict(parsed))
    else:
        assert parse_line(format_event(parsed)) == parsed


@given(st.text())
def test_parse_never_raises_on_text(text: str) -> None:
    check_total(text)


@given(st.binary())
def test_parse_never_raises_on_bytes(data: bytes) -> None:
    check_total(data)


VALID_LINES = [
    "2021-03-04T19:15:47.513,69185,GET /data/m/the+lion+king+1994/22.mpg",
    "2021-03-04T19:16:02,40582,GET /rate/the+matrix+1999=4",
    "2026-11-28T10:15,5,recommendation request h:8082, status 200, "
    "result: the+godfather+1972, a+b+2001, 180 ms",
    "2026-11-28T10:15,5,recommendation request h:8082, status 0, result: java.net.ConnectException, 3 ms",
]


@given(
    st.sampled_from(VALID_LINES),
    st.lists(st.tuples(st.integers(0, 200), st.integers(0, 3), st.text(max_size=3)), max_size=4),
)
def test_parse_never_raises_on_mutated_lines(line: str, edits: list[tuple[int, int, str]]) -> None:
    """Near misses of real lines reach deep into the grammar, unlike random text."""
    for position, cut, insert in edits:
        position %= len(line) + 1
        line = line[:position] + insert + line[position + cut :]
    check_total(line)
    check_total(line.encode("utf-8"))


# --- JSON views ------------------------------------------------------------------


def test_json_view_of_a_watch_event() -> None:
    view = to_json_dict(parse_line("2021-03-04T19:15:47.513,69185,GET /data/m/the+lion+king+1994/22.mpg"))
    assert view == {
        "kind": "watch",
        "time": "2021-03-04T19:15:47.513000",
        "user_id": 69185,
        "movie_id": "the+lion+king+1994",
        "minute": 22,
    }


def test_json_view_of_a_rate_event() -> None:
    view = to_json_dict(RateEvent(datetime(2021, 3, 4, 19, 16, 2), 40582, "up+2009", 5))
    assert view == {
        "kind": "rate",
        "time": "2021-03-04T19:16:02",
        "user_id": 40582,
        "movie_id": "up+2009",
        "rating": 5,
    }


def test_json_view_of_reco_events() -> None:
    ok = parse_line(
        "2026-11-28T10:15,5,recommendation request h:8082, status 200, "
        "result: the+godfather+1972, a+b+2001, 180 ms"
    )
    assert to_json_dict(ok) == {
        "kind": "reco",
        "time": "2026-11-28T10:15:00",
        "user_id": 5,
        "server": "h:8082",
        "status": 200,
        "items": ["the+godfather+1972", "a+b+2001"],
        "error": None,
        "latency_ms": 180,
    }
    failed = to_json_dict(RecoEvent(datetime(2026, 11, 28), 5, "h:8082", 0, (), "timeout", 800))
    assert (failed["status"], failed["items"], failed["error"], failed["latency_ms"]) == (
        0,
        [],
        "timeout",
        800,
    )
    json.dumps(failed)


def test_json_view_of_an_error() -> None:
    line = f"{T},5,GET /rate/the+matrix+1999=6"
    view = to_json_dict(parse_line(line + "\n"))
    assert view["error"] == "bad_rating"
    assert view["line"] == line
    assert set(view) <= {"error", "line", "detail"}
    assert json.loads(json.dumps(view)) == view


def test_json_view_of_an_empty_line_has_no_detail() -> None:
    assert to_json_dict(parse_line("\n")) == {"error": "empty", "line": ""}


def test_reason_codes_are_stable_strings() -> None:
    # Stored in the quarantine table: renaming one is a schema change.
    assert {reason.value for reason in Reason} == {
        "empty",
        "not_utf8",
        "too_long",
        "truncated",
        "bad_time",
        "bad_user",
        "unknown_request",
        "bad_movie_id",
        "bad_watch_path",
        "bad_minute",
        "bad_rate_request",
        "bad_rating",
        "extra_fields",
        "bad_reco_request",
        "missing_status",
        "bad_status",
        "bad_latency",
        "bad_result",
    }
