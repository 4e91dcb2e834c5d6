"""ALS training at full scale: seconds per iteration of Spark's implicit ALS under a few settings vs
the ``implicit`` library's ALS, on the same interactions and the same confidence matrix.

    .venv/bin/python bench/bench_als_training.py [--users 1000000] [--movies 27000]
        [--interactions 3000000] [--rank 64] [--iterations 3]

Interactions are synthetic (numpy, seeded): user activity is log-normal and movie popularity
Zipf-like (a few users and movies hold much of the mass, as on the site), one interaction per
(user, movie) with a strength ``r`` as prepare computes it (share of the movie seen, moved by a
rating for some). Spark's implicit ALS (``movierec/models/candidates/als.als_estimator``, the estimator our
job fits, with our regParam and alpha) turns it into preference ``r > 0`` and confidence
``1 + alpha * |r|``; implicit gets the same matrix as ``sign(r) * (1 + alpha * |r|)`` with its
own ``alpha=1`` (a positive value is a positive with that confidence, a negative value a negative
with that confidence). Both solve the same problem up to the regularization, which Spark scales
by each row's count of positives and implicit does not; the cost of an iteration does not depend
on it.

Every variant is fitted twice, with 1 and with ``--iterations`` iterations (until the factors are
materialized; two untimed 1-iteration fits warm the JVM up first), and the table shows both
times, the seconds per iteration ``(t(N) - t(1)) / (N - 1)`` and the fixed cost
``t(1) - per iteration`` (reading the input, building the blocks, the first factors). The Spark
variants, in one session (``build_session``, ``local[*]``), each change one thing against our
estimator:

- ours: ``als_estimator`` as the ``als`` candidates fit it: 10 user and 10 item blocks (Spark's default),
  intermediate RDDs ``MEMORY_AND_DISK``, a checkpoint every 5 iterations into the session's
  checkpoint folder (with fewer than 5 iterations none is written; ``--iterations 10`` includes
  the two our job writes), the input read from Parquet.
- blocks = cores and blocks = 2 x cores: each iteration shuffles every factor to the blocks that
  rate with it; fewer blocks mean fewer, larger shuffle blocks and fewer tasks per stage, with
  still one task per core.
- intermediate ``MEMORY_ONLY``: the in/out blocks and per-iteration factors kept deserialized in
  memory, never spilled (what memory costs instead of disk).
- input repartitioned to 2 x cores and cached: the fit starts from rows already in memory, spread
  over every core, instead of the Parquet file's few splits (``spark_jobs/train.py`` caches its input).

implicit (``implicit.cpu.als.AlternatingLeastSquares``, ``num_threads`` = cores, BLAS limited to
one thread as implicit asks) runs its default conjugate-gradient solver (3 steps per row) and the
exact Cholesky solve (``use_cg=False``, what Spark does). The ratio column is seconds per
iteration over implicit's default. Everything runs in one process, one after the other; the
figures to read are the ratios.
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from world_scale import scale_parser  # bench/ is the script's folder

from movierec import settings as settings_module
from movierec.models.candidates.als import CHECKPOINT_INTERVAL, als_estimator
from spark_jobs.progress import Cost, measured, setup_logging
from spark_jobs.session import build_session

log = logging.getLogger("bench_als_training")


def synthetic_interactions(
    users: int, movies: int, count: int, seed: int = 1
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(uidx, iidx, strength): ``count`` distinct (user, movie) pairs, heavy-tailed on both sides."""
    rng = np.random.default_rng(seed)
    activity = rng.lognormal(0.0, 1.2, users)
    popularity = (1.0 / np.arange(1, movies + 1) ** 0.9)[rng.permutation(movies)]
    user_cdf, movie_cdf = np.cumsum(activity / activity.sum()), np.cumsum(popularity / popularity.sum())
    keys = np.empty(0, dtype=np.int64)
    while len(keys) < count:
        draw = int(1.3 * (count - len(keys))) + 1_000
        u = np.minimum(np.searchsorted(user_cdf, rng.random(draw), side="right"), users - 1)
        m = np.minimum(np.searchsorted(movie_cdf, rng.random(draw), side="right"), movies - 1)
        keys = np.concatenate([keys, u.astype(np.int64) * movies + m])
        _, first = np.unique(keys, return_index=True)
        keys = keys[np.sort(first)]  # distinct pairs, in the order drawn
    uidx, iidx = np.divmod(keys[:count], movies)
    # r = min(share seen, 1) + 0.5 * (rating - 3) / 2 for the 15% who rated (prepare's formula)
    strength = np.clip(rng.beta(2.0, 1.0, count), 0.02, 1.0)
    rated = rng.random(count) < 0.15
    strength[rated] += 0.25 * (rng.integers(1, 6, int(rated.sum())) - 3)
    strength[strength == 0] = 0.01  # r = 0 is no interaction at all for Spark, a negative for implicit
    return uidx.astype(np.int32), iidx.astype(np.int32), strength.astype(np.float32)


