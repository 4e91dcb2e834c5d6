"""The first model's ALS fits in Spark's default 10 blocks and in ``als.block_count``'s, side by side
on the same lake: the train job's wall and CPU seconds, each fit's seconds, and the ratio.

    MOVIEREC_HOME=<a home with a lake, e.g. what make up left> .venv/bin/python bench/bench_als_blocks.py \\
        [--rounds 2] [--work /tmp/bench-als-blocks] [--json FILE]

The home's lake and world are copied into one fresh home per setting under ``--work`` (the home
itself is not touched; no model is copied, so train fits the first model's candidates, as on
``make up``). ``prepare`` runs once in each (not timed); then each round runs ``train`` through
``spark-submit`` (as the retrain DAG does) in both homes, the order swapped from round to round so
a drift of the shared machine does not favour one. ``MOVIEREC_ALS_BLOCKS`` is 10 in one home and
0 (``block_count``: from the rows and the cores) in the other. CPU seconds are the job's whole
process tree's (the launcher, the JVM, the Python driver). The figures decide ``block_count``.
"""

from __future__ import annotations

import logging
import statistics
import time
from pathlib import Path
from typing import Any

import side_by_side  # bench/ is the script's folder
from bench_spark_gc import children_cpu_seconds

from movierec.models.candidates.als import SPARK_DEFAULT_BLOCKS
from movierec.ops import spark_submit
from movierec.settings import Settings

log = logging.getLogger("bench.als_blocks")
VERSION = "20261201T000000Z"
SETTINGS = {"spark default (10)": str(SPARK_DEFAULT_BLOCKS), "block_count": "0"}


def run_train(settings: Settings) -> dict[str, Any]:
    began, cpu = time.monotonic(), children_cpu_seconds()
    result = spark_submit.submit(settings, "train", ["--version", VERSION], tag=VERSION)
    fits = {
        f"{name} {window}": round(cost["wall_seconds"], 1)
        for name, entry in result["candidates"].items()
        if name.startswith("als")
        for window, cost in entry["cost"].items()
    }
    figures = {
        "wall": round(time.monotonic() - began, 1),
        "cpu": round(children_cpu_seconds() - cpu, 1),
        "als_fits": round(sum(fits.values()), 1),
        "fits": fits,
    }
    log.info("train with MOVIEREC_ALS_BLOCKS=%d: %s", settings.als_blocks, figures)
    return figures


def summary(rounds: list[dict[str, dict[str, Any]]]) -> dict[str, Any]:
    """Median seconds per setting, and block_count / Spark's default."""
    keys = ("wall", "cpu", "als_fits")
    median = {
        name: {k: round(statistics.median(r[name][k] for r in rounds), 1) for k in keys} for name in SETTINGS
    }
    default, ours = median["spark default (10)"], median["block_count"]
    return {
        "median_seconds": median,
        "ratio_block_count_to_default": {k: round(ours[k] / default[k], 2) for k in keys},
        "rounds": rounds,
    }


def main() -> None:
    args = side_by_side.parse_args(__doc__.splitlines()[0], Path("/tmp/bench-als-blocks"))
    homes = {}
    for name, blocks in SETTINGS.items():
        homes[name] = side_by_side.home_settings(args, blocks, MOVIEREC_ALS_BLOCKS=blocks)
        spark_submit.submit(homes[name], "prepare", ["--version", VERSION], tag=VERSION)
    rounds = side_by_side.alternating_rounds(args.rounds, list(SETTINGS), lambda name: run_train(homes[name]))
    side_by_side.report(summary(rounds), args.json)


if __name__ == "__main__":
    main()
