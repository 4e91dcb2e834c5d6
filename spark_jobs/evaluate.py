"""Job ``evaluate``: every candidate's lists for the test users, their metrics, the choice, the report.

    spark-submit spark_jobs/evaluate.py --version VERSION

Each candidate train fitted before T (``movierec.models.candidates``: whatever kinds they are)
recommends 20 movies to every user with a relevant movie in the test window, movies met before T
excluded (as serving does). Test users without history before T whom the group popularity
candidate has a group for get its list before T, whichever candidate is scored, as they would
when served (``candidates.cold_start``); other users the model has no factors for get the
fallback before T (recent popularity, from prepare). A ``random`` list (unseen
movies drawn uniformly) is a reference floor, never chosen. ``model.json`` names the chosen
candidate (precompute serves its refit on all data) and the challenger a retrain's canary tests
online (``compare.challenger``), ``metrics.json`` holds the metrics, the comparison goes to
``reports/<version>/``.
"""

from __future__ import annotations

import argparse
import logging
import time
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from movierec import settings as settings_module
from movierec.fairness import measures, rerank
from movierec.models import candidates, topk, versions
from movierec.settings import Settings
from spark_jobs import compare, files, ranking_metrics
from spark_jobs.progress import setup_logging

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
        test = pq.read_table(prepared / "test.parquet", columns=["uidx", "iidx", "listed"]).to_pandas()
        train = pq.read_table(prepared / "train.parquet", columns=["uidx", "iidx"]).to_pandas()
        self.users = np.sort(test["uidx"].unique()).astype(np.int64)
        by_user = test.groupby("uidx")["iidx"].apply(set)
        self.relevant: list[set[int]] = [by_user[u] for u in self.users]
        # the relevant movies no list shown to the user held before they took them up
        unlisted = test[~test["listed"]].groupby("uidx")["iidx"].apply(set)
        self.unlisted: list[set[int]] = [unlisted.get(u, set()) for u in self.users]
        self.history = np.isin(self.users, train["uidx"].unique())  # met a movie before T
        mine = train[train["uidx"].isin(self.users)]
        self.seen_rows = np.searchsorted(self.users, mine["uidx"].to_numpy())
        self.seen_items = mine["iidx"].to_numpy(np.int64)
        viewers = train.groupby("iidx")["uidx"].nunique()
        self.popularity = np.zeros(self.n_movies)  # share of training users who met each movie
        self.popularity[viewers.index.to_numpy()] = viewers.to_numpy() / max(train["uidx"].nunique(), 1)
        # exposure-corrected recall: a watch of a movie everyone is shown says less than one of a
        # movie few meet (Yang et al. 2018); propensities from the training interactions
        counts = np.zeros(self.n_movies)
        counts[viewers.index.to_numpy()] = viewers.to_numpy()
        self.propensity_gamma = ranking_metrics.power_law_exponent(counts) if len(viewers) else 1.0
        self.inverse_propensity = 1.0 / ranking_metrics.popularity_propensity(counts, self.propensity_gamma)
        groups = pq.read_table(prepared / "user_groups.parquet").to_pandas().set_index("uidx")
        self.groups = groups.reindex(self.users).fillna("unknown")
        self.fallback: list[int] = files.read_json(prepared / versions.FALLBACK_BEFORE_T)["iidx"]

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


def candidate_lists(
    data: EvaluationData, factors: candidates.Factors, k: int
) -> tuple[list[list[int]], float]:
    """Top-k unseen movies of each test user with factors, the fallback for the others; µs per scored user."""
    user_ids, user_matrix = factors.users(data.users)
    item_ids, item_matrix = factors.items()
    item_map = np.full(data.n_movies, -1)  # movie index -> row of item_matrix (-1: no factors)
    item_map[item_ids] = np.arange(len(item_ids))
    rows = np.searchsorted(data.users, user_ids)
    began = time.perf_counter()
    result = topk.top_k(user_matrix, item_matrix, k, data.seen_csr(rows, item_map))
    micros = 1e6 * (time.perf_counter() - began) / max(len(rows), 1)
    lists: list[list[int]] = [list(data.fallback[:k]) for _ in data.users]
    for i, row in enumerate(rows):
        lists[row] = [int(item_ids[j]) for j in result.row(i)]
    return lists, micros


def newcomer_rows(data: EvaluationData, group_factors: candidates.Factors) -> np.ndarray:
    """Rows of the test users without history before T that the group candidate has a group for:
    as served, they get its list whichever candidate is scored."""
    members, _rows = group_factors.users(data.users[~data.history])
    return np.searchsorted(data.users, members)


