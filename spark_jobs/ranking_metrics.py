"""Offline ranking metrics at k, as pure functions of a recommended list and a relevant set.

Definitions (the report repeats them in the metric / data / operationalization form):
- Recall@k = |top-k ∩ relevant| / |relevant|
- NDCG@k   = DCG / IDCG, DCG = sum over hits at 0-based position i of 1 / log2(i + 2),
             IDCG = the same for min(|relevant|, k) hits at the top
- AP@k     = (1 / min(|relevant|, k)) * sum over hits at position i of precision@(i + 1);
             MAP@k is its mean over users
- SNIPS Recall@k (Yang et al. 2018, "Unbiased offline recommender evaluation for
             missing-not-at-random implicit feedback", the self-normalised estimator, eqn 9,
             with c = [rank <= k]) = sum over hits of 1/P_i / sum over relevant items of 1/P_i,
             P_i the propensity that a relevant interaction with item i is observed; their eqn 15
             estimates it from popularity: P_i proportional to n_i ** ((gamma + 1) / 2), n_i the
             item's observed interactions, gamma the exponent of its power law
A user with no relevant item is not evaluated (every metric would be undefined or 0 by fiat).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

K = 20


def recall_at_k(recommended: Sequence[int], relevant: set[int], k: int = K) -> float:
    if not relevant:
        raise ValueError("recall is undefined for a user with no relevant item")
    return len(set(recommended[:k]) & relevant) / len(relevant)


def ndcg_at_k(recommended: Sequence[int], relevant: set[int], k: int = K) -> float:
    if not relevant:
        raise ValueError("NDCG is undefined for a user with no relevant item")
    dcg = sum(1.0 / math.log2(i + 2) for i, item in enumerate(recommended[:k]) if item in relevant)
    ideal = sum(1.0 / math.log2(i + 2) for i in range(min(len(relevant), k)))
    return dcg / ideal


def average_precision_at_k(recommended: Sequence[int], relevant: set[int], k: int = K) -> float:
    if not relevant:
        raise ValueError("AP is undefined for a user with no relevant item")
    hits, total = 0, 0.0
    for i, item in enumerate(recommended[:k]):
        if item in relevant:
            hits += 1
            total += hits / (i + 1)
    return total / min(len(relevant), k)


def snips_recall_at_k(
    recommended: Sequence[int], relevant: set[int], inverse_propensity: np.ndarray, k: int = K
) -> float:
    """Recall@k with each relevant item weighted by 1/P_i, normalised by the user's own weights."""
    if not relevant:
        raise ValueError("SNIPS recall is undefined for a user with no relevant item")
    hits = set(recommended[:k]) & relevant
    return float(sum(inverse_propensity[i] for i in hits) / sum(inverse_propensity[i] for i in relevant))


def power_law_exponent(counts: np.ndarray) -> float:
    """The exponent gamma of a discrete power law p(n) ~ n ** -gamma fitted to ``counts`` (>= 1) by
    maximum likelihood (Clauset, Shalizi & Newman 2009, eqn 3.7, with n_min = 1)."""
    values = np.asarray(counts, dtype=np.float64)
    values = values[values >= 1]
    if not len(values):
        raise ValueError("a power law needs at least one count of 1 or more")
    return float(1.0 + len(values) / np.log(values / 0.5).sum())


def popularity_propensity(counts: np.ndarray, gamma: float) -> np.ndarray:
    """P_i of every item from its observed interactions ``counts`` (Yang et al. 2018, eqn 15),
    scaled so that the most interacted item has 1; an item never observed counts as 1 (the
    least any observed item has), so its weight is the largest but finite."""
    n = np.maximum(np.asarray(counts, dtype=np.float64), 1.0)
    return (n / n.max()) ** ((gamma + 1.0) / 2.0)


def per_user(
    lists: Sequence[Sequence[int]],
    relevant: Sequence[set[int]],
    k: int = K,
    inverse_propensity: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """Each metric for each user (row i: ``lists[i]`` against ``relevant[i]``); with
    ``inverse_propensity`` (1/P_i per item index) also the SNIPS recall."""
    pairs = list(zip(lists, relevant, strict=True))
    metrics = {
        f"recall_at_{k}": np.array([recall_at_k(r, s, k) for r, s in pairs]),
        f"ndcg_at_{k}": np.array([ndcg_at_k(r, s, k) for r, s in pairs]),
        f"map_at_{k}": np.array([average_precision_at_k(r, s, k) for r, s in pairs]),
    }
    if inverse_propensity is not None:
        metrics[f"snips_recall_at_{k}"] = np.array(
            [snips_recall_at_k(r, s, inverse_propensity, k) for r, s in pairs]
        )
    return metrics


def catalog_coverage(lists: Iterable[Sequence[int]], catalog_size: int) -> float:
    """Share of the catalog's movies that appear in at least one list."""
    if catalog_size < 1:
        raise ValueError("coverage needs a catalog of at least one movie")
    return len({item for items in lists for item in items}) / catalog_size


def mean_popularity(lists: Iterable[Sequence[int]], popularity: np.ndarray) -> float:
    """Mean popularity (share of training users who interacted with it) over every recommended slot."""
    values = [float(popularity[item]) for items in lists for item in items]
    return float(np.mean(values)) if values else 0.0


def summarize(values: dict[str, np.ndarray], mask: np.ndarray | None = None) -> dict[str, Any]:
    """Means of the per-user metrics (over the users of ``mask``) and how many users that is."""
    chosen = {name: v if mask is None else v[mask] for name, v in values.items()}
    users = len(next(iter(chosen.values()))) if chosen else 0
    out: dict[str, Any] = {"users": int(users)}
    for name, v in chosen.items():
        out[name] = float(v.mean()) if users else None
    return out
