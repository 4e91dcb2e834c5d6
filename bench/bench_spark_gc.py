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

import logging
import resource
import statistics
import time
from pathlib import Path
from typing import Any

import side_by_side  # bench/ is the script's folder

from movierec.ops import spark_submit
from movierec.settings import Settings

log = logging.getLogger("bench.spark_gc")
VERSION = "20261201T000000Z"
JOBS = ("prepare", "train", "evaluate", "precompute")
COLLECTORS = {"G1": "-XX:+UseG1GC", "ParallelGC": "-XX:+UseParallelGC"}


def children_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_jobs(
    settings: Settings,
    java_options: str = spark_submit.JAVA_OPTIONS,
    archive: Path = spark_submit.CLASS_ARCHIVE,
) -> dict[str, dict[str, float]]:
    """Wall and CPU seconds of each of the retrain's jobs, run one after the other on ``settings``'
    home with these JVM options and driver class archive (used if it exists)."""
    figures = {}
    for job in JOBS:
        began, cpu = time.monotonic(), children_cpu_seconds()
        spark_submit.submit(
            settings, job, ["--version", VERSION], tag=VERSION, java_options=java_options, archive=archive
        )
        figures[job] = {
            "wall": round(time.monotonic() - began, 1),
            "cpu": round(children_cpu_seconds() - cpu, 1),
        }
        log.info("%s with %s: %s", job, java_options, figures[job])
    return figures


def summary(rounds: list[dict[str, dict[str, dict[str, float]]]], base: str, other: str) -> dict[str, Any]:
    """Median wall and CPU seconds per setting and job, and the ratio ``other`` / ``base``."""
    median = {
        name: {
            job: {k: round(statistics.median(r[name][job][k] for r in rounds), 1) for k in ("wall", "cpu")}
            for job in JOBS
        }
        for name in (base, other)
    }
    ratio = {
        job: {k: round(median[other][job][k] / median[base][job][k], 2) for k in ("wall", "cpu")}
        for job in JOBS
    }
    return {"median_seconds": median, "ratio": ratio, "ratio_of": f"{other} / {base}", "rounds": rounds}


def main() -> None:
    args = side_by_side.parse_args(__doc__.splitlines()[0], Path("/tmp/bench-spark-gc"))
    homes = {name: side_by_side.home_settings(args, name) for name in COLLECTORS}
    rounds = side_by_side.alternating_rounds(
        args.rounds, list(COLLECTORS), lambda name: run_jobs(homes[name], COLLECTORS[name])
    )
    side_by_side.report(summary(rounds, "G1", "ParallelGC"), args.json)


if __name__ == "__main__":
    main()
