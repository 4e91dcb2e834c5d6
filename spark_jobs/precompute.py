"""Precompute: the top-20 list of every known user into a serving file.

    spark-submit spark_jobs/precompute.py --version 20261128T101502Z [--candidate als_r16]

Serves one candidate of the version (``movierec.models.candidates``): by default the one evaluate
chose, into the serving file of serving id ``<version>``; with ``--candidate NAME`` any other,
into serving id ``<version>-<NAME>`` (a challenger an experiment can serve). Reads the model
folder (``movierec/models/versions.py``): the candidate's factors fitted on all data, the id maps
and the seen pairs. User factors are scored in blocks inside ``mapInArrow`` (numpy float32 GEMM
against the broadcast item factors and the exact top-k scan of ``movierec.models.topk``), one
task per factor file as ALS wrote them (or, with too few files to keep every core busy, one per
~50,000 users) so every core works and the progress lines move; seen movies (the seen pairs,
broadcast as one CSR by user) are excluded, indices mapped back to slugs and user
ids. Users without history (the catalog's users who have not watched or rated yet) get their
demographic group's line, one per group, from the version's group popularity
(``candidates.cold_start``) whichever candidate is served; users left without a line (no factors,
or every movie seen) get the fallback line. The driver then writes the
rows, sorted by user id, into the SQLite file with the meta of the model folder (and how many
users got which kind of list), and the file's size, lookup latency and those counts into
``reports/<version>/serving-<serving id>.json``.

This is the one job with Python on executors: ``movierec.models.topk`` and this module are shipped
by value (cloudpickle), so executors need numpy, pyarrow and numba, not a copy of the project (the
scan is compiled once per worker process, or loaded from numba's cache where the source file is).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from movierec import serving_file
from movierec import settings as settings_module
from movierec.fairness import measures, rerank
from movierec.models import candidates, exploration, registry, topk, versions
from movierec.settings import Settings
from spark_jobs import compare, files
from spark_jobs.progress import measured, setup_logging
from spark_jobs.session import build_session

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

log = logging.getLogger("movierec.precompute")

K = 20
USERS_PER_TASK = 50_000  # ~20 s of work per task at full scale: progress moves, little scheduling
WRITE_BATCH = 50_000  # rows per SQLite transaction
RECS_SCHEMA = "uidx int, items string"  # what score_batches yields
NAMED_SCHEMA = "user_id long, uidx int, items string"  # and with the user ids (with_user_ids)
PERSONALISED, GROUP, FALLBACK = "personalised", "group", "fallback"  # where a user's line comes from


# ---------------------------------------------------------------- pure parts (also run on executors)


def item_table(
    item_ids: np.ndarray, item_factors: np.ndarray, movie_iidx: np.ndarray, movie_ids: list[str]
) -> tuple[np.ndarray, pa.StringArray, np.ndarray]:
    """(factors float32, slug of each factor row, iidx -> factor row or -1) from ALS items and movies."""
    slug_by_iidx = dict(zip(movie_iidx.tolist(), movie_ids, strict=True))
    unknown = [int(i) for i in item_ids if int(i) not in slug_by_iidx]
    if unknown:
        raise ValueError(
            f"ALS item ids {unknown[:5]} are not in movies.parquet: the model folder is inconsistent"
        )
    slugs = pa.array([slug_by_iidx[int(i)] for i in item_ids], pa.string())
    size = int(max(movie_iidx.max(initial=-1), item_ids.max(initial=-1))) + 1
    row_of_iidx = np.full(size, -1, dtype=np.int64)
    row_of_iidx[item_ids] = np.arange(len(item_ids))
    return np.ascontiguousarray(item_factors, dtype=np.float32), slugs, row_of_iidx


def seen_by_user(
    uidx: np.ndarray, iidx: np.ndarray, row_of_iidx: np.ndarray, n_users: int
) -> tuple[np.ndarray, np.ndarray]:
    """CSR (indptr over uidx 0..n_users-1, item rows) of the seen pairs; movies without factors are
    dropped. Built once on the driver and broadcast: each task picks its users' rows (``rows_of``)."""
    uidx = np.asarray(uidx, dtype=np.int64)
    iidx = np.asarray(iidx, dtype=np.int64)
    known = (iidx >= 0) & (iidx < len(row_of_iidx))
    rows = np.where(known, row_of_iidx[np.where(known, iidx, 0)], -1)
    keep = rows >= 0
    return topk.csr_from_pairs(uidx[keep], rows[keep], n_users)


