"""The retrain's Spark jobs with and without the driver's class archive (``make install``'s
``movierec spark classes``), side by side on the same lake: wall and CPU seconds per job, and the
ratio archive / none.

    MOVIEREC_HOME=<a home with a lake (make up left one)> .venv/bin/python bench/bench_spark_classes.py \\
        [--rounds 2] [--work /tmp/bench-spark-classes] [--json FILE]

As ``bench_spark_gc.py``: the home's lake and world copied into one fresh home per setting under
``--work``, prepare, train, evaluate and precompute through ``spark-submit`` in both, the order
swapped from round to round; a job's CPU seconds are its whole process tree's, start-up included.
The archive must exist (``make install`` makes it); the other setting names a missing file, which
is what a job without one runs with.
"""

from __future__ import annotations

import logging
from pathlib import Path

import side_by_side  # bench/ is the script's folder
from bench_spark_gc import run_jobs, summary

from movierec.ops import spark_submit

log = logging.getLogger("bench.spark_classes")
ARCHIVES = {"none": Path("/nonexistent/spark-classes.jsa"), "archive": spark_submit.CLASS_ARCHIVE}


def main() -> None:
    args = side_by_side.parse_args(__doc__.splitlines()[0], Path("/tmp/bench-spark-classes"))
    if not spark_submit.CLASS_ARCHIVE.is_file():
        raise SystemExit(f"no class archive at {spark_submit.CLASS_ARCHIVE}: run make install first")
    homes = {name: side_by_side.home_settings(args, name) for name in ARCHIVES}
    rounds = side_by_side.alternating_rounds(
        args.rounds, list(ARCHIVES), lambda name: run_jobs(homes[name], archive=ARCHIVES[name])
    )
    side_by_side.report(summary(rounds, "none", "archive"), args.json)


if __name__ == "__main__":
    main()
