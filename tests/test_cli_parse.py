"""`movierec parse`: movielog lines on stdin, one JSON object per line on stdout."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

from movierec.cli import parse_stream

CLI = str(Path(sys.executable).parent / "movierec")

WATCH = b"2021-03-04T19:15:47.513,69185,GET /data/m/the+lion+king+1994/22.mpg"
RATE = b"2021-03-04T19:16:02,40582,GET /rate/the+matrix+1999=4"
RECO = (
    b"2026-11-28T10:15,5,recommendation request 17645-team19.isri.cmu.edu:8082, status 200, "
    b"result: the+godfather+1972, a+b+2001, 180 ms"
)
TIMEOUT = (
    b"2026-11-28T10:15:01,6,recommendation request 17645-team19.isri.cmu.edu:8082, status 0, "
    b"result: java.util.concurrent.TimeoutException: Request timeout to host:8082 after 800 ms, 800 ms"
)
BAD_RATING = b"2021-03-04T19:16:02,40582,GET /rate/the+matrix+1999=6"
NOT_UTF8 = b"2021-03-04T19:15:47,5,GET /data/m/caf\xe9+1999/3.mpg"
BAD_USER = b"2021-03-04T19:15:47,0,GET /data/m/up+2009/3.mpg"


def run(stdin: bytes, *args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([CLI, "parse", *args], input=stdin, capture_output=True, timeout=60)


def json_lines(stdout: bytes) -> list[dict]:
    text = stdout.decode("utf-8")
    assert text.endswith("\n")
    return [json.loads(line) for line in text.splitlines()]


def test_console_script_prints_one_object_per_line() -> None:
    # The last line has no newline, as `kcat` may leave it; the empty line is malformed too.
    stdin = b"\n".join([WATCH, BAD_RATING, RATE, NOT_UTF8, RECO, b"", TIMEOUT, BAD_USER])
    done = run(stdin)
    assert done.returncode == 0, done.stderr
    out = json_lines(done.stdout)
    assert len(out) == 8
    assert [row.get("kind") or row["error"] for row in out] == [
        "watch",
        "bad_rating",
        "rate",
        "not_utf8",
        "reco",
        "empty",
        "reco",
        "bad_user",
    ]
    assert out[0] == {
        "kind": "watch",
        "time": "2021-03-04T19:15:47.513000",
        "user_id": 69185,
        "movie_id": "the+lion+king+1994",
        "minute": 22,
    }
    assert out[1]["line"] == BAD_RATING.decode()
    assert out[3]["line"] == "2021-03-04T19:15:47,5,GET /data/m/caf\\xe9+1999/3.mpg\n"
    assert out[4]["items"] == ["the+godfather+1972", "a+b+2001"]
    assert out[4]["latency_ms"] == 180
    assert out[6]["status"] == 0
    assert out[6]["error"].endswith("after 800 ms")
    assert out[6]["latency_ms"] == 800
    assert out[7]["line"] == BAD_USER.decode()


def test_strict_fails_on_a_malformed_line() -> None:
    done = run(WATCH + b"\n" + NOT_UTF8 + b"\n" + RATE + b"\n", "--strict")
    assert done.returncode == 1
    assert len(json_lines(done.stdout)) == 3  # every line is still printed


def test_strict_passes_when_every_line_parses() -> None:
    done = run(b"\n".join([WATCH, RATE, RECO, TIMEOUT]) + b"\n", "--strict")
    assert done.returncode == 0, done.stderr
    assert [row["kind"] for row in json_lines(done.stdout)] == ["watch", "rate", "reco", "reco"]


def test_summary_counts_on_stderr() -> None:
    done = run(b"\n".join([WATCH, BAD_RATING, NOT_UTF8, RECO]) + b"\n", "--summary")
    assert done.returncode == 0
    assert "2 events, 2 malformed" in done.stderr.decode()
    assert len(json_lines(done.stdout)) == 4


def test_empty_input_prints_nothing() -> None:
    done = run(b"", "--strict")
    assert done.returncode == 0
    assert done.stdout == b""


def test_parse_stream_directly() -> None:
    source = io.BytesIO(b"\n".join([RATE, BAD_RATING, NOT_UTF8, RECO]) + b"\r\n")
    sink = io.StringIO()
    assert parse_stream(source, sink) == (2, 2)
    out = [json.loads(line) for line in sink.getvalue().splitlines()]
    assert out[0] == {
        "kind": "rate",
        "time": "2021-03-04T19:16:02",
        "user_id": 40582,
        "movie_id": "the+matrix+1999",
        "rating": 4,
    }
    assert (out[1]["error"], out[1]["line"], out[1]["detail"]) == ("bad_rating", BAD_RATING.decode(), "6")
    assert out[2]["error"] == "not_utf8"
    assert out[3]["kind"] == "reco"
    assert out[3]["items"] == ["the+godfather+1972", "a+b+2001"]