def served_lists(
    settings: Settings, version: str, data: EvaluationData, cold_name: str | None, test_newcomers: int
) -> dict[str, Any]:
    """Who gets which list once served (prepare's counts; precompute's report has the exact ones),
    and in the test window, how many users without history got their group's list."""
    counts = files.read_json(versions.model_dir(settings, version) / versions.PARAMS_FILE)["counts"]
    users, history = counts["users"], counts["users_with_history"]
    groups = candidates.cold_start(settings, version, "all")
    return {
        "catalog_users": counts["catalog_users"],
        "users": users,
        "personalised_users": history if groups is not None else users,
        "group_users": users - history if groups is not None else 0,
        "group_candidate": cold_name,
        "group_levels": groups.summary()["levels"] if groups is not None else None,
        "test_users_without_history": int((~data.history).sum()),
        "test_users_given_a_group_list": test_newcomers,
    }


# --- scoring the lists ------------------------------------------------------------------------


def score(data: EvaluationData, lists: list[list[int]]) -> dict[str, Any]:
    """Overall and per-subgroup metrics of ``lists`` (row i: test user i)."""
    per_user = ranking_metrics.per_user(lists, data.relevant, inverse_propensity=data.inverse_propensity)
    overall = ranking_metrics.summarize(per_user)
    overall["coverage"] = ranking_metrics.catalog_coverage(lists, data.n_movies)
    overall["mean_popularity"] = ranking_metrics.mean_popularity(lists, data.popularity)
    overall["propensity_gamma"] = data.propensity_gamma
    rows = [i for i, movies in enumerate(data.unlisted) if movies]
    overall["unlisted_users"] = len(rows)
    unlisted = [ranking_metrics.recall_at_k(lists[i], data.unlisted[i]) for i in rows]
    overall["unlisted_recall_at_20"] = float(np.mean(unlisted)) if rows else None
    subgroups: dict[str, dict[str, Any]] = {}
    for dimension in SUBGROUPS:
        column = data.groups[dimension].to_numpy()
        subgroups[dimension] = {
            str(value): ranking_metrics.summarize(per_user, column == value) for value in sorted(set(column))
        }
    return {"overall": overall, "subgroups": subgroups}


# --- fairness (the model requirement and the mitigation's cost) -------------------------------


def padded(lists: list[list[int]], width: int) -> np.ndarray:
    """Lists as a (users, width) array of item indices, -1 padding."""
    out = np.full((len(lists), width), -1, dtype=np.int64)
    for row, items in enumerate(lists):
        out[row, : min(len(items), width)] = items[:width]
    return out


def offline_fairness(data: EvaluationData, lists: list[list[int]], tail: np.ndarray) -> dict[str, Any]:
    """Recall@20 and NDCG@20 of ``lists``; Recall@20 per group against the rest (the model's
    quality requirement); the long tail's share of list slots against its share of what the test
    users chose after T (the model's exposure). Unit: the test user."""
    per_user = ranking_metrics.per_user(lists, data.relevant)
    recall = per_user[f"recall_at_{ranking_metrics.K}"]
    rows = pd.Index(data.users, name="user_id")
    quality = measures.quality_by_group(
        pd.DataFrame({"y": recall, "x": 1.0}, index=rows), data.groups[list(measures.ATTRIBUTES)]
    )
    slots = pd.DataFrame(
        {"user_id": np.repeat(data.users, [len(x) for x in lists]), "movie_id": [i for x in lists for i in x]}
    )
    choices = pd.DataFrame(
        {
            "user_id": np.repeat(data.users, [len(r) for r in data.relevant]),
            "movie_id": [i for r in data.relevant for i in sorted(r)],
        }
    )
    segments = pd.DataFrame({"long_tail": tail}, index=np.arange(len(tail)))
    return {
        **{name: float(values.mean()) for name, values in per_user.items()},
        "quality": quality,
        "exposure": measures.exposure(slots, choices, segments, judged=("long_tail",)),
    }


def fairness_section(
    data: EvaluationData,
    ranked: list[list[int]],
    fixed: dict[int, list[int]],
    k: int,
    tail_slots: int,
    depth: int,
) -> dict[str, Any]:
    """The model report's fairness section: the served candidate's lists as evaluated (``ranked``
    cut to ``k``; rows of ``fixed`` get that list, as served) and, with ``tail_slots``, the same
    lists re-ranked by the tail quota as precompute would serve them (``fixed`` rows unchanged)."""
    tail = measures.long_tail_mask(data.popularity)
    lists = [row[:k] for row in ranked]
    for row, items in fixed.items():
        lists[row] = items
    section: dict[str, Any] = {
        "long_tail": {
            "definition": f"movies outside the most met ones that hold {measures.HEAD_SHARE:.0%} of "
            "training users' interactions before T",
            "movies": int(tail.sum()),
            "catalog": len(tail),
        },
        "as_evaluated": offline_fairness(data, lists, tail),
        "mitigation": None,
    }
    if tail_slots:
        quota = rerank.tail_quota(padded(ranked, depth), tail, k, tail_slots)
        mitigated = [[int(i) for i in row if i >= 0] for row in quota]
        for row, items in fixed.items():
            mitigated[row] = items
        section["mitigation"] = {"tail_slots": tail_slots, "depth": depth} | offline_fairness(
            data, mitigated, tail
        )
    return section