def fit_seconds(spark, estimator, frame, label: str) -> float:
    """Wall seconds of one fit until the user factors are materialized; then drop what it cached."""
    return fit_cost(spark, estimator, frame, label).wall_seconds


def fit_cost(spark, estimator, frame, label: str) -> Cost:
    """Wall and CPU seconds (driver JVM and Python) of one fit, as ``fit_seconds`` times it."""
    context = spark.sparkContext
    before = {int(key) for key in context._jsc.getPersistentRDDs().keySet()}
    with measured(spark, label) as cost:
        model = estimator.fit(frame)
        model.userFactors.count()  # as the als candidates: force the factors inside the timing
    for key, rdd in context._jsc.getPersistentRDDs().items():
        if int(key) not in before:  # the model's factors: fits must not pile up in memory
            rdd.unpersist(True)  # blocking: the next fit starts clean
    return cost


def spark_variants(cores: int) -> dict[str, Callable]:
    """Name -> function(estimator) applying the variant's one change (the input change is separate)."""
    return {
        f"Spark ours: 10 blocks, MEMORY_AND_DISK, ckpt/{CHECKPOINT_INTERVAL}": lambda e: e,
        f"Spark blocks={cores} (= cores)": lambda e: e.setNumUserBlocks(cores).setNumItemBlocks(cores),
        f"Spark blocks={2 * cores} (= 2 x cores)": lambda e: e.setNumUserBlocks(2 * cores).setNumItemBlocks(
            2 * cores
        ),
        "Spark intermediateStorageLevel=MEMORY_ONLY": lambda e: e.setIntermediateStorageLevel("MEMORY_ONLY"),
    }


def time_spark(spark, path: Path, args: argparse.Namespace, settings) -> dict[str, tuple[float, float]]:
    """Variant -> (t(1), t(N)) seconds."""
    cores = spark.sparkContext.defaultParallelism
    frame = spark.read.parquet(str(path))

    def estimator(iterations: int):
        return als_estimator(args.rank, settings.als_reg, settings.als_alpha, iterations, settings.seed)

    # JIT and page-cache warm-up (two untimed 1-iteration fits), so the first variant does not pay for it
    for _ in range(2):
        fit_seconds(spark, estimator(1), frame, "warm-up")
    times = {}
    for name, change in spark_variants(cores).items():
        times[name] = tuple(
            fit_seconds(spark, change(estimator(n)), frame, f"{name}, {n} iterations")
            for n in (1, args.iterations)
        )
    cached = frame.repartition(2 * cores).cache()
    cached.count()
    name = f"Spark input {2 * cores} partitions, cached"
    times[name] = tuple(
        fit_seconds(spark, estimator(n), cached, f"{name}, {n} iterations") for n in (1, args.iterations)
    )
    cached.unpersist()
    return times


