"""The vectorised batch parser against the reference: the same events and reasons on every line.

The corpus is a large generated history (every line kind the site writes) plus, for
every damage kind of the simulator, broken copies of real lines, the format-drift
forms, random one-character mutations of real lines, and hand-written edge cases at
the fast path's boundaries (calendar, 64-bit user ids, whitespace that RE2 and Python
classify differently, non-ASCII ids, line length).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import numpy as np
import pytest

from movierec.movielog import (
    MAX_LINE_CHARS,
    Malformed,
    ParsedBatch,
    RateEvent,
    RecoEvent,
    WatchEvent,
    parse_batch,
    parse_line,
)
from movierec.schemas import EVENT_TABLES
from simulator.backfill import history_lines
from simulator.damage import DAMAGES, drift, fits, line_kind
from simulator.history import History

START = datetime(2026, 2, 27, 18, 0, 0)  # across a month end (28 days) so the calendar is exercised
SERVER = "recommendation request 17645-team19.isri.cmu.edu:8082"
# Characters a mutation puts into a line: delimiters, digits, whitespace Python calls \s but RE2
# does not (\v, \x1c), control bytes, non-ASCII letters and digits, and a newline.
MUTANTS = [",", "/", "=", "+", " ", ".", ":", "-", "T", "0", "9"]
MUTANTS += ["\v", "\x1c", "\x01", "\x7f", "\u00e9", "\u0663", "\n", ""]


@pytest.fixture(scope="module")
def real_lines(history: History) -> list[str]:
    lines = history_lines(np.random.default_rng(5), history, START, 2.0, sessions_per_day=6_000)
    return [line for _, _, line in lines if isinstance(line, str)]


def edge_cases() -> list[str | bytes]:
    watch = "GET /data/m/the+matrix+1999/7.mpg"
    return [
        f"2028-02-29T10:00:00,1,{watch}",  # leap day
        f"2026-02-29T10:00:00,1,{watch}",  # not a leap year
        f"2100-02-29T10:00:00,1,{watch}",  # century, not leap
        f"2000-02-29T10:00:00,1,{watch}",  # 400-year leap
        f"2026-04-31T10:00:00,1,{watch}",
        f"2026-12-31T23:59:59.999999,1,{watch}",
        f"0999-01-01T00:00:00,1,{watch}",
        f"0000-01-01T00:00:00,1,{watch}",
        f"2026-01-01T24:00:00,1,{watch}",
        f"2026-01-01T23:60:00,1,{watch}",
        f"2026-01-01T23:59:60,1,{watch}",
        f"2026-01-01T10:15,1,{watch}",
        f"2026-01-01T10:15:00.5,1,{watch}",
        f"2026-01-01T10:15:00.1234567,1,{watch}",
        f"2026-01-01T10:15:00.,1,{watch}",
        f"2026-01-01T10:15:00,{'9' * 18},{watch}",
        f"2026-01-01T10:15:00,{2**63 - 1},{watch}",
        f"2026-01-01T10:15:00,{2**63},{watch}",
        f"2026-01-01T10:15:00,{'9' * 20},{watch}",
        f"2026-01-01T10:15:00,\u0663,{watch}",
        "\u0662\u0660\u0662\u0666-01-01T10:15:00,1," + watch,
        "2026-01-01T10:15:00,1,GET /data/m/am\u00e9lie+2001/3.mpg",
        "2026-01-01T10:15:00,1,GET /data/m/a\vb+2001/3.mpg",
        "2026-01-01T10:15:00,1,GET /data/m/a\x1cb+2001/3.mpg",
        "2026-01-01T10:15:00,1,GET /data/m/a\x01b+2001/3.mpg",
        "2026-01-01T10:15:00,1,GET /data/m/a\u00a0b+2001/3.mpg",
        "2026-01-01T10:15:00,1,GET /data/m/+a+2001/3.mpg",
        "2026-01-01T10:15:00,1,GET /data/m/a++2001+2001/3.mpg",
        "2026-01-01T10:15:00,1,GET /data/m/a+2001/999999999.mpg",
        "2026-01-01T10:15:00,1,GET /data/m/a+2001/1000000000.mpg",
        "2026-01-01T10:15:00,1,GET /data/m/a+2001/3.mpg\n",
        "2026-01-01T10:15:00,1,GET /data/m/a+2001/3.mpg\r\n",
        "2026-01-01T10:15:00,1,GET /data/m/a+2001/3.mpg\n\n",
        "2026-01-01T10:15:00,1,GET /rate/a+2001=5",
        "2026-01-01T10:15:00,1,GET /rate/a+2001=\u0665",
        "2026-01-01T10:15:00,1,GET /rate/a+2001=0",
        "2026-01-01T10:15:00,1,GET /rate/a=b+2001=3",
        f"2026-01-01T10:15:00,1,{SERVER}, status 200, result: , 2 ms",
        f"2026-01-01T10:15:00,1,{SERVER}, status 200, result: a+2001, b+2002, 2 ms",
        f"2026-01-01T10:15:00,1,{SERVER}, status 200, result: a+2001,b+2002, 2 ms",
        f"2026-01-01T10:15:00,1,{SERVER}, status 200, result: a+2001, , 2 ms",
        f"2026-01-01T10:15:00,1,{SERVER}, status 200, result: am\u00e9lie+2001, 2 ms",
        f"2026-01-01T10:15:00,1,{SERVER}, status 0, result: refused, 5 ms, status 9, 800 ms",
        f"2026-01-01T10:15:00,1,{SERVER}, status 500, result: \u00e9chec, d\u00e9lai, 12 ms",
        f"2026-01-01T10:15:00,1,{SERVER}, status 500, result: line\nbreak, 12 ms",
        f"2026-01-01T10:15:00,1,{SERVER}, status 500, result: , 12 ms",
        f"2026-01-01T10:15:00,1,{SERVER}, status 0, result: x, 1000000000 ms",
        f"2026-01-01T10:15:00,1,{SERVER}, status 099, result: x, 1 ms",
        "2026-01-01T10:15:00,1,recommendation request a\u00e9b, status 200, result: , 1 ms",
        "2026-01-01T10:15:00,1,recommendation request a\x01b, status 200, result: , 1 ms",
        "2026-01-01T10:15:00,1,recommendation request a,b, status 200, result: , 1 ms",
        f"2026-01-01T10:15:00,1,{SERVER}, status 0, result: {'x' * (MAX_LINE_CHARS - 120)}, 1 ms",
        f"2026-01-01T10:15:00,1,{SERVER}, status 0, result: {'x' * MAX_LINE_CHARS}, 1 ms",
        b"2026-01-01T10:15:00,1,GET /data/m/a+2001/3.mpg" + b"\xff",
        b"",
    ]


def mutations(lines: list[str], rng: np.random.Generator) -> list[str]:
    """Each line with one character replaced, inserted or removed (position and character at random)."""
    out = []
    for line in lines:
        spot = int(rng.integers(len(line)))
        new = MUTANTS[int(rng.integers(len(MUTANTS)))]
        keep = int(rng.integers(2))  # 0: replace the character, 1: insert before it
        out.append(line[:spot] + new + line[spot + 1 - keep :])
    return out


def corpus(real: list[str]) -> list[bytes]:
    rng = np.random.default_rng(11)
    lines: list[str | bytes] = list(real)
    by_kind: dict[str, list[str]] = {}
    for line in real:
        by_kind.setdefault(line_kind(line), []).append(line)
    for damage in DAMAGES:
        for kind, candidates in by_kind.items():
            if fits(damage.needs, kind):
                picks = rng.choice(len(candidates), size=min(len(candidates), 300), replace=False)
                lines += [damage.build(rng, candidates[int(i)]) for i in picks]
    for form in ("space_time", "extra_field"):
        lines += [drift(rng, line, form)[0] for line in real[:2_000]]
    lines += mutations(real[:40_000], rng)
    lines += edge_cases()
    order = rng.permutation(len(lines))  # damaged lines spread over the batch, as in a real log
    return [lines[int(i)] if isinstance(lines[int(i)], bytes) else lines[int(i)].encode() for i in order]


def as_results(batch: ParsedBatch, count: int) -> list[Any]:
    """The batch's columns turned back into one event (or Malformed) per line."""
    out: list[Any] = [None] * count
    for row, malformed in batch.malformed:
        out[row] = malformed
    for kind, table in batch.events.items():
        for r in table.to_pylist():
            head = (r["time"], r["user_id"])
            if kind == "watch":
                event: Any = WatchEvent(*head, r["movie_id"], r["minute"])
            elif kind == "rate":
                event = RateEvent(*head, r["movie_id"], r["rating"])
            else:
                items = tuple(r["items"])
                event = RecoEvent(*head, r["server"], r["status"], items, r["error"], r["latency_ms"])
            assert out[r["row"]] is None, f"line {r['row']} parsed twice"
            out[r["row"]] = event
    return out