def rows_of(seen: tuple[np.ndarray, np.ndarray], uidx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The CSR of these users' seen item rows, in their order (a user beyond the CSR has none)."""
    indptr, rows = seen
    inside = uidx < len(indptr) - 1
    first = np.where(inside, indptr[np.where(inside, uidx, 0)], 0)
    counts = np.where(inside, indptr[np.where(inside, uidx + 1, 0)] - first, 0)
    sub_indptr = np.zeros(len(uidx) + 1, dtype=np.int64)
    np.cumsum(counts, out=sub_indptr[1:])
    picked = np.repeat(first - sub_indptr[:-1], counts) + np.arange(sub_indptr[-1])
    return sub_indptr, rows[picked]


def response_lines(items: np.ndarray, slugs: pa.StringArray) -> pa.StringArray:
    """The response line of each row of item rows (-1 = padding): slugs joined by commas, best first.
    Arrow's take and join on the whole batch: a Python join per user cost ~3x more."""
    kept = items >= 0
    offsets = np.zeros(len(items) + 1, dtype=np.int32)
    np.cumsum(kept.sum(axis=1), out=offsets[1:])
    names = slugs.take(pa.array(items[kept], pa.int32()))
    return pc.binary_join(pa.ListArray.from_arrays(pa.array(offsets), names), ",")


def user_id_of_uidx(uidx: np.ndarray, user_ids: np.ndarray) -> np.ndarray:
    """uidx -> user id (-1 where no user has that uidx), from the users table's two columns."""
    user_of = np.full(int(uidx.max(initial=-1)) + 1, -1, dtype=np.int64)
    user_of[uidx] = user_ids
    return user_of


def with_user_ids(lines: pa.RecordBatch, user_of: np.ndarray) -> pa.RecordBatch:
    """(uidx, items) -> (user_id, uidx, items): each line given its user id by an array lookup in
    the task (a broadcast join in the JVM cost ~2 s of its CPU at 1M users); lines of a uidx no
    user has are dropped, as that join dropped them."""
    uidx = lines.column("uidx").to_numpy(zero_copy_only=False).astype(np.int64)
    inside = (uidx >= 0) & (uidx < len(user_of))
    user_id = np.where(inside, user_of[np.where(inside, uidx, 0)], -1)
    named = pa.RecordBatch.from_arrays(
        [pa.array(user_id), lines.column("uidx"), lines.column("items")], names=["user_id", "uidx", "items"]
    )
    known = user_id >= 0
    return named if known.all() else named.filter(pa.array(known))


@dataclass(frozen=True)
class TailQuota:
    """The exposure mitigation (``movierec.fairness.rerank``): at least ``min_tail`` movies of
    ``tail`` (per item factor row) in each list, re-ranked from the ``depth`` best-scored."""

    tail: np.ndarray
    min_tail: int
    depth: int


def score_batches(
    batches: Iterator[pa.RecordBatch],
    item_factors: np.ndarray,
    slugs: pa.StringArray,
    seen: tuple[np.ndarray, np.ndarray] | None = None,
    k: int = K,
    block_users: int = topk.DEFAULT_BLOCK_USERS,
    quota: TailQuota | None = None,
    explore: tuple[int, int] = (0, 0),
) -> Iterator[pa.RecordBatch]:
    """(id, features) batches of users -> (uidx, items) batches: the top-k lines, the ``seen`` item
    rows excluded (CSR by uidx, ``seen_by_user``; with ``quota``: re-ranked from the top
    ``quota.depth`` to hold ``quota.min_tail`` tail movies).

    ``explore`` (slots, seed): the last ``slots`` places drawn outside the model's top
    (movierec.models.exploration), from a generator seeded by ``seed`` and the batch's first user."""
    slots, seed = explore
    rank = item_factors.shape[1]
    depth = k if quota is None else max(k, quota.depth)
    # top_k multiplies by the (rank, movies) transpose: made once here, not per batch (~2.5% of a
    # worker's time went to that copy); the view below is its transpose, which top_k takes as is
    item_factors = np.ascontiguousarray(item_factors.T).T
    for batch in batches:
        if batch.num_rows == 0:
            continue
        features = batch.column("features")
        flat = pc.list_flatten(features).to_numpy(zero_copy_only=False)
        if flat.size != batch.num_rows * rank:
            raise ValueError(f"user factors are not all of rank {rank}")
        users = flat.astype(np.float32, copy=False).reshape(batch.num_rows, rank)
        uidx = batch.column("id").to_numpy(zero_copy_only=False).astype(np.int64)
        mine = rows_of(seen, uidx) if seen is not None else topk.csr_from_pairs(uidx[:0], uidx[:0], len(uidx))
        result = topk.top_k(users, item_factors, depth, mine, block_users=block_users)
        items = (
            result.items if quota is None else rerank.tail_quota(result.items, quota.tail, k, quota.min_tail)
        )
        if slots:
            first = int(batch.column("id")[0].as_py())
            rng = np.random.default_rng([seed, first])
            items = exploration.explore(items, mine, len(slugs), slots, rng)
        yield pa.RecordBatch.from_arrays(
            [batch.column("id").cast(pa.int32()), response_lines(items, slugs)],
            names=["uidx", "items"],
        )


# ---------------------------------------------------------------- Spark


def _ship_by_value() -> None:
    """Executors unpickle our functions without importing the project (see the module doc)."""
    from pyspark import cloudpickle

    cloudpickle.register_pickle_by_value(topk)
    cloudpickle.register_pickle_by_value(rerank)
    cloudpickle.register_pickle_by_value(exploration)
    if __name__ != "__main__":
        cloudpickle.register_pickle_by_value(sys.modules[__name__])


def group_lines(
    cold: candidates.GroupFactors, movie_iidx: np.ndarray, movie_ids: list[str], k: int = K
) -> pa.Table:
    """(group, items): each group's top-k line, nothing seen (``score_batches`` on one-hot rows)."""
    item_factors, slugs, _ = item_table(*cold.items(), movie_iidx, movie_ids)
    one_hot = np.eye(cold.rank, dtype=np.float32)
    batch = pa.RecordBatch.from_arrays(
        [
            pa.array(range(cold.rank), pa.int32()),
            pa.array(list(one_hot), pa.list_(pa.float32())),
        ],
        names=["id", "features"],
    )
    lines = pa.Table.from_batches(list(score_batches(iter([batch]), item_factors, slugs, k=k)))
    return lines.rename_columns(["group", "items"])


def tail_rows(folder: Path, row_of_iidx: np.ndarray, n_rows: int) -> np.ndarray:
    """Per item factor row: is the movie in the long tail of the model's interactions (the seen
    pairs: users who met it; ``measures.long_tail``, the head holds 80% of them)."""
    iidx = pq.read_table(folder / versions.SEEN_FILE, columns=["iidx"]).column("iidx").to_numpy()
    counts = np.bincount(iidx, minlength=len(row_of_iidx))[: len(row_of_iidx)]
    tail = measures.long_tail_mask(counts)
    rows = np.zeros(n_rows, dtype=bool)
    known = row_of_iidx >= 0
    rows[row_of_iidx[known]] = tail[known]
    return rows


def recommend_all(
    spark: SparkSession,
    folder: Path,
    factors: candidates.Factors,
    fallback: str,
    *,
    cold: candidates.GroupFactors | None = None,
    k: int = K,
    block_users: int = topk.DEFAULT_BLOCK_USERS,
    users_per_task: int = USERS_PER_TASK,
    tail_slots: int = 0,
    rerank_depth: int = 100,
    explore: tuple[int, int] = (0, 0),
) -> DataFrame:
    """(user_id, items, list) for every user of ``users.parquet``: the top-k line of ``factors``
    (a candidate fitted on all data; list "personalised"); with ``cold``, users without history
    get their group's line instead ("group"); users left without a line get the fallback. With
    ``tail_slots``, personalised lines hold at least that many long-tail movies (``TailQuota``);
    ``explore``: (slots, seed) of the personalised lines' exploration slots (``score_batches``)."""
    from pyspark.sql import functions as F

    users = spark.read.parquet(str(folder / versions.USERS_FILE))
    user_factors = factors.user_frame(spark, users.select("uidx"))
    movies = pq.read_table(folder / versions.MOVIES_FILE, columns=["movie_id", "iidx"])
    movie_iidx, movie_ids = movies.column("iidx").to_numpy(), movies.column("movie_id").to_pylist()
    item_factors, slugs, row_of_iidx = item_table(*factors.items(), movie_iidx, movie_ids)
    quota = None
    if tail_slots > 0:
        quota = TailQuota(tail_rows(folder, row_of_iidx, len(item_factors)), tail_slots, rerank_depth)
    # The seen pairs go to the tasks as one broadcast CSR by user (~12 bytes a pair), not as a
    # per-user list shuffled and joined to the factors: that aggregation and join were most of
    # the JVM's share of the job.
    pairs = pq.read_table(folder / versions.SEEN_FILE, columns=["uidx", "iidx"])
    user_table = pq.read_table(folder / versions.USERS_FILE, columns=["uidx", "user_id"])
    user_uidx = user_table.column("uidx")
    n_uidx = 1 + max(pc.max(user_uidx).as_py() or 0, pc.max(pairs.column("uidx")).as_py() or 0)
    user_of = user_id_of_uidx(user_uidx.to_numpy(), user_table.column("user_id").to_numpy().astype(np.int64))
    seen_csr = seen_by_user(
        pairs.column("uidx").to_numpy(), pairs.column("iidx").to_numpy(), row_of_iidx, n_uidx
    )
    del pairs
    shared = spark.sparkContext.broadcast((item_factors, slugs, seen_csr, quota, user_of))

    def score(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        factors, names, seen_rows, tail_quota, user_ids = shared.value
        for lines in score_batches(batches, factors, names, seen_rows, k, block_users, tail_quota, explore):
            yield with_user_ids(lines, user_ids)

    users_in = user_factors.select("id", "features")
    cores = spark.sparkContext.defaultParallelism
    if users_in.rdd.getNumPartitions() < 2 * cores:
        # Too few read tasks to keep every core busy (one small file, or computed factors): hashed
        # into tasks by user, deterministic without the sort a round-robin repartition does.
        # A model's factor files are read one to a task (spark_jobs/session.py) and scored where
        # they are read, without a shuffle of every user's factors.
        n_users = pq.ParquetFile(folder / versions.USERS_FILE).metadata.num_rows
        users_in = users_in.repartition(max(2 * cores, math.ceil(n_users / users_per_task)), "id")
    history = spark.read.parquet(str(folder / versions.SEEN_FILE)).select("uidx").distinct()
    if cold is not None:  # users without history get their group's line: score the others only
        # broadcast (~1M ids): a shuffled join would move every user's factors
        users_in = users_in.join(F.broadcast(history.withColumnRenamed("uidx", "id")), "id", "left_semi")
    recs = users_in.mapInArrow(score, NAMED_SCHEMA).withColumn("list", F.lit(PERSONALISED))
    listed = users_in.select(F.col("id").alias("uidx"))  # the users recs has a row for
    user_ids = users.select("uidx", F.col("user_id").cast("long").alias("user_id"))
    if cold is not None:
        by_group = group_lines(cold, movie_iidx, movie_ids, k).to_pydict()
        lines = spark.createDataFrame(list(zip(*by_group.values(), strict=True)), "group int, items string")
        newcomers = cold.members(spark).join(history, "uidx", "left_anti")
        with_group = newcomers.join(F.broadcast(lines), "group")
        # these lines get their user ids from broadcast users: ~300 bytes of slugs per user are
        # not shuffled to meet them
        named_groups = with_group.join(F.broadcast(user_ids), "uidx")
        recs = recs.unionByName(named_groups.select("user_id", "uidx", "items", F.lit(GROUP).alias("list")))
        listed = listed.unionByName(with_group.select("uidx"))
    line = F.col("items")
    missing = line.isNull() | (line == "")
    named = recs.select(
        "user_id",
        F.when(missing, F.lit(fallback)).otherwise(line).alias("items"),
        F.when(missing, F.lit(FALLBACK)).otherwise(F.col("list")).alias("list"),
    )
    # users without a line, found from the ids alone; the ids with a line (~1M at full scale,
    # a few MB) are broadcast: a sort-merge join shuffled and sorted both sides
    unlisted = user_ids.join(F.broadcast(listed), "uidx", "left_anti")
    return named.unionByName(
        unlisted.select("user_id", F.lit(fallback).alias("items"), F.lit(FALLBACK).alias("list"))
    )


# ---------------------------------------------------------------- the job


def served_model(model: dict[str, object], name: str, entry: dict, chosen: bool) -> dict[str, object]:
    """The parsed model folder as the serving file of candidate ``name`` describes it (its meta):
    params gain the candidate, its kind and parameters; a challenger's metrics and model.json
    are its own (evaluate measured every candidate; the chosen one's are the folder's)."""
    params = dict(model.get("params.json", {}))  # type: ignore[call-overload]
    params |= {"candidate": name, "model": entry["kind"], "model_params": entry["params"]}
    served = model | {"params.json": params}
    if chosen:
        return served
    metrics = dict(model.get("metrics.json", {}))  # type: ignore[call-overload]
    measured_ = metrics.get("candidates", {}).get(name)
    if measured_ is None:
        raise ValueError(f"metrics.json has no figures for candidate {name}: run evaluate first")
    served["metrics.json"] = {"model": name, **measured_, "split_time": metrics.get("split_time")}
    served["model.json"] = dict(model.get("model.json", {})) | {"model": entry["kind"], "candidate": name}  # type: ignore[call-overload]
    return served


def precompute(
    settings: Settings,
    version: str,
    *,
    candidate: str | None = None,
    spark: SparkSession | None = None,
    k: int = K,
    block_users: int = topk.DEFAULT_BLOCK_USERS,
    users_per_task: int = USERS_PER_TASK,
) -> dict[str, object]:
    """Write the serving file of ``version``'s chosen candidate (serving id ``version``) or of
    ``candidate`` (serving id ``<version>-<candidate>``); returns a report (JSON-able), also
    written to ``reports/<version>/serving-<serving id>.json``."""
    if not 1 <= k <= serving_file.MAX_ITEMS:
        raise ValueError(
            f"k must be 1..{serving_file.MAX_ITEMS} (a serving list holds at most that), got {k}"
        )
    if not 0 <= settings.fairness_tail_slots <= k or settings.fairness_rerank_depth < k:
        raise ValueError(
            f"MOVIEREC_FAIRNESS_TAIL_SLOTS must be 0..{k} and MOVIEREC_FAIRNESS_RERANK_DEPTH at least "
            f"{k}, got {settings.fairness_tail_slots} and {settings.fairness_rerank_depth}"
        )
    exploration.positions(k, settings.exploration_slots)  # 0..k, refused before any scoring
    if settings.fairness_tail_slots and settings.exploration_slots:
        # exploration replaces the last slots, where the quota may have put its tail movies:
        # one mitigation at a time until the two together are measured
        raise ValueError("MOVIEREC_FAIRNESS_TAIL_SLOTS and MOVIEREC_EXPLORATION_SLOTS cannot both be on")
    folder = versions.model_dir(settings, version)
    model = versions.read_model_folder(folder)
    serving_id = serving_file.serving_id(version, candidate)
    chosen = model.get("model.json", {}).get("candidate")  # type: ignore[union-attr]
    name = candidate or chosen
    if not isinstance(name, str):
        raise FileNotFoundError(f"model folder {folder} has no chosen candidate (model.json): run evaluate")
    entry = candidates.trained(settings, version).get(name)
    if entry is None:
        known = ", ".join(candidates.trained(settings, version)) or "none"
        raise FileNotFoundError(f"model folder {folder} has no trained candidate {name!r} (it has: {known})")
    if not (folder / versions.SEEN_FILE).exists():
        raise FileNotFoundError(f"model folder {folder} lacks {versions.SEEN_FILE}")
    factors = candidates.load(settings, version, name, "all")
    cold = candidates.cold_start(settings, version, "all")
    fallback = serving_file.fallback_line(model.get("fallback.json"))
    target = serving_file.file_path(settings.serving_dir, serving_id)
    if serving_id in registry.published_versions(settings):
        raise RuntimeError(f"{target.name} was published: serving files are immutable, train a new version")
    spark = spark or build_session(settings, "precompute")
    _ship_by_value()
    began = time.monotonic()
    settings.serving_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".precompute-", dir=settings.serving_dir) as scratch:
        with measured(spark, f"precompute {serving_id}") as scoring:
            frame = recommend_all(
                spark,
                folder,
                factors,
                fallback,
                cold=cold,
                k=k,
                block_users=block_users,
                users_per_task=users_per_task,
                tail_slots=settings.fairness_tail_slots,
                rerank_depth=settings.fairness_rerank_depth,
                explore=(settings.exploration_slots, settings.seed),
            )
            frame.write.parquet(f"{scratch}/recs")
        table = pq.read_table(f"{scratch}/recs").sort_by("user_id")
    users = table.num_rows
    rate = 1e6 * scoring.wall_seconds / max(users, 1)
    log.info(
        "precompute %s: %s users scored in %.1f s (%.0f µs/user)",
        serving_id,
        f"{users:,}",
        scoring.wall_seconds,
        rate,
    )
    tally = table.column("list").value_counts()
    counts = dict(zip(tally.field("values").to_pylist(), tally.field("counts").to_pylist(), strict=True))
    prepared_counts = model.get("params.json", {}).get("counts", {})  # type: ignore[union-attr]
    lists = {
        "users": users,
        "catalog_users": prepared_counts.get("catalog_users"),
        "users_with_history": prepared_counts.get("users_with_history"),
        **{f"{source}_users": int(counts.get(source, 0)) for source in (PERSONALISED, GROUP, FALLBACK)},
        "group_candidate": candidates.cold_start_name(settings, version),
        "group_levels": cold.summary()["levels"] if cold is not None else None,
    }
    log.info("precompute %s: lists %s", serving_id, json.dumps(lists))
    # the online metric tells a user's own list from a group's by these (one per group, small)
    group_lines = table.filter(pc.equal(table.column("list"), GROUP)).column("items").unique()
    meta = serving_file.build_meta(
        serving_id,
        served_model(model, name, entry, chosen=candidate is None),
        git_commit=versions.pipeline_commit(),
        created_at=datetime.now(UTC),
        extra={
            "candidate": name,
            "precompute": {
                "k": k,
                "block_users": block_users,
                "spark_master": spark.sparkContext.master,
                "tail_slots": settings.fairness_tail_slots,
                "rerank_depth": settings.fairness_rerank_depth if settings.fairness_tail_slots else None,
            },
            "lists": lists,
            "group_lines": sorted(group_lines.to_pylist()),
            "exploration": {
                "positions": exploration.positions(k, settings.exploration_slots),
                "lists": PERSONALISED,
                "draw": exploration.DRAW,
                "movies": len(factors.items()[0]) if settings.exploration_slots else None,
            },
        },
    )
    write_began = time.monotonic()
    rows = serving_file.write(target, _row_batches(table), meta, total=users)
    report = {
        "version": version,
        "serving_id": serving_id,
        "candidate": name,
        "path": str(target),
        "users": rows,
        **lists,
        "score_seconds": round(scoring.wall_seconds, 2),
        "score_cpu_seconds": round(scoring.cpu_seconds, 2),
        "us_per_user": round(1e6 * scoring.wall_seconds / max(rows, 1), 2),
        "write_seconds": round(time.monotonic() - write_began, 2),
        "seconds": round(time.monotonic() - began, 2),
        "file_bytes": target.stat().st_size,
        "lookup": compare.lookup_latency(target),
    }
    files.write_json(versions.serving_report_path(settings, version, serving_id), report)
    log.info("precompute %s: %s", serving_id, json.dumps(report))
    return report


def _row_batches(table: pa.Table) -> Iterator[tuple[list[int], list[str]]]:
    for batch in table.to_batches(max_chunksize=WRITE_BATCH):
        yield batch.column("user_id").to_pylist(), batch.column("items").to_pylist()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--version", required=True, help="model version id (its folder under models/)")
    parser.add_argument(
        "--candidate",
        help="serve this candidate of the version (serving id VERSION-CANDIDATE); default: the chosen one",
    )
    parser.add_argument("--k", type=int, default=K, help="list length")
    args = parser.parse_args(argv)
    setup_logging()
    try:
        report = precompute(settings_module.load(), args.version, candidate=args.candidate, k=args.k)
    except (ValueError, FileNotFoundError, RuntimeError) as exc:
        print(f"precompute: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
