"""A batch's parse, per line (``parse_line``) against vectorised (``parse_batch``), and the batch end to end.

Side by side in one run, over the same full-scale batch (default 1,200,000 lines of
simulated history, 1M users x 27K movies, with the ``malformed`` scenario's 1% of
damaged lines of every kind):

1. the grammar alone: ``parse_line`` on each line vs ``movielog.parse_batch``;
2. the batch's tables: the per-line ``build_tables`` ingest used before (kept below
   as the baseline) vs ``consume.build_tables`` (the code the Airflow task runs),
   checked to give equal tables;
3. the batch end to end without Kafka: build the tables, Great Expectations
   (``consume.apply_quality``), write the Parquet files; each stage's seconds and share.

Run on demand (heavy: under the shared lock):

    flock /tmp/movierec-heavy.lock .venv/bin/python bench/bench_parse_batch.py [--lines 1200000]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import fields
from datetime import datetime
from itertools import islice
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from movierec.ingest import consume
from movierec.ingest.consume import Record
from movierec.movielog import Malformed, parse_batch, parse_line
from movierec.schemas import EVENT_TABLES, QUARANTINE, RAW
from movierec.settings import Settings, load
from simulator.backfill import history_lines
from simulator.commands import DEFAULT_SESSIONS_PER_DAY, load_history
from simulator.director import Director
from simulator.scenarios import Scenarios

START = datetime(2026, 11, 1)


def generate(settings: Settings, count: int) -> list[Record]:
    """``count`` lines of history with the malformed scenario on, as Kafka records."""
    history = load_history(settings)
    plan = Scenarios.gather(["malformed"], None, origin=START)
    director = Director.for_run(
        plan, history, seed=1, record=lambda _entry: None, follow=0.5, origin=START, mode="backfill"
    )
    days = max(count / (DEFAULT_SESSIONS_PER_DAY * 12), 1 / 24)  # generous: islice stops at count
    lines = history_lines(
        np.random.default_rng(1), history, START, days, DEFAULT_SESSIONS_PER_DAY, 0.5, director
    )
    base_ms = int(START.timestamp() * 1000)
    return [
        Record(n % 4, n // 4, base_ms + n, line if isinstance(line, bytes) else line.encode())
        for n, (_, _, line) in enumerate(islice(lines, count))
    ]


def per_line_tables(records: Sequence[Record]) -> dict[str, pa.Table]:
    """The baseline: ingest's build_tables before the batch parser, one parse_line and appends per line."""
    raw: dict[str, list[Any]] = defaultdict(list)
    typed: dict[str, dict[str, list[Any]]] = {name: defaultdict(list) for name in EVENT_TABLES}
    bad: dict[str, list[Any]] = defaultdict(list)
    for record in records:
        parsed = parse_line(record.value)
        try:
            text, original = record.value.decode("utf-8"), None
        except UnicodeDecodeError:
            text, original = record.value.decode("utf-8", "backslashreplace"), record.value
        for column, value in zip(
            RAW.names, (record.partition, record.offset, record.kafka_ms, text, original), strict=True
        ):
            raw[column].append(value)
        if isinstance(parsed, Malformed):
            values = (record.partition, record.offset, record.kafka_ms, text, "parse", parsed.reason.value)
            for column, value in zip(QUARANTINE.names, (*values, parsed.detail or None), strict=True):
                bad[column].append(value)
            continue
        columns = typed[parsed.kind]
        for field in fields(parsed):
            value = getattr(parsed, field.name)
            columns[field.name].append(list(value) if field.name == "items" else value)
        columns["partition"].append(record.partition)
        columns["offset"].append(record.offset)
    tables = {
        "raw": pa.Table.from_pydict(raw, schema=RAW),
        "quarantine": pa.Table.from_pydict(bad, schema=QUARANTINE),
    }
    for name, schema in EVENT_TABLES.items():
        tables[name] = pa.Table.from_pydict({c: typed[name][c] for c in schema.names}, schema=schema)
    return tables


def best_seconds(run: Callable[[], object], repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        began = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - began)
    return best


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=1_200_000)
    parser.add_argument("--users", type=int, default=1_000_000)
    parser.add_argument("--movies", type=int, default=27_000)
    parser.add_argument("--repeat", type=int, default=2, help="passes per measurement; the best counts")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-parse-batch-") as home:  # the lake it writes goes too
        measure(args, Path(home))


def measure(args: argparse.Namespace, home: Path) -> None:
    settings = load(
        {
            "MOVIEREC_HOME": str(home),
            "MOVIEREC_SCALE_USERS": str(args.users),
            "MOVIEREC_SCALE_MOVIES": str(args.movies),
        }
    )
    began = time.perf_counter()
    records = generate(settings, args.lines)
    values = [record.value for record in records]
    n = len(values)
    print(
        f"generated {n:,} lines in {time.perf_counter() - began:.1f} s; "
        f"world {args.users:,} users x {args.movies:,} movies"
    )

    batch = parse_batch(values)
    print(
        f"malformed {len(batch.malformed):,} ({len(batch.malformed) / n:.2%}); "
        f"sent to parse_line by the fast path {batch.fallback:,} ({batch.fallback / n:.2%})"
    )
    old_tables, new_tables = per_line_tables(records), consume.build_tables(records)
    same = all(old_tables[name].equals(new_tables[name]) for name in old_tables)
    print(f"per-line and batch tables equal: {same}")
    if not same:
        raise SystemExit("the two builds differ: the figures below would compare different work")

    print(f"\nbest of {args.repeat} passes each, same {n:,} lines")
    header = f"{'stage':<16}{'per line lines/s':>18}{'batch lines/s':>16}{'speed-up':>10}"
    print(header)
    print("-" * len(header))
    pairs = {
        "grammar": (lambda: [parse_line(v) for v in values], lambda: parse_batch(values)),
        "build_tables": (lambda: per_line_tables(records), lambda: consume.build_tables(records)),
    }
    for stage, (old, new) in pairs.items():
        old_s, new_s = best_seconds(old, args.repeat), best_seconds(new, args.repeat)
        print(f"{stage:<16}{n / old_s:>18,.0f}{n / new_s:>16,.0f}{old_s / new_s:>9.1f}x")

    print("\none batch end to end without Kafka (build_tables, GX, write Parquet), first run and second:")
    for attempt in ("first", "second"):  # the first builds the GX project; the second is a steady batch
        seconds: dict[str, float] = {}
        batch_id = f"bench-{attempt}"
        t0 = time.perf_counter()
        tables = consume.build_tables(records)
        t1 = time.perf_counter()
        tables = consume.apply_quality(settings, batch_id, tables)
        t2 = time.perf_counter()
        consume.write_batch_files(settings, batch_id, tables)
        t3 = time.perf_counter()
        seconds = {"parse": t1 - t0, "quality (GX)": t2 - t1, "write": t3 - t2}
        total = t3 - t0
        shares = ", ".join(f"{k} {v:.1f} s ({v / total:.0%})" for k, v in seconds.items())
        print(f"  {attempt}: {total:.1f} s, {n / total:,.0f} lines/s; {shares}")


if __name__ == "__main__":
    main()
