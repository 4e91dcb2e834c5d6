"""Ingest throughput end to end from the broker, and where the time goes.

Fills a private embedded broker with simulated history (default 1,000,000
lines, 1M users x 27K movies), then in one run:
  1. a bare read of the same offset range (the floor: Kafka -> Python);
  2. one real ingest batch (read, parse, quality, write Parquet, commit),
     with its per-stage seconds.
Run on demand:  .venv/bin/python bench/bench_ingest.py [--lines 1000000]
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
from datetime import datetime
from itertools import islice
from pathlib import Path

import numpy as np

from movierec.ingest import consume
from movierec.ingest.stream import TopicWriter
from movierec.ops.broker import broker
from simulator.backfill import history_lines
from simulator.commands import DEFAULT_SESSIONS_PER_DAY, load_history


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument("--users", type=int, default=1_000_000)
    parser.add_argument("--movies", type=int, default=27_000)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    home = Path(tempfile.mkdtemp(prefix="bench-ingest-"))
    settings = broker.private_settings(
        home, MOVIEREC_SCALE_USERS=str(args.users), MOVIEREC_SCALE_MOVIES=str(args.movies)
    )
    history = load_history(settings)
    broker.start(settings)
    try:
        broker.ensure_topics(settings)
        days = args.lines / (DEFAULT_SESSIONS_PER_DAY * 15)  # generous: islice stops at --lines
        lines = history_lines(
            np.random.default_rng(1), history, datetime(2026, 11, 1), days, DEFAULT_SESSIONS_PER_DAY
        )
        with TopicWriter(settings) as writer:
            for _, user_id, line in islice(lines, args.lines):
                writer.write(line, user_id)

        consumer = consume.kafka_consumer(settings)
        ranges = consume.plan_ranges(settings, consumer)
        started = time.perf_counter()
        records = consume.read_ranges(settings, consumer, ranges)
        bare_seconds = time.perf_counter() - started
        consumer.close()

        started = time.perf_counter()
        report = consume.ingest_batch(settings)
        batch_seconds = time.perf_counter() - started
    finally:
        broker.stop(settings)

    print(f"{len(records):,} lines; world {args.users:,} users x {args.movies:,} movies")
    print(f"{'path':<36} {'seconds':>8} {'lines/s':>10}")
    print(f"{'bare read (Kafka -> Python)':<36} {bare_seconds:>8.1f} {len(records) / bare_seconds:>10,.0f}")
    print(f"{'ingest batch, end to end':<36} {batch_seconds:>8.1f} {report['lines'] / batch_seconds:>10,.0f}")
    print("where the ingest time goes:")
    for stage, seconds in report["seconds"].items():
        print(f"  {stage:<10} {seconds:>6.1f} s  {seconds / batch_seconds:>5.0%}")


if __name__ == "__main__":
    main()
