"""Job ``train``: fit every candidate, before T (to evaluate) and on all data (to serve).

    spark-submit spark_jobs/train.py --version VERSION [--rank 64] [--reg 0.05] [--alpha 10]
                                     [--iterations 10]

The candidates are ``movierec.models.candidates.default_candidates`` (popularity, popularity within
the user's demographic group, ALS at rank 16 and at the given rank, rank 16 with demographic side
features; while no model serves and no rank is given, all but the ALS at the other rank, the one
expensive fit, so that a first model comes sooner). Each is fitted on the training
interactions (before T) into ``candidates/<name>/before_t`` and refitted on all interactions
into ``candidates/<name>/all``, with its ``train.json`` (kind, parameters, cost); ``evaluate``
then picks one and the refit of that one is served. Refitting every candidate costs a few cheap
fits and keeps the DAG's order prepare -> train -> evaluate (no fit after the choice). A re-run
replaces the version's candidates.
"""

from __future__ import annotations

import argparse
import logging
import shutil
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import pyarrow.parquet as pq

from movierec import settings as settings_module
from movierec.models import candidates, registry, versions
from movierec.settings import Settings
from spark_jobs import files
from spark_jobs.progress import measured, setup_logging

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

log = logging.getLogger("movierec.train")


def training_windows(
    spark: SparkSession, settings: Settings, version: str
) -> list[candidates.TrainingWindow]:
    """The version's two windows, read from ``prepare``'s output (interactions cached)."""
    prepared = versions.prepared_dir(settings, version)
    folder = versions.model_dir(settings, version)
    params = files.read_json(folder / versions.PARAMS_FILE)
    features = spark.read.parquet(str(prepared / "user_features.parquet"))
    demographics = spark.read.parquet(str(prepared / versions.DEMOGRAPHICS_FILE))
    movie_count = pq.read_metadata(folder / versions.MOVIES_FILE).num_rows
    ends = {
        "before_t": ("train.parquet", datetime.fromisoformat(params["split_time"])),
        "all": ("all.parquet", datetime.fromisoformat(params["data_end"]) + timedelta(microseconds=1)),
    }
    return [
        candidates.TrainingWindow(
            name, spark.read.parquet(str(prepared / data)).cache(), until, features, movie_count, demographics
        )
        for name, (data, until) in ends.items()
    ]


def train(
    spark: SparkSession, settings: Settings, version: str, fitting: Sequence[candidates.Candidate]
) -> dict[str, Any]:
    """Fit every candidate of ``fitting`` on both windows; per candidate its ``train.json`` entry."""
    names = [candidate.name for candidate in fitting]
    if len(set(names)) != len(names):
        raise ValueError(f"candidate names must differ: {names}")
    shutil.rmtree(versions.model_dir(settings, version) / versions.CANDIDATES_DIR, ignore_errors=True)
    windows = training_windows(spark, settings, version)
    report: dict[str, Any] = {}
    for candidate in fitting:
        cost: dict[str, Any] = {}
        for window in windows:
            with measured(spark, f"{candidate.name} {window.name}") as spent:
                fitted = candidate.fit(spark, window)
            fitted.save(versions.fitted_dir(settings, version, candidate.name, window.name))
            cost[window.name] = {"wall_seconds": spent.wall_seconds, "cpu_seconds": spent.cpu_seconds}
        entry = candidates.train_entry(candidate, cost)
        files.write_json(
            versions.candidate_dir(settings, version, candidate.name) / versions.TRAIN_FILE, entry
        )
        report[candidate.name] = entry
    for window in windows:
        window.interactions.unpersist()
    return report


def candidates_to_fit(
    settings: Settings, rank: int | None, reg: float, alpha: float, iterations: int
) -> list[candidates.Candidate]:
    """The default candidates; while nothing serves, the cheap ones only, so the first model
    comes sooner (``default_candidates``' ``first_model``)."""
    first_model = registry.current_version(settings) is None
    return candidates.default_candidates(
        settings, rank=rank, reg=reg, alpha=alpha, iterations=iterations, first_model=first_model
    )


def main(argv: list[str] | None = None) -> None:
    settings = settings_module.load()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--version", required=True, type=versions.check_version)
    parser.add_argument("--rank", type=int, help=f"ALS rank (default: settings, {settings.als_rank})")
    parser.add_argument("--reg", type=float, default=settings.als_reg)
    parser.add_argument("--alpha", type=float, default=settings.als_alpha)
    parser.add_argument("--iterations", type=int, default=settings.als_iterations)
    args = parser.parse_args(argv)
    if (args.rank is not None and args.rank < 1) or args.iterations < 1 or args.reg < 0 or args.alpha <= 0:
        parser.error("rank and iterations must be >= 1, reg >= 0, alpha > 0")
    if settings.als_blocks < 0:
        parser.error(
            f"MOVIEREC_ALS_BLOCKS must be 0 (from the data) or a block count, got {settings.als_blocks}"
        )
    setup_logging()
    from movierec.ops.spark_submit import print_result
    from spark_jobs.session import build_session

    fitting = candidates_to_fit(settings, args.rank, args.reg, args.alpha, args.iterations)
    spark = build_session(settings, "train")
    try:
        report = train(spark, settings, args.version, fitting)
        print_result({"version": args.version, "candidates": report})
    finally:
        spark.stop()


if __name__ == "__main__":
    main()
