"""The retrain's Spark jobs under the JVM's default collector (G1) and under ParallelGC, side by
side on the same lake: wall and CPU seconds per job, and the ratio ParallelGC / G1.

    MOVIEREC_HOME=<a home with a lake, e.g. what make up left> .venv/bin/python bench/bench_spark_gc.py \\
        [--rounds 2] [--work /tmp/bench-spark-gc] [--json FILE]

The home's lake and world are copied into one fresh home per collector under ``--work`` (the home
itself is not touched). Each round runs prepare, train, evaluate and precompute (through
``spark-submit``, as the retrain DAG runs them) in both homes, the collectors' order swapped from
round to round so a drift of the shared machine does not favour one. A job's CPU seconds are its
whole process tree's (``RUSAGE_CHILDREN``: the launcher, the JVM, the Python driver and workers),
start-up included. The figures decide ``spark_submit.JAVA_OPTIONS``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import resource
import statistics
import time
from pathlib import Path
from typing import Any

from bench_spark_cluster import home_copy  # bench/ is the script's folder: the same home copy

from movierec import settings as settings_module
from movierec.ops import spark_submit
from movierec.settings import Settings

log = logging.getLogger("bench.spark_gc")
VERSION = "20261201T000000Z"
JOBS = ("prepare", "train", "evaluate", "precompute")
COLLECTORS = {"G1": "-XX:+UseG1GC", "ParallelGC": "-XX:+UseParallelGC"}


def children_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_jobs(settings: Settings, java_options: str) -> dict[str, dict[str, float]]:
    figures = {}
    for job in JOBS:
        began, cpu = time.monotonic(), children_cpu_seconds()
        spark_submit.submit(settings, job, ["--version", VERSION], tag=VERSION, java_options=java_options)
        figures[job] = {
            "wall": round(time.monotonic() - began, 1),
            "cpu": round(children_cpu_seconds() - cpu, 1),
        }
        log.info("%s with %s: %s", job, java_options, figures[job])
    return figures


def summary(rounds: list[dict[str, dict[str, dict[str, float]]]]) -> dict[str, Any]:
    """Median wall and CPU seconds per collector and job, and ParallelGC / G1."""
    median = {
        name: {
            job: {k: round(statistics.median(r[name][job][k] for r in rounds), 1) for k in ("wall", "cpu")}
            for job in JOBS
        }
        for name in COLLECTORS
    }
    ratio = {
        job: {k: round(median["ParallelGC"][job][k] / median["G1"][job][k], 2) for k in ("wall", "cpu")}
        for job in JOBS
    }
    return {"median_seconds": median, "ratio_parallel_to_g1": ratio, "rounds": rounds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--work", type=Path, default=Path("/tmp/bench-spark-gc"))
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    source = settings_module.load().home
    if not (source / "lake").exists():
        parser.error(f"{source} has no lake: point MOVIEREC_HOME at a home with one (make up makes one)")
    env = {k: v for k, v in os.environ.items() if k.startswith("MOVIEREC_")}
    homes = {
        name: settings_module.load(env | {"MOVIEREC_HOME": str(home_copy(source, args.work / name))})
        for name in COLLECTORS
    }
    rounds = []
    for number in range(args.rounds):
        order = list(COLLECTORS) if number % 2 == 0 else list(reversed(COLLECTORS))
        rounds.append({name: run_jobs(homes[name], COLLECTORS[name]) for name in order})
    result = summary(rounds)
    print(json.dumps({k: v for k, v in result.items() if k != "rounds"}, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
