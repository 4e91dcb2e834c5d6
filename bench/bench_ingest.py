"""Ingest throughput end to end from the broker, and where the time goes.

Fills a private embedded broker with simulated history (default 1,000,000 lines,
1M users x 27K movies), then in one run:
  1. a bare read of the same offsets (the floor: Kafka -> Python, one Record per message);
  2. per code tree (this one; with ``--baseline-src DIR`` also another, e.g. main's, on a topic of
     its own holding the same lines): a small first batch that creates the GX project, as a
     lake's first ingest does, then the measured batch -- ``consume.ingest_batch``, the function
     the Airflow task calls, in a fresh process as each Airflow task is (so GX's import and
     project load are paid by the batch), with its per-stage seconds.

    .venv/bin/python bench/bench_ingest.py [--lines 1000000] [--baseline-src DIR] [--json FILE]

A baseline tree is any checkout with the same ``consume.ingest_batch`` entry point, e.g.
``git archive main | tar -x -C /tmp/main-src``; it runs with this virtualenv.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from datetime import datetime
from itertools import islice
from pathlib import Path

import numpy as np

from movierec.ingest import consume
from movierec.ingest.stream import TopicWriter
from movierec.ops.broker import broker
from simulator.backfill import history_lines
from simulator.commands import DEFAULT_SESSIONS_PER_DAY, load_history

REPO = Path(__file__).resolve().parents[1]
WARM_UP_LINES = 20_000
# Run in a fresh interpreter: the settings come from the environment, the report goes to stdout.
ONE_BATCH = """
import json, logging, sys, time
logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
from movierec import settings
from movierec.ingest import consume
began = time.perf_counter()
report = consume.ingest_batch(settings.load())
report["wall"] = time.perf_counter() - began
print(json.dumps(report, default=str))
"""


def run_batch(source: Path, env: dict[str, str]) -> dict:
    """One ``ingest_batch`` of the code in ``source``, in a new process; its report."""
    done = subprocess.run(
        [sys.executable, "-c", ONE_BATCH],
        env={**os.environ, **env, "PYTHONPATH": str(source)},
        cwd=source,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"ingest in {source} failed:\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument("--users", type=int, default=1_000_000)
    parser.add_argument("--movies", type=int, default=27_000)
    parser.add_argument("--baseline-src", type=Path, help="another code tree to run side by side")
    parser.add_argument("--json", type=Path, help="write every figure here (each tree's batch report)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    home = Path(tempfile.mkdtemp(prefix="bench-ingest-"))
    scale = {"MOVIEREC_SCALE_USERS": str(args.users), "MOVIEREC_SCALE_MOVIES": str(args.movies)}
    settings = broker.private_settings(home, **scale)
    trees = {"this tree": REPO}
    if args.baseline_src:
        trees = {"baseline": args.baseline_src.resolve(), **trees}
    history = load_history(settings)
    started = time.perf_counter()
    generated = history_lines(
        np.random.default_rng(1),
        history,
        datetime(2026, 11, 1),
        (args.lines + WARM_UP_LINES) / (DEFAULT_SESSIONS_PER_DAY * 15),  # generous: islice stops
        DEFAULT_SESSIONS_PER_DAY,
    )
    lines = [(user_id, line) for _, user_id, line in islice(generated, args.lines + WARM_UP_LINES)]
    print(f"generated {len(lines):,} lines in {time.perf_counter() - started:.0f} s", flush=True)
    reports: dict[str, dict] = {}
    broker.start(settings)
    try:
        broker.ensure_topics(settings)
        envs = {}
        for n, name in enumerate(trees):
            topic = f"{settings.topic}-bench{n}"
            broker.ensure_topic(
                settings, topic, settings.topic_partitions, {"message.timestamp.type": "LogAppendTime"}
            )
            envs[name] = {
                **scale,
                "MOVIEREC_HOME": str(home / f"tree{n}"),
                "MOVIEREC_KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
                "MOVIEREC_KAFKA_CONTROLLER_PORT": str(settings.kafka_controller_port),
                "MOVIEREC_TOPIC": topic,
            }
        # the first batch of a fresh lake creates the GX project: not what a steady batch pays
        for part in (lines[:WARM_UP_LINES], lines[WARM_UP_LINES:]):
            for env in envs.values():
                with TopicWriter(settings, topic=env["MOVIEREC_TOPIC"]) as writer:
                    for user_id, line in part:
                        writer.write(line, user_id)
            for name, source in trees.items():
                reports[name] = run_batch(source, envs[name])
                print(
                    f"{name}: {reports[name]['lines']:,} lines in {reports[name]['wall']:.1f} s", flush=True
                )

        last_name = list(trees)[-1]
        measured = replace(settings, topic=envs[last_name]["MOVIEREC_TOPIC"])
        consumer = consume.consumer_of(measured, group_id="bench-bare-read")
        ranges = consume.plan_ranges(measured, consumer)
        started = time.perf_counter()
        records = consume.read_ranges(measured, consumer, ranges)
        bare_seconds = time.perf_counter() - started
        del records
        started = time.perf_counter()  # the columns ingest reads now (GC paused meanwhile)
        columns = consume.read_columns(measured, consumer, ranges)
        columns_seconds = time.perf_counter() - started
        consumer.close()
    finally:
        broker.stop(settings)
        shutil.rmtree(home, ignore_errors=True)  # two lakes and a broker's log: ~0.4 GB a run

    print(f"\n{args.lines:,} lines per batch; world {args.users:,} users x {args.movies:,} movies")
    for what, seconds in (("one Record per message", bare_seconds), ("into columns", columns_seconds)):
        print(
            f"bare read (Kafka -> Python, {what}): {len(columns):,} lines in "
            f"{seconds:.1f} s = {len(columns) / seconds:,.0f} lines/s"
        )
    stages = list(next(iter(reports.values()))["seconds"])
    print(
        f"{'tree':<10} {'lines/s':>9} {'seconds':>8} " + " ".join(f"{s:>15}" for s in stages) + "  GX (share)"
    )
    for name, report in reports.items():
        wall, seconds = report["wall"], report["seconds"]
        shares = " ".join(f"{seconds[s]:>6.1f} s ({seconds[s] / wall:>4.0%})" for s in stages)
        # GX: the quality stage, and the wait for its data docs after the write (this tree renders
        # them meanwhile); its import overlaps the read here, so it shows in read+parse if anywhere
        gx = seconds["quality"] + report.get("waited", {}).get("gx_docs", 0.0)
        print(
            f"{name:<10} {report['lines'] / wall:>9,.0f} {wall:>8.1f} {shares}  {gx:.1f} s ({gx / wall:.0%})"
        )
    for name, report in reports.items():
        waited = {k: round(v, 2) for k, v in report.get("waited", {}).items()}
        tables = {k: round(v, 2) for k, v in report.get("quality_tables", {}).items()}
        print(f"{name}: GX waits {waited}; GX seconds per table {tables or 'not reported'}")
    if args.json:
        figures = {
            "lines": args.lines,
            "users": args.users,
            "movies": args.movies,
            "bare_read_seconds": bare_seconds,
            "columns_read_seconds": columns_seconds,
            "reports": reports,
        }
        args.json.write_text(json.dumps(figures, indent=2, default=str))
    if len(reports) == 2:
        base, new = reports.values()
        ratio = (new["lines"] / new["wall"]) / (base["lines"] / base["wall"])
        print(f"speed-up (lines/s, this tree / baseline): {ratio:.2f}x")


if __name__ == "__main__":
    main()
