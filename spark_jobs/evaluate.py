"""Job ``evaluate``: every candidate's lists for the test users, their metrics, the choice, the report.

    spark-submit spark_jobs/evaluate.py --version VERSION

Each candidate fitted before T recommends 20 movies to every user with a relevant movie in the
test window, movies met before T excluded (as serving does). Users the model has no factors for
(new since T) get the model's fallback, recent popularity before T, as they would when served.
A ``random`` list (unseen movies drawn uniformly) is a reference floor, never chosen. The chosen
candidate's refit on all data becomes ``als/``; its metrics ``metrics.json``; ``model.json`` says
which it is; the comparison goes to ``reports/<version>/``.
"""

from __future__ import annotations

import argparse
import logging
import shutil
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow.parquet as pq

from movierec import settings as settings_module
from movierec.models import topk, versions
from movierec.settings import Settings
from spark_jobs import compare, files, metrics
from spark_jobs.progress import setup_logging

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

log = logging.getLogger("movierec.evaluate")

SUBGROUPS = ("tenure", "activity", "age_band", "gender", "occupation")
REFERENCE = "random"
RANDOM_BLOCK_USERS = 4096


class EvaluationData:
    """The test users (sorted uidx), their relevant sets, what they met before T, and their groups."""

    def __init__(self, settings: Settings, version: str) -> None:
        folder = versions.model_dir(settings, version)
        prepared = versions.prepared_dir(settings, version)
        self.n_users = pq.read_metadata(folder / versions.USERS_FILE).num_rows
        self.n_movies = pq.read_metadata(folder / versions.MOVIES_FILE).num_rows
        test = pq.read_table(prepared / "test.parquet", columns=["uidx", "iidx"]).to_pandas()
        train = pq.read_table(prepared / "train.parquet", columns=["uidx", "iidx"]).to_pandas()
        self.users = np.sort(test["uidx"].unique()).astype(np.int64)
        by_user = test.groupby("uidx")["iidx"].apply(set)
        self.relevant: list[set[int]] = [by_user[u] for u in self.users]
        mine = train[train["uidx"].isin(self.users)]
        self.seen_rows = np.searchsorted(self.users, mine["uidx"].to_numpy())
        self.seen_items = mine["iidx"].to_numpy(np.int64)
        viewers = train.groupby("iidx")["uidx"].nunique()
        self.popularity = np.zeros(self.n_movies)  # share of training users who met each movie
        self.popularity[viewers.index.to_numpy()] = viewers.to_numpy() / max(train["uidx"].nunique(), 1)
        groups = pq.read_table(prepared / "user_groups.parquet").to_pandas().set_index("uidx")
        self.groups = groups.reindex(self.users).fillna("unknown")

    def seen_csr(self, rows: np.ndarray, item_map: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Seen pairs of the test users at positions ``rows`` items mapped by ``item_map``."""
        position = np.full(len(self.users), -1)
        position[rows] = np.arange(len(rows))
        keep = position[self.seen_rows] >= 0
        items = self.seen_items[keep]
        new_rows = position[self.seen_rows[keep]]
        if item_map is not None:
            items = item_map[items]
            new_rows, items = new_rows[items >= 0], items[items >= 0]
        return topk.csr_from_pairs(new_rows, items, len(rows))


# --- each model's lists -------------------------------------------------------------------------


def popularity_lists(data: EvaluationData, scores: np.ndarray, k: int) -> tuple[list[list[int]], float]:
    """Most popular unseen movies per user (ties by index); and µs per user of the top-k."""
    everyone = np.arange(len(data.users))
    began = time.perf_counter()
    result = topk.top_k(
        np.ones((len(everyone), 1), np.float32),
        scores[:, None].astype(np.float32),
        k,
        data.seen_csr(everyone),
    )
    micros = 1e6 * (time.perf_counter() - began) / max(len(everyone), 1)
    return [result.row(i) for i in range(len(everyone))], micros


def random_lists(data: EvaluationData, k: int, seed: int) -> list[list[int]]:
    """Unseen movies drawn uniformly: the floor every model must clear."""
    rng = np.random.default_rng(seed)
    lists: list[list[int]] = []
    # in blocks of users: all of them at once is users x movies floats (80K x 18K: 6 GB, float32)
    for start in range(0, len(data.users), RANDOM_BLOCK_USERS):
        block = np.arange(start, min(start + RANDOM_BLOCK_USERS, len(data.users)))
        noise = rng.random((len(block), data.n_movies), dtype=np.float32)
        topk.mask_seen(noise, *data.seen_csr(block))
        items, _scores = topk.top_k_of_scores(noise, k)
        lists += [[int(i) for i in row if i >= 0] for row in items]
    return lists


def factors(frame: Any, size: int) -> tuple[np.ndarray, np.ndarray]:
    """(ids, matrix) of an ALS factor DataFrame (id, features)."""
    table = frame.toPandas()
    if table.empty:
        return np.zeros(0, np.int64), np.zeros((0, size), np.float32)
    return table["id"].to_numpy(np.int64), np.stack(table["features"].to_numpy()).astype(np.float32)


def als_lists(
    spark: SparkSession, data: EvaluationData, model_path: Path, fallback: list[int], k: int
) -> tuple[list[list[int]], float, dict[str, int]]:
    """ALS top-k for users with factors, the fallback for the others; µs per scored user; factor counts."""
    import pandas as pd
    from pyspark.ml.recommendation import ALSModel

    model = ALSModel.load(str(model_path))
    wanted = spark.createDataFrame(pd.DataFrame({"id": data.users.astype("int32")}))
    user_ids, user_matrix = factors(model.userFactors.join(wanted, "id"), model.rank)
    item_ids, item_matrix = factors(model.itemFactors, model.rank)
    item_map = np.full(data.n_movies, -1)  # movie index -> row of item_matrix (-1: no factors)
    item_map[item_ids] = np.arange(len(item_ids))
    rows = np.searchsorted(data.users, user_ids)
    began = time.perf_counter()
    result = topk.top_k(user_matrix, item_matrix, k, data.seen_csr(rows, item_map))
    micros = 1e6 * (time.perf_counter() - began) / max(len(rows), 1)
    lists: list[list[int]] = [list(fallback) for _ in data.users]
    for i, row in enumerate(rows):
        lists[row] = [int(item_ids[j]) for j in result.row(i)]
    counts = {"user_factors": int(model.userFactors.count()), "item_factors": len(item_ids)}
    return lists, micros, counts


# --- scoring the lists ------------------------------------------------------------------------


def score(data: EvaluationData, lists: list[list[int]]) -> dict[str, Any]:
    """Overall and per-subgroup metrics of ``lists`` (row i: test user i)."""
    per_user = metrics.per_user(lists, data.relevant)
    overall = metrics.summarize(per_user)
    overall["coverage"] = metrics.catalog_coverage(lists, data.n_movies)
    overall["mean_popularity"] = metrics.mean_popularity(lists, data.popularity)
    subgroups: dict[str, dict[str, Any]] = {}
    for dimension in SUBGROUPS:
        column = data.groups[dimension].to_numpy()
        subgroups[dimension] = {
            str(value): metrics.summarize(per_user, column == value) for value in sorted(set(column))
        }
    return {"overall": overall, "subgroups": subgroups}


def evaluate(spark: SparkSession, settings: Settings, version: str, k: int = metrics.K) -> dict[str, Any]:
    folder = versions.model_dir(settings, version)
    data = EvaluationData(settings, version)
    if not len(data.users):
        raise RuntimeError("no test user has a relevant movie after T: nothing to evaluate on")
    log.info("evaluating %s on %d test users, %d movies", version, len(data.users), data.n_movies)
    trained = {
        p.name: files.read_json(p / "train.json")
        for p in sorted((folder / versions.CANDIDATES_DIR).iterdir())
        if (p / "train.json").exists()
    }
    results: dict[str, dict[str, Any]] = {}
    pop_table = pq.read_table(versions.candidate_dir(settings, version, "popularity") / "before_t.parquet")
    pop_scores = np.zeros(data.n_movies)
    pop_scores[pop_table["iidx"].to_numpy()] = pop_table["viewers"].to_numpy()
    fallback = [int(i) for i in np.lexsort((np.arange(data.n_movies), -pop_scores))[:k]]
    for name, entry in trained.items():
        candidate = versions.candidate_dir(settings, version, name)
        if entry["model"] == "popularity":
            lists, micros = popularity_lists(data, pop_scores, k)
            size = {"model_bytes": files.folder_bytes(candidate / "all.parquet"), "factor_bytes": 0}
        else:
            lists, micros, counts = als_lists(spark, data, candidate / "before_t", fallback, k)
            rank = entry["params"]["rank"]
            served = versions.candidate_dir(settings, version, name) / "all"
            size = {
                "model_bytes": files.folder_bytes(served),
                "factor_bytes": 4 * rank * _factor_rows(served),
                **counts,
            }
        results[name] = score(data, lists) | {
            "model": entry["model"],
            "params": entry["params"],
            "training": entry["cost"],
            "inference": {"topk_us_per_user": micros},
            "size": size,
        }
        log.info("%s: Recall@20 %.4f", name, results[name]["overall"]["recall_at_20"])
    results[REFERENCE] = score(data, random_lists(data, k, settings.seed)) | {"model": REFERENCE}
    chosen, argument = compare.choose({n: r for n, r in results.items() if n != REFERENCE})
    _install(settings, version, chosen, results[chosen], results, argument)
    return {"version": version, "chosen": chosen, "recall_at_20": results[chosen]["overall"]["recall_at_20"]}


def _factor_rows(saved_model: Path) -> int:
    """Rows of the saved model's user and item factor files (read from Parquet footers)."""
    total = 0
    for part in ("userFactors", "itemFactors"):
        for path in (saved_model / part).glob("*.parquet"):
            total += pq.read_metadata(path).num_rows
    return total


def _install(
    settings: Settings,
    version: str,
    chosen: str,
    result: dict[str, Any],
    results: dict[str, Any],
    argument: str,
) -> None:
    """The chosen model becomes the one to serve: als/, metrics.json, model.json, params, report."""
    folder = versions.model_dir(settings, version)
    params = files.read_json(folder / versions.PARAMS_FILE)
    served = folder / versions.ALS_DIR
    shutil.rmtree(served, ignore_errors=True)
    if result["model"] == "als":
        shutil.copytree(versions.candidate_dir(settings, version, chosen) / "all", served)
    params |= {"chosen": chosen, "model": result["model"], "model_params": result["params"]}
    if result["model"] == "als":
        params["als"] = result["params"]
    files.write_json(folder / versions.PARAMS_FILE, params)
    files.write_json(
        folder / versions.METRICS_FILE,
        {
            "model": chosen,
            **result["overall"],
            "subgroups": result["subgroups"],
            "split_time": params["split_time"],
            "candidates": {name: r["overall"] for name, r in results.items()},
        },
    )
    from movierec.models.versions import pipeline_commit

    files.write_json(
        folder / versions.MODEL_FILE,
        {
            "version": version,
            "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "git_commit": pipeline_commit(),
            "model": result["model"],
            "candidate": chosen,
            "split_time": params["split_time"],
        },
    )
    compare.write_report(settings, version, compare.build_report(version, params, results, chosen, argument))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--version", required=True, type=versions.check_version)
    args = parser.parse_args(argv)
    setup_logging()
    from movierec.ops.spark_submit import print_result
    from spark_jobs.session import build_session

    settings = settings_module.load()
    spark = build_session(settings, "evaluate")
    try:
        print_result(evaluate(spark, settings, args.version))
    finally:
        spark.stop()


if __name__ == "__main__":
    main()
