"""Backfill throughput at full scale: generating history alone vs writing it through the real broker.

Side by side in one run, same seed, same simulated span:
  1. generate only (lines discarded): the simulator's own cost;
  2. generate + produce to a private embedded Kafka broker (acks=all, idempotent).
The ratio shows where the time goes. Run on demand:

    .venv/bin/python bench/bench_backfill.py [--days 0.5] [--users 1000000] [--movies 27000]
"""

from __future__ import annotations

import logging
import tempfile
import time
from datetime import datetime
from pathlib import Path

from world_scale import scale_env, scale_parser  # bench/ is the script's folder

from movierec.ingest.stream import TopicWriter
from movierec.ops.broker import broker
from simulator.backfill import run_backfill
from simulator.commands import DEFAULT_SESSIONS_PER_DAY, load_history

START = datetime(2026, 11, 1)


def main() -> None:
    parser = scale_parser(__doc__)
    parser.add_argument("--days", type=float, default=0.5)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    home = Path(tempfile.mkdtemp(prefix="bench-backfill-"))
    settings = broker.private_settings(home, **scale_env(args))
    began = time.perf_counter()
    history = load_history(settings)
    load_seconds = time.perf_counter() - began

    def timed(write: object) -> tuple[int, float, float]:
        started, cpu = time.perf_counter(), time.process_time()
        count = run_backfill(
            history,
            write,  # type: ignore[arg-type]
            seed=settings.seed,
            start=START,
            days=args.days,
            sessions_per_day=DEFAULT_SESSIONS_PER_DAY,
        )
        return count, time.perf_counter() - started, time.process_time() - cpu

    generated, generate_seconds, generate_cpu = timed(lambda line, user: None)
    broker.start(settings)
    try:
        broker.ensure_topics(settings)
        with TopicWriter(settings) as writer:
            produced, produce_seconds, produce_cpu = timed(writer.write)
    finally:
        broker.stop(settings)

    print(f"world {args.users:,} users x {args.movies:,} movies, loaded in {load_seconds:.1f} s")
    print(f"{args.days} simulated days, {DEFAULT_SESSIONS_PER_DAY:,} sessions/day")
    # CPU: this process's, librdkafka's threads included (the broker's JVM is not)
    print(f"{'path':<34} {'lines':>10} {'seconds':>8} {'lines/s':>10} {'CPU s':>7} {'CPU us/line':>11}")
    for name, count, seconds, cpu in [
        ("generate only", generated, generate_seconds, generate_cpu),
        ("generate + Kafka (acks=all)", produced, produce_seconds, produce_cpu),
    ]:
        print(
            f"{name:<34} {count:>10,} {seconds:>8.1f} {count / seconds:>10,.0f} {cpu:>7.1f}"
            f" {1e6 * cpu / count:>11.2f}"
        )
    print(f"Kafka share of the end-to-end time: {1 - generate_seconds / produce_seconds:.0%}")


if __name__ == "__main__":
    main()
