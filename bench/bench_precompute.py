"""Precompute at full scale: our blocked top-k inside mapInArrow vs ``ALSModel.recommendForAllUsers``,
on the same model, plus the top-k step alone (blocked vs plain argpartition) in numpy.

    .venv/bin/python bench/bench_precompute.py [--users 1000000] [--movies 27000] [--rank 64]
        [--interactions 3000000] [--spark-sample 100000] [--numpy-sample 50000]

The model is an ALS model folder as training leaves it (``movierec/versions.py``) with random
factors of the full size: a tiny ALS is fitted for its metadata, then its factor tables are
replaced, so ``ALSModel.load`` reads a real 1M x 27K model without a 30-minute fit (the cost of
precompute does not depend on what the factors mean). ``recommendForAllUsers`` is timed on a
sample of users with ``recommendForUserSubset`` and extrapolated linearly (all of it is
~15 minutes here); note it neither excludes seen movies nor maps ids back to slugs, so it does
less than our job. Everything runs in one process, side by side; the figures to read are the
ratios.
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from movierec import settings as settings_module
from movierec import topk, versions
from spark_jobs import precompute
from spark_jobs.progress import setup_logging
from spark_jobs.session import build_session

log = logging.getLogger("bench_precompute")
VERSION = "20261128T000000Z"


def random_factors(rows: int, rank: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((rows, rank), dtype=np.float32) / np.sqrt(rank)).astype(np.float32)


def factor_table(factors: np.ndarray) -> pa.Table:
    rank = factors.shape[1]
    features = pa.FixedSizeListArray.from_arrays(pa.array(factors.ravel()), rank).cast(pa.list_(pa.float32()))
    return pa.table({"id": pa.array(np.arange(len(factors), dtype=np.int32)), "features": features})


def build_model(spark, settings, args: argparse.Namespace) -> Path:
    """A full-size model folder: tiny ALS for the metadata, random factor tables of the full size."""
    from pyspark.ml.recommendation import ALS

    folder = versions.model_dir(settings, VERSION)
    folder.mkdir(parents=True)
    tiny = spark.createDataFrame([(0, 0, 1.0), (1, 1, 1.0)], "uidx int, iidx int, confidence float")
    als = ALS(
        rank=args.rank, maxIter=1, implicitPrefs=True, userCol="uidx", itemCol="iidx", ratingCol="confidence"
    )
    als.fit(tiny).write().save(str(folder / versions.ALS_DIR))
    for name, rows, seed in (("userFactors", args.users, 1), ("itemFactors", args.movies, 2)):
        target = folder / versions.ALS_DIR / name
        for old in target.glob("*"):
            old.unlink()
        pq.write_table(factor_table(random_factors(rows, args.rank, seed)), target / "part-00000.parquet")
    rng = np.random.default_rng(3)
    users = np.arange(args.users, dtype=np.int32)
    pq.write_table(
        pa.table({"user_id": users.astype(np.int64) + 1, "uidx": users}), folder / versions.USERS_FILE
    )
    slugs = [f"movie+{i}+{1950 + i % 75}" for i in range(args.movies)]
    pq.write_table(
        pa.table({"movie_id": slugs, "iidx": np.arange(args.movies, dtype=np.int32)}),
        folder / versions.MOVIES_FILE,
    )
    seen = pa.table(
        {
            "uidx": rng.integers(0, args.users, args.interactions, dtype=np.int32),
            "iidx": rng.integers(0, args.movies, args.interactions, dtype=np.int32),
        }
    )
    pq.write_table(seen, folder / versions.SEEN_FILE)
    (folder / versions.FALLBACK_FILE).write_text(json.dumps({"items": slugs[:20]}))
    (folder / versions.MODEL_FILE).write_text(json.dumps({"version": VERSION, "model": "als"}))
    return folder


def time_ours(spark, folder: Path, users: int) -> float:
    """Our job's scoring: every user's exact top-20 of unseen movies, as slugs, written to Parquet."""
    began = time.monotonic()
    frame = precompute.recommend_all(spark, folder, "fallback")
    with tempfile.TemporaryDirectory(dir=folder) as scratch:
        frame.write.parquet(f"{scratch}/recs")
        written = pq.read_metadata(next(Path(scratch, "recs").glob("*.parquet"))).num_rows
    seconds = time.monotonic() - began
    log.info("ours: %s users in %.1f s (a part file holds %s rows)", f"{users:,}", seconds, f"{written:,}")
    return seconds


def time_spark_builtin(spark, folder: Path, sample: int, users: int) -> float:
    """recommendForUserSubset on ``sample`` users, extrapolated to all ``users``."""
    from pyspark.ml.recommendation import ALSModel

    model = ALSModel.load(str(folder / versions.ALS_DIR))
    subset = model.userFactors.select("id").limit(sample).withColumnRenamed("id", "uidx")
    began = time.monotonic()
    count = model.recommendForUserSubset(subset, 20).count()
    seconds = time.monotonic() - began
    log.info("recommendForUserSubset: %s users in %.1f s", f"{count:,}", seconds)
    return seconds * users / max(count, 1)


def time_topk_numpy(sample: int, movies: int, rank: int) -> dict[str, float]:
    """The top-k step alone, one core, same scores: blocked lower-bound filter vs argpartition."""
    user_factors, item_factors = random_factors(sample, rank, 4), random_factors(movies, rank, 5)
    began = time.monotonic()
    for start in range(0, sample, topk.DEFAULT_BLOCK_USERS):
        user_factors[start : start + topk.DEFAULT_BLOCK_USERS] @ item_factors.T
    gemm = time.monotonic() - began
    began = time.monotonic()
    ours = topk.top_k(user_factors, item_factors, 20)
    blocked = time.monotonic() - began - gemm
    began = time.monotonic()
    plain = np.empty((sample, 20), dtype=np.int32)
    for start in range(0, sample, topk.DEFAULT_BLOCK_USERS):
        scores = user_factors[start : start + topk.DEFAULT_BLOCK_USERS] @ item_factors.T
        plain[start : start + len(scores)] = topk.top_k_argpartition(scores, 20)[0]
    argpartition = time.monotonic() - began - gemm
    same = float(np.mean(np.all(np.sort(ours.items, axis=1) == np.sort(plain, axis=1), axis=1)))
    return {"gemm": gemm, "blocked_topk": blocked, "argpartition_topk": argpartition, "same_lists": same}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=1_000_000)
    parser.add_argument("--movies", type=int, default=27_000)
    parser.add_argument("--rank", type=int, default=64)
    parser.add_argument("--interactions", type=int, default=3_000_000)
    parser.add_argument("--spark-sample", type=int, default=100_000, help="users for recommendForUserSubset")
    parser.add_argument(
        "--numpy-sample", type=int, default=50_000, help="users for the numpy top-k comparison"
    )
    args = parser.parse_args()
    setup_logging()
    with tempfile.TemporaryDirectory(prefix="bench-precompute-") as home:
        settings = settings_module.load({"MOVIEREC_HOME": home, "MOVIEREC_SPARK_DRIVER_MEMORY": "4g"})
        spark = build_session(settings, "bench-precompute")
        folder = build_model(spark, settings, args)
        precompute._ship_by_value()
        ours = time_ours(spark, folder, args.users)
        builtin = time_spark_builtin(spark, folder, args.spark_sample, args.users)
        spark.stop()
        numpy_figures = time_topk_numpy(args.numpy_sample, args.movies, args.rank)
    scale = f"{args.users:,} users x {args.movies:,} movies, rank {args.rank}"
    print(f"\nprecompute of every user's top-20, {scale}, {settings.spark_master}")
    print(f"{'method':<46}{'seconds':>10}{'µs/user':>10}{'ratio':>8}")
    for name, seconds in (
        ("ours: mapInArrow + blocked top-k (seen excluded)", ours),
        (f"recommendForAllUsers (from {args.spark_sample:,} users)", builtin),
    ):
        print(f"{name:<46}{seconds:>10.1f}{1e6 * seconds / args.users:>10.1f}{seconds / ours:>7.2f}x")
    n = args.numpy_sample
    gemm = numpy_figures["gemm"]
    print(f"\ntop-k step alone, numpy, one process, {n:,} users (after the same GEMM, {gemm:.1f} s)")
    for name in ("blocked_topk", "argpartition_topk"):
        seconds = numpy_figures[name]
        ratio = seconds / numpy_figures["blocked_topk"]
        print(f"{name:<46}{seconds:>10.1f}{1e6 * seconds / n:>10.1f}{ratio:>7.2f}x")
    print(f"lists equal as sets: {numpy_figures['same_lists']:.4f} of users (ties may differ)")


if __name__ == "__main__":
    main()
