"""Job ``train_als``: fit every candidate model, before T (to evaluate) and on all data (to serve).

    spark-submit spark_jobs/train_als.py --version VERSION [--rank 64] [--reg 0.05] [--alpha 10]
                                         [--iterations 10]

Candidates: ``popularity`` (distinct recent viewers per movie), ``als_r16`` and ``als_r<rank>``
(implicit-preference ALS with the given rank; 64 when the given rank is 16 itself), and
``als_r16_demo``: rank 16 on the same interactions plus each user's demographic pseudo-items
(``prepare.demographic_features``), for users who are in the window; its saved model keeps the
factors of the movies only (``save_model``), so every reader scores movies as before. Each is fitted
on the training interactions (before T) into ``candidates/<name>/before_t`` and refitted on all
interactions into ``candidates/<name>/all``; ``evaluate`` then picks one and the refit of that one
is served. Refitting every ALS candidate costs two extra fits of the cheap rank-16 models, and
keeps the DAG's order prepare -> train -> evaluate (no fit after the choice).
"""

from __future__ import annotations

import argparse
import logging
import shutil
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow.parquet as pq

from movierec import settings as settings_module
from movierec.models import versions
from movierec.settings import Settings
from spark_jobs import files
from spark_jobs.prepare import POPULARITY_DAYS
from spark_jobs.progress import measured, setup_logging

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

log = logging.getLogger("movierec.train")

CHECKPOINT_INTERVAL = 5  # cut the RDD lineage every 5 iterations (deep lineage overflows the stack)
SMALL_RANK = 16
DEMOGRAPHIC_SUFFIX = "_demo"


def candidate_ranks(rank: int) -> dict[str, int]:
    """The ALS candidates: rank 16 and the given rank (64 when that is 16 too), and rank 16 with
    demographic pseudo-items (its name ends in ``DEMOGRAPHIC_SUFFIX``)."""
    other = rank if rank != SMALL_RANK else 64
    small = f"als_r{SMALL_RANK}"
    return {small: SMALL_RANK, f"als_r{other}": other, small + DEMOGRAPHIC_SUFFIX: SMALL_RANK}


def with_features(interactions: DataFrame, features: DataFrame) -> DataFrame:
    """``interactions`` (uidx, iidx, strength) plus the feature rows of the users present in it."""
    present = interactions.select("uidx").distinct()
    own = features.join(present, "uidx").select("uidx", "iidx", "strength")
    return interactions.select("uidx", "iidx", "strength").unionByName(own)


def save_model(model: Any, target: Path, movie_count: int) -> None:
    """Save an ``ALSModel`` whose item factors are the movies' only (ids below ``movie_count``).

    Pseudo-items (demographic features) shaped the user factors during the fit; nothing
    recommends them, so they are left out of the saved model rather than filtered by each reader.
    """
    from pyspark.sql import functions as F

    model.write().overwrite().save(str(target))
    items, staged = target / "itemFactors", target / "itemFactors.movies"
    model.itemFactors.filter(F.col("id") < movie_count).write.mode("overwrite").parquet(str(staged))
    shutil.rmtree(items)
    staged.rename(items)


def als_estimator(rank: int, reg: float, alpha: float, iterations: int, seed: int) -> Any:
    from pyspark.ml.recommendation import ALS

    return ALS(
        userCol="uidx",
        itemCol="iidx",
        ratingCol="strength",
        implicitPrefs=True,
        rank=rank,
        regParam=reg,
        alpha=alpha,
        maxIter=iterations,
        checkpointInterval=CHECKPOINT_INTERVAL,
        coldStartStrategy="drop",
        seed=seed,
    )


def popularity_scores(interacted: DataFrame, until: datetime, days: int = POPULARITY_DAYS) -> DataFrame:
    """(iidx, viewers): distinct users with a positive interaction in the ``days`` before ``until``."""
    from pyspark.sql import functions as F

    since = until - timedelta(days=days)
    return (
        interacted.filter(F.col("strength") > 0)
        .filter(F.col("last_time") >= F.lit(since).cast("timestamp_ntz"))
        .filter(F.col("last_time") < F.lit(until).cast("timestamp_ntz"))
        .groupBy("iidx")
        .agg(F.countDistinct("uidx").alias("viewers"))
    )