def time_implicit(
    interactions: tuple[np.ndarray, np.ndarray, np.ndarray], args: argparse.Namespace, settings, cores: int
) -> dict[str, tuple[float, float]]:
    """implicit's ALS on Spark's confidence matrix: solver -> (t(1), t(N)) seconds."""
    import scipy.sparse
    from implicit.cpu.als import AlternatingLeastSquares
    from threadpoolctl import threadpool_limits

    uidx, iidx, strength = interactions
    # Spark: preference r > 0, confidence 1 + alpha * |r|; implicit: value v, preference v > 0, confidence |v|
    values = np.sign(strength) * (1.0 + settings.als_alpha * np.abs(strength))
    user_items = scipy.sparse.csr_matrix(
        (values.astype(np.float32), (uidx, iidx)), shape=(args.users, args.movies)
    )
    times = {}
    with threadpool_limits(1, "blas"):
        for name, use_cg in (
            (f"implicit CG (default), {cores} threads", True),
            (f"implicit Cholesky (exact, as Spark), {cores} threads", False),
        ):
            runs = []
            for n in (1, args.iterations):
                model = AlternatingLeastSquares(
                    factors=args.rank,
                    regularization=settings.als_reg,
                    alpha=1.0,
                    iterations=n,
                    use_cg=use_cg,
                    num_threads=cores,
                    random_state=settings.seed,
                )
                began = time.monotonic()
                model.fit(user_items, show_progress=False)
                runs.append(time.monotonic() - began)
                log.info("%s, %d iterations: done in %.1f s", name, n, runs[-1])
            times[name] = tuple(runs)
    return times


def main() -> None:
    parser = scale_parser(__doc__)
    parser.add_argument("--interactions", type=int, default=3_000_000)
    parser.add_argument("--rank", type=int, default=64)
    parser.add_argument("--iterations", type=int, default=3, help="N of the long fit (the short one has 1)")
    args = parser.parse_args()
    if args.iterations < 2:
        parser.error("--iterations must be at least 2: per iteration = (t(N) - t(1)) / (N - 1)")
    if args.interactions > 0.5 * args.users * args.movies:
        parser.error("--interactions must be at most half of users x movies (distinct pairs)")
    setup_logging()
    interactions = synthetic_interactions(args.users, args.movies, args.interactions)
    uidx, iidx, strength = interactions
    with tempfile.TemporaryDirectory(prefix="bench-als-training-") as home:
        settings = settings_module.load({"MOVIEREC_HOME": home})
        path = Path(home) / "interactions.parquet"
        pq.write_table(pa.table({"uidx": uidx, "iidx": iidx, "strength": strength}), path)
        spark = build_session(settings, "bench-als-training")
        cores = spark.sparkContext.defaultParallelism
        master = spark.sparkContext.master
        times = time_spark(spark, path, args, settings)
        spark.stop()
    times |= time_implicit(interactions, args, settings, cores)

    n = args.iterations
    active = len(np.unique(uidx))
    per_user = np.bincount(uidx, minlength=args.users)
    per_movie = np.bincount(iidx, minlength=args.movies)
    print(
        f"\nALS training, {args.users:,} users ({active:,} with interactions) x {args.movies:,} movies,"
        f" {args.interactions:,} interactions, rank {args.rank}, {master} ({cores} cores)"
    )
    print(
        f"most active user {per_user.max():,} interactions, most popular movie {per_movie.max():,};"
        f" {(strength <= 0).mean():.1%} negatives; regParam {settings.als_reg}, alpha {settings.als_alpha}"
    )
    print(f"{'variant':<52}{'1 iter s':>10}{f'{n} iter s':>10}{'s/iter':>9}{'fixed s':>9}{'ratio':>10}")
    per_iteration = {name: (long - short) / (n - 1) for name, (short, long) in times.items()}
    base = per_iteration[next(name for name in times if name.startswith("implicit CG"))]
    for name, (short, long) in times.items():
        each = per_iteration[name]
        ratio = f"{each / base:.2f}x" if base > 0 and abs(each / base) < 1000 else "-"
        print(f"{name:<52}{short:>10.1f}{long:>10.1f}{each:>9.2f}{short - each:>9.1f}{ratio:>10}")
    print("ratio = seconds per iteration / implicit CG's")
    if any(per_iteration[name] <= 0.1 * short for name, (short, _long) in times.items()):
        print("some per-iteration times are within the noise of the fixed cost: use more interactions")


if __name__ == "__main__":
    main()