def evaluate(settings: Settings, version: str, k: int = ranking_metrics.K) -> dict[str, Any]:
    """Score every trained candidate on the test window, choose one, write the choice and the report.

    Needs no Spark: the fitted models are read as factors (``candidates.Factors``) with pyarrow."""
    data = EvaluationData(settings, version)
    if not len(data.users):
        raise RuntimeError("no test user has a relevant movie after T: nothing to evaluate on")
    log.info("evaluating %s on %d test users, %d movies", version, len(data.users), data.n_movies)
    trained = candidates.trained(settings, version)
    cold_name = candidates.cold_start_name(settings, version)
    cold_rows, group_lists = np.array([], np.int64), []
    results: dict[str, dict[str, Any]] = {}
    for name in sorted(trained, key=lambda n: n != cold_name):  # the group candidate first
        entry = trained[name]
        factors = candidates.load(settings, version, name, "before_t")
        lists, micros = candidate_lists(data, factors, k)
        if name == cold_name:
            cold_rows, group_lists = newcomer_rows(data, factors), lists
        for row in cold_rows:  # as served: users without history get their group's list
            lists[row] = group_lists[row]
        served = candidates.load(settings, version, name, "all")
        results[name] = score(data, lists) | {
            "model": entry["kind"],
            "params": entry["params"],
            "training": entry["cost"],
            "inference": {"topk_us_per_user": micros},
            "size": {
                "model_bytes": files.folder_bytes(versions.fitted_dir(settings, version, name, "all")),
                "factor_bytes": 4 * served.rank * served.stored_rows,
            },
        }
        log.info("%s: Recall@20 %.4f", name, results[name]["overall"]["recall_at_20"])
    if not results:
        raise RuntimeError(f"version {version} has no trained candidate: run train first")
    results = {name: results[name] for name in trained}
    results[REFERENCE] = score(data, random_lists(data, k, settings.seed)) | {"model": REFERENCE}
    chosen, argument = compare.choose({n: r for n, r in results.items() if n != REFERENCE})
    challenger = compare.challenger({n: r for n, r in results.items() if n != REFERENCE}, chosen)
    who_gets = served_lists(settings, version, data, cold_name, len(cold_rows))
    depth = max(k, settings.fairness_rerank_depth) if settings.fairness_tail_slots else k
    ranked, _micros = candidate_lists(data, candidates.load(settings, version, chosen, "before_t"), depth)
    fairness = fairness_section(
        data, ranked, {int(r): group_lists[r] for r in cold_rows}, k, settings.fairness_tail_slots, depth
    )
    _install(settings, version, chosen, results[chosen], results, argument, who_gets, fairness, challenger)
    return {
        "version": version,
        "chosen": chosen,
        "challenger": challenger[0],
        "recall_at_20": results[chosen]["overall"]["recall_at_20"],
    }


def _install(
    settings: Settings,
    version: str,
    chosen: str,
    result: dict[str, Any],
    results: dict[str, Any],
    argument: str,
    lists: dict[str, Any],
    fairness: dict[str, Any],
    challenger: tuple[str, str],
) -> None:
    """The choice, written: model.json (which candidate serves, which one a canary tests),
    metrics.json, the report."""
    folder = versions.model_dir(settings, version)
    params = files.read_json(folder / versions.PARAMS_FILE)
    files.write_json(
        folder / versions.METRICS_FILE,
        {
            "model": chosen,
            **result["overall"],
            "subgroups": result["subgroups"],
            "split_time": params["split_time"],
            "candidates": {name: r["overall"] for name, r in results.items()},
            "lists": lists,
            "fairness": fairness,
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
            "challenger": challenger[0],
            "split_time": params["split_time"],
        },
    )
    report = compare.build_report(version, params, results, chosen, argument, lists, challenger)
    report |= {"fairness": fairness}
    compare.write_report(settings, version, report)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--version", required=True, type=versions.check_version)
    args = parser.parse_args(argv)
    setup_logging()
    from movierec.ops.spark_submit import print_result

    print_result(evaluate(settings_module.load(), args.version))


if __name__ == "__main__":
    main()