def train(
    spark: SparkSession,
    settings: Settings,
    version: str,
    rank: int,
    reg: float,
    alpha: float,
    iterations: int,
) -> dict[str, Any]:
    """Fit every candidate on both windows; per candidate its parameters and training cost."""
    prepared = versions.prepared_dir(settings, version)
    params = files.read_json(versions.model_dir(settings, version) / versions.PARAMS_FILE)
    cut = datetime.fromisoformat(params["split_time"])
    data_end = datetime.fromisoformat(params["data_end"])
    windows = {
        "before_t": (spark.read.parquet(str(prepared / "train.parquet")).cache(), cut),
        "all": (
            spark.read.parquet(str(prepared / "all.parquet")).cache(),
            data_end + timedelta(microseconds=1),
        ),
    }
    features = spark.read.parquet(str(prepared / "user_features.parquet"))
    movie_count = pq.read_metadata(versions.model_dir(settings, version) / versions.MOVIES_FILE).num_rows
    report: dict[str, Any] = {}

    folder = versions.candidate_dir(settings, version, "popularity")
    entry: dict[str, Any] = {"model": "popularity", "params": {"days": POPULARITY_DAYS}, "cost": {}}
    for window, (frame, until) in windows.items():
        with measured(spark, f"popularity {window}") as cost:
            files.write_single_parquet(popularity_scores(frame, until), folder / f"{window}.parquet")
        entry["cost"][window] = {"wall_seconds": cost.wall_seconds, "cpu_seconds": cost.cpu_seconds}
    files.write_json(folder / "train.json", entry)
    report["popularity"] = entry

    for name, candidate_rank in candidate_ranks(rank).items():
        folder = versions.candidate_dir(settings, version, name)
        als_params = {
            "rank": candidate_rank,
            "reg": reg,
            "alpha": alpha,
            "iterations": iterations,
            "checkpoint_interval": CHECKPOINT_INTERVAL,
            "implicit_prefs": True,
            "seed": settings.seed,
        }
        demographic = name.endswith(DEMOGRAPHIC_SUFFIX)
        if demographic:
            als_params["demographic_features"] = "age band, gender, occupation, age band x gender"
        entry = {"model": "als", "params": als_params, "cost": {}}
        for window, (interactions, _until) in windows.items():
            frame = with_features(interactions, features) if demographic else interactions
            estimator = als_estimator(candidate_rank, reg, alpha, iterations, settings.seed)
            label = f"{name} {window} ({iterations} iterations, {frame.count():,} rows)"
            with measured(spark, label) as cost:
                model = estimator.fit(frame)
                model.userFactors.count()  # the fit is lazy in parts: force the factors inside the timing
            save_model(model, folder / window, movie_count)
            entry["cost"][window] = {
                "wall_seconds": cost.wall_seconds,
                "cpu_seconds": cost.cpu_seconds,
                "seconds_per_iteration": cost.wall_seconds / iterations,
            }
        files.write_json(folder / "train.json", entry)
        report[name] = entry
    for frame, _until in windows.values():
        frame.unpersist()
    return report


def main(argv: list[str] | None = None) -> None:
    settings = settings_module.load()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--version", required=True, type=versions.check_version)
    parser.add_argument("--rank", type=int, default=settings.als_rank)
    parser.add_argument("--reg", type=float, default=settings.als_reg)
    parser.add_argument("--alpha", type=float, default=settings.als_alpha)
    parser.add_argument("--iterations", type=int, default=settings.als_iterations)
    args = parser.parse_args(argv)
    if args.rank < 1 or args.iterations < 1 or args.reg < 0 or args.alpha <= 0:
        parser.error("rank and iterations must be >= 1, reg >= 0, alpha > 0")
    setup_logging()
    from movierec.ops.spark_submit import print_result
    from spark_jobs.session import build_session

    spark = build_session(settings, "train_als")
    try:
        report = train(spark, settings, args.version, args.rank, args.reg, args.alpha, args.iterations)
        print_result({"version": args.version, "candidates": report})
    finally:
        spark.stop()


if __name__ == "__main__":
    main()