def test_the_batch_parser_gives_what_parse_line_gives_on_every_line(real_lines: list[str]) -> None:
    values = corpus(real_lines)
    assert len(values) > 100_000
    expected = [parse_line(value) for value in values]
    reasons = {parsed.reason for parsed in expected if isinstance(parsed, Malformed)}
    assert reasons == {damage.reason for damage in DAMAGES}  # every damage kind is in the corpus

    batch = parse_batch(values)
    actual = as_results(batch, len(values))
    pairs = enumerate(zip(expected, actual, strict=True))
    mismatches = [(i, values[i], e, a) for i, (e, a) in pairs if e != a]
    assert not mismatches, mismatches[:5]
    # the columns come out as the lake stores them, each table in line order
    for kind, table in batch.events.items():
        lake = EVENT_TABLES[kind]
        assert [(f.name, f.type) for f in table.schema if f.name != "row"] == [
            (f.name, f.type) for f in lake if f.name not in ("partition", "offset")
        ]
        rows = table["row"].to_pylist()
        assert rows == sorted(rows)
    assert [row for row, _ in batch.malformed] == sorted(row for row, _ in batch.malformed)
    # the lines kept as text, bad bytes escaped and flagged
    texts = batch.lines.to_pylist()
    for value, text, bad in zip(values, texts, batch.undecodable.tolist(), strict=True):
        try:
            assert text == value.decode() and not bad
        except UnicodeDecodeError:
            assert text == value.decode("utf-8", "backslashreplace") and bad


def test_the_fast_path_decides_every_line_the_site_writes_in_its_plain_form(real_lines: list[str]) -> None:
    plain = [line.encode() for line in real_lines if line.isascii()]
    assert len(plain) > 0.99 * len(real_lines)
    batch = parse_batch(plain)
    assert batch.fallback == 0  # a fast path that sent everything to parse_line would pass the test above
    assert sum(table.num_rows for table in batch.events.values()) == len(plain)
    assert {kind for kind, table in batch.events.items() if table.num_rows} == {"watch", "rate", "reco"}


def test_an_empty_batch_has_empty_tables() -> None:
    batch = parse_batch([])
    assert batch.fallback == 0 and batch.malformed == [] and len(batch.lines) == 0
    assert all(table.num_rows == 0 for table in batch.events.values())
