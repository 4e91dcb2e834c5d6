"""Evaluation against the ground truth (evaluation only: this module reads ``simulator.truth``).

Two questions the product's own offline metrics cannot answer, asked of one model version:

- **closeness**: how close do the lists come to each user's *true* top-20 (the unseen movies the
  user likes best)? For every candidate of the version (popularity and the ALS settings, each
  refitted on all data) and for the file that was served: the overlap with the true top-20 and
  the mean true affinity of the listed movies, for a deterministic sample of the model's users
  with history.
- **headroom**: on the version's own test window, what Recall@20 would a recommender reach that
  knew each user's taste? If even the truth barely beats popularity on what viewers went on to
  watch, no learned model can be expected to: the ceiling, not the model, is then the limit.

``movierec world truth-report --version V`` writes ``truth.md`` and ``truth.json`` beside the
version's report. The product never imports this (only the ``world`` command does).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow.parquet as pq

from movierec import serving_file
from movierec.models import candidates, topk, versions
from movierec.settings import Settings
from simulator.catalog import load_world
from simulator.truth import Truth, load_truth, scores_for_users
from simulator.viewers import CHOICE_TEMPERATURE

log = logging.getLogger(__name__)

K = 20
SAMPLE_USERS = 5_000
TRUTH_MD = "truth.md"
TRUTH_JSON = "truth.json"


# --- pure pieces ----------------------------------------------------------------------------


def overlap_at_k(lists: np.ndarray, truths: np.ndarray, k: int = K) -> np.ndarray:
    """Per row: the share of the true top-k that the list contains (-1 entries are padding)."""
    shares = np.zeros(len(lists))
    for i, (listed, true) in enumerate(zip(lists, truths, strict=True)):
        shares[i] = len(set(listed[listed >= 0].tolist()) & set(true[true >= 0].tolist())) / k
    return shares


def mean_affinity(lists: np.ndarray, affinities: np.ndarray) -> np.ndarray:
    """Per row: the mean true affinity of the listed movies (``affinities``: users x movies)."""
    valid = lists >= 0
    picked = np.take_along_axis(affinities, np.where(valid, lists, 0), axis=1)
    return np.where(valid, picked, 0).sum(1) / np.maximum(valid.sum(1), 1)


def recall_at_k(lists: np.ndarray, relevant: list[set[int]], k: int = K) -> float:
    """Mean over rows of |list ∩ relevant| / min(|relevant|, k) (the product's Recall@20)."""
    hits = [
        len(set(row[row >= 0].tolist()) & rel) / min(len(rel), k)
        for row, rel in zip(lists, relevant, strict=True)
    ]
    return float(np.mean(hits)) if hits else 0.0


def top_k_masked(scores: np.ndarray, seen: tuple[np.ndarray, np.ndarray], k: int = K) -> np.ndarray:
    """Top-k columns of a dense score block, ``seen`` (CSR rows) excluded, best first (-1 pads)."""
    masked = np.array(scores, dtype=np.float32)
    topk.mask_seen(masked, *seen)
    return topk.top_k_of_scores(masked, k)[0].astype(np.int64)


# --- the version's data, in world indices --------------------------------------------------


@dataclass(frozen=True)
class VersionData:
    """A model version seen from the world: its users and movies as world rows, what each met."""

    user_ids: np.ndarray  # per uidx
    movie_world: np.ndarray  # per iidx: the world's movie index
    seen_uidx: np.ndarray
    seen_iidx: np.ndarray

    @classmethod
    def load(cls, settings: Settings, version: str, world_index: dict[str, int]) -> VersionData:
        folder = versions.model_dir(settings, version)
        users = pq.read_table(folder / versions.USERS_FILE).to_pandas().sort_values("uidx")
        movies = pq.read_table(folder / versions.MOVIES_FILE).to_pandas().sort_values("iidx")
        seen = pq.read_table(folder / versions.SEEN_FILE)
        movie_world = np.array([world_index.get(m, -1) for m in movies["movie_id"]], np.int64)
        return cls(
            users["user_id"].to_numpy(np.int64),
            movie_world,
            seen.column("uidx").to_numpy().astype(np.int64),
            seen.column("iidx").to_numpy().astype(np.int64),
        )

    def seen_world(self, sample: np.ndarray, n_movies: int) -> tuple[np.ndarray, np.ndarray]:
        """CSR over the sampled rows of what each met, in world movie indices."""
        position = np.full(len(self.user_ids), -1)
        position[sample] = np.arange(len(sample))
        keep = position[self.seen_uidx] >= 0
        movies = self.movie_world[self.seen_iidx[keep]]
        rows = position[self.seen_uidx[keep]]
        return topk.csr_from_pairs(rows[movies >= 0], movies[movies >= 0], len(sample))


Scorer = Callable[[np.ndarray], np.ndarray]


def candidate_scores(
    settings: Settings, version: str, name: str, data: VersionData, n_movies: int, window: str = "all"
) -> Scorer:
    """A function: sampled uidx (ascending) -> (users x world movies) scores of candidate ``name`` fitted on
    ``window`` (by default refitted on all data, as served). Users without factors score 0 on
    every movie; movies outside the model (or the world) are never listed."""
    factors = candidates.load(settings, version, name, window)
    item_ids, items = factors.items()
    columns = data.movie_world[item_ids]
    known = columns >= 0
    items_world = np.zeros((n_movies, items.shape[1]), np.float32)
    items_world[columns[known]] = items[known]
    absent = np.ones(n_movies, bool)
    absent[columns[known]] = False

    def score(rows: np.ndarray) -> np.ndarray:
        user_ids, users = factors.users(rows)
        matrix = np.zeros((len(rows), items.shape[1]), np.float32)
        matrix[np.searchsorted(rows, user_ids)] = users
        block = matrix @ items_world.T
        block[:, absent] = -np.inf
        return block

    return score


def served_lists(
    settings: Settings, version: str, user_ids: np.ndarray, world_index: dict[str, int]
) -> np.ndarray:
    """The lists the version's serving file answers for ``user_ids``, in world indices."""
    path = serving_file.file_path(settings.serving_dir, version)
    out = np.full((len(user_ids), K), -1, np.int64)
    with serving_file.open_readonly(path) as db:
        for i, user in enumerate(user_ids):
            row = db.execute("SELECT items FROM recs WHERE user_id = ?", (int(user),)).fetchone()
            if row:
                ids = [world_index.get(item, -1) for item in row[0].split(",")][:K]
                out[i, : len(ids)] = ids
    return out


# --- the report -----------------------------------------------------------------------------


def truth_report(settings: Settings, version: str, sample_size: int = SAMPLE_USERS) -> dict[str, Any]:
    world = load_world(settings)
    truth = load_truth(settings, world)
    world_index = {str(slug): i for i, slug in enumerate(world.movie_ids)}
    data = VersionData.load(settings, version, world_index)
    n_movies = world.n_movies
    rng = np.random.default_rng(settings.seed)
    # users with history: the catalog's users without any are served their group's list, not a model's
    with_history = np.unique(data.seen_uidx)
    sample = np.sort(rng.choice(with_history, min(sample_size, len(with_history)), replace=False))
    seen = data.seen_world(sample, n_movies)
    affinities = scores_for_users(truth, data.user_ids[sample])
    true_top = top_k_masked(affinities, seen)
    best = mean_affinity(true_top, affinities)
    lists: dict[str, np.ndarray] = {}
    for name in candidates.trained(settings, version):
        lists[name] = top_k_masked(candidate_scores(settings, version, name, data, n_movies)(sample), seen)
    served = f"served file (recs-{version})"
    lists[served] = served_lists(settings, version, data.user_ids[sample], world_index)
    closeness = {
        name: {
            "overlap_at_20": float(overlap_at_k(listed, true_top).mean()),
            "mean_true_affinity": float(mean_affinity(listed, affinities).mean()),
        }
        for name, listed in lists.items()
    }
    report = {
        "version": version,
        "users_sampled": len(sample),
        "true_top20_mean_affinity": float(best.mean()),
        "random_movie_mean_affinity": float(affinities.mean()),
        "closeness": closeness,
        "headroom": headroom(settings, version, truth, world, data),
    }
    _write(settings, version, report)
    return report


def headroom(settings: Settings, version: str, truth: Truth, world: Any, data: VersionData) -> dict[str, Any]:
    """Recall@20 on the version's test window (returning users) of popularity and of truth-aware lists.

    ``truth + exposure`` ranks by what makes a viewer start a movie in the simulator: how often it
    is in front of them (log of the catalog's popularity, which browsing samples by) plus their
    true affinity over the choice temperature. It is the best this report knows how to do with
    the truth, so a ceiling of sorts, not a bound.
    """
    prepared = versions.prepared_dir(settings, version)
    test = pq.read_table(prepared / "test.parquet", columns=["uidx", "iidx"]).to_pandas()
    train = pq.read_table(prepared / "train.parquet", columns=["uidx", "iidx"]).to_pandas()
    returning = np.intersect1d(test["uidx"].unique(), train["uidx"].unique())
    rng = np.random.default_rng(settings.seed + 1)
    users = np.sort(rng.choice(returning, min(SAMPLE_USERS, len(returning)), replace=False))
    if not len(users):
        return {"returning_test_users": 0}
    by_user = test[test["uidx"].isin(users)].groupby("uidx")["iidx"].apply(set)
    relevant = [{int(data.movie_world[i]) for i in by_user[u]} for u in users]
    position = np.full(len(data.user_ids), -1)
    position[users] = np.arange(len(users))
    mine = train[train["uidx"].isin(users)]
    movies = data.movie_world[mine["iidx"].to_numpy()]
    rows = position[mine["uidx"].to_numpy()]
    seen = topk.csr_from_pairs(rows[movies >= 0], movies[movies >= 0], len(users))
    # the product's popularity candidate as evaluate scored it: fitted before T
    popularity = candidate_scores(settings, version, "popularity", data, world.n_movies, "before_t")
    affinities = scores_for_users(truth, data.user_ids[users])
    exposure = np.log(np.asarray(world.popularity, np.float64) + 1e-3).astype(np.float32)
    ranked = {
        "popularity (the candidate, fitted before T)": popularity(users),
        "true affinity alone": affinities,
        "truth + exposure": exposure + affinities / CHOICE_TEMPERATURE,
    }
    return {
        "returning_test_users": len(users),
        "recall_at_20": {name: recall_at_k(top_k_masked(s, seen), relevant) for name, s in ranked.items()},
    }


def render(report: dict[str, Any]) -> str:
    lines = [
        f"# Lists against the ground truth, version {report['version']}",
        "",
        f"{report['users_sampled']} users of the model with history, sampled; the true top-20 is each "
        f"user's 20 unseen movies of highest true affinity (mean {report['true_top20_mean_affinity']:.3f}; "
        f"a random movie {report['random_movie_mean_affinity']:.3f}). Candidates are refitted on all "
        "data, as served.",
        "",
        "| lists | overlap with true top-20 | mean true affinity of listed movies |",
        "| --- | ---: | ---: |",
    ]
    for name, row in report["closeness"].items():
        lines.append(f"| {name} | {row['overlap_at_20']:.4f} | {row['mean_true_affinity']:.3f} |")
    room = report["headroom"]
    lines += [
        "",
        f"## Headroom: Recall@20 on the test window ({room['returning_test_users']} returning users)",
        "",
    ]
    lines += ["| lists | Recall@20 |", "| --- | ---: |"]
    for name, value in room.get("recall_at_20", {}).items():
        lines.append(f"| {name} | {value:.4f} |")
    return "\n".join(lines) + "\n"


def _write(settings: Settings, version: str, report: dict[str, Any]) -> None:
    folder = versions.report_dir(settings, version)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / TRUTH_JSON).write_text(json.dumps(report, indent=1) + "\n")
    (folder / TRUTH_MD).write_text(render(report))
    log.info("truth report: %s", folder / TRUTH_MD)
