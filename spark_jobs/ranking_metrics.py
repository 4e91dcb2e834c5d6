"""Offline ranking metrics at k, as pure functions of a recommended list and a relevant set.

Definitions (the report repeats them in the metric / data / operationalization form):
- Recall@k = |top-k ∩ relevant| / |relevant|
- NDCG@k   = DCG / IDCG, DCG = sum over hits at 0-based position i of 1 / log2(i + 2),
             IDCG = the same for min(|relevant|, k) hits at the top
- AP@k     = (1 / min(|relevant|, k)) * sum over hits at position i of precision@(i + 1);
             MAP@k is its mean over users
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


def per_user(
    lists: Sequence[Sequence[int]], relevant: Sequence[set[int]], k: int = K
) -> dict[str, np.ndarray]:
    """Each metric for each user (row i: ``lists[i]`` against ``relevant[i]``)."""
    pairs = list(zip(lists, relevant, strict=True))
    return {
        f"recall_at_{k}": np.array([recall_at_k(r, s, k) for r, s in pairs]),
        f"ndcg_at_{k}": np.array([ndcg_at_k(r, s, k) for r, s in pairs]),
        f"map_at_{k}": np.array([average_precision_at_k(r, s, k) for r, s in pairs]),
    }


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
