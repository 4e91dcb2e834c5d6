"""The lake's Parquet codec: seconds to write a batch's tables and bytes on disk, per codec.

Builds the tables of a batch of simulated lines as ingest does (``consume.build_tables``; 1M users
x 27K movies), splits them by hour as ingest does, and writes every part with each codec (best of
``--passes``; the same files each time). Run on demand:

    .venv/bin/python bench/bench_parquet_codec.py [--lines 1000000]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from datetime import datetime
from itertools import islice
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from movierec import settings as movierec_settings
from movierec.ingest import consume
from simulator.backfill import history_lines
from simulator.commands import DEFAULT_SESSIONS_PER_DAY, load_history

CODECS = ("zstd", "snappy", "lz4", "none")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument("--users", type=int, default=1_000_000)
    parser.add_argument("--movies", type=int, default=27_000)
    parser.add_argument("--passes", type=int, default=2)
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="bench-codec-"))
    settings = movierec_settings.load(
        {
            "MOVIEREC_HOME": str(home),
            "MOVIEREC_SCALE_USERS": str(args.users),
            "MOVIEREC_SCALE_MOVIES": str(args.movies),
        }
    )
    history = load_history(settings)
    days = args.lines / (DEFAULT_SESSIONS_PER_DAY * 15)  # generous: islice stops at --lines
    lines = history_lines(
        np.random.default_rng(1), history, datetime(2026, 11, 1), days, DEFAULT_SESSIONS_PER_DAY
    )
    records = [
        consume.Record(
            user_id % 4, n, 1_795_000_000_000 + n, line.encode() if isinstance(line, str) else line
        )
        for n, (_, user_id, line) in enumerate(islice(lines, args.lines))
    ]
    tables = consume.build_tables(records)
    parts = [
        (name, n, part)
        for name, table in tables.items()
        for n, part in enumerate(consume.split_by_hour(table, consume.PARTITION_TIME[name]).values())
    ]
    print(f"{len(records):,} lines -> {len(parts)} files (tables by hour)")
    print(f"{'codec':<8} {'seconds':>8} {'MB':>8} {'raw MB':>8}")
    for codec in CODECS:
        best = float("inf")
        for _ in range(args.passes):
            folder = home / codec
            folder.mkdir(exist_ok=True)
            started = time.perf_counter()
            for name, n, part in parts:
                pq.write_table(part, folder / f"{name}-{n}.parquet", compression=codec)
            best = min(best, time.perf_counter() - started)
        size = sum(path.stat().st_size for path in folder.iterdir())
        raw = sum(path.stat().st_size for path in folder.glob("raw-*"))
        print(f"{codec:<8} {best:>8.2f} {size / 1e6:>8.1f} {raw / 1e6:>8.1f}")


if __name__ == "__main__":
    main()
