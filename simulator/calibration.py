"""How concentrated a history is, and how much taste a reference CF finds in it: pure statistics.

The simulated site is calibrated against real movie data (issue 13) with these
figures, computed over one interaction per (user, movie):

- the share of interactions on the k most popular movies, and on the top 1% / 10% of movies;
- the Gini coefficient of item popularity over the whole catalog (movies never watched count
  as zeros);
- the share of movies with at most 5 interactions;
- Recall@20 of a strong reference CF (EASE, Steck 2019) over that of popularity, on a per-user
  temporal 80/20 split of the users with enough history.

Only pure functions of arrays here; simulator.calibration_report gathers the interactions (from
a backfill's lines or from a lake) and prints the table.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np
import scipy.linalg
import scipy.sparse as sp

K = 20
EASE_LAMBDA = 200.0
MIN_USER_ITEMS = 5  # users with fewer distinct movies are train-only (no 80/20 split to make)
TEST_SHARE = 0.2
# The Gram matrix is dense (items x items): the inverse of 27,000 items would take ~6 GB and
# ~10 min on two cores, so EASE is fitted on the items with enough training interactions.
EASE_MIN_ITEM_COUNT = 2
EASE_MAX_ITEMS = 8_000
_SCORE_ROWS = 2_000


# --- concentration ------------------------------------------------------------------------


def item_counts(items: np.ndarray, n_items: int) -> np.ndarray:
    """Interactions per item index 0..n_items-1 (items never seen count 0)."""
    return np.bincount(np.asarray(items, np.int64), minlength=n_items)[:n_items]


def gini(counts: np.ndarray) -> float:
    """The Gini coefficient of ``counts`` (0: all equal, near 1: all on one item)."""
    x = np.sort(np.asarray(counts, np.float64))
    n, total = len(x), x.sum()
    if n == 0 or total == 0:
        return 0.0
    ranks = np.arange(1, n + 1)
    return float(((2 * ranks - n - 1) * x).sum() / (n * total))


def top_k_share(counts: np.ndarray, k: int) -> float:
    """The share of all interactions that fall on the ``k`` most popular items."""
    x = np.asarray(counts, np.float64)
    total = x.sum()
    if total == 0:
        return 0.0
    k = min(k, len(x))
    return float(np.partition(x, len(x) - k)[len(x) - k :].sum() / total) if k > 0 else 0.0


def top_fraction_share(counts: np.ndarray, fraction: float) -> float:
    """The share of interactions on the most popular ``fraction`` of items (at least one item)."""
    return top_k_share(counts, max(1, round(fraction * len(counts))))


def share_at_most(counts: np.ndarray, k: int = 5) -> float:
    """The share of items with at most ``k`` interactions."""
    x = np.asarray(counts)
    return float((x <= k).mean()) if len(x) else 0.0


# --- the reference CF against popularity ----------------------------------------------------


def temporal_split(
    users: np.ndarray,
    times: np.ndarray,
    *,
    min_items: int = MIN_USER_ITEMS,
    test_share: float = TEST_SHARE,
) -> tuple[np.ndarray, np.ndarray]:
    """(train mask, test mask): each user with ``min_items`` or more interactions has the last
    ``max(1, round(test_share * n))`` of them (by time; ties by position) held out; everyone
    else's interactions are all training data.

    One row per (user, movie) is expected (``times``: the first time of each pair).
    """
    users = np.asarray(users, np.int64)
    order = np.lexsort((np.arange(len(users)), np.asarray(times), users))
    sorted_users = users[order]
    starts = np.flatnonzero(np.r_[True, sorted_users[1:] != sorted_users[:-1]])
    sizes = np.diff(np.r_[starts, len(users)])
    rank = np.arange(len(users)) - np.repeat(starts, sizes)  # position within the user, by time
    size = np.repeat(sizes, sizes)
    held = np.maximum(1, np.rint(test_share * size)).astype(np.int64)
    test_sorted = (size >= min_items) & (rank >= size - held)
    test = np.zeros(len(users), bool)
    test[order] = test_sorted
    return ~test, test


def ease_weights(train: sp.csr_matrix, lam: float = EASE_LAMBDA) -> np.ndarray:
    """EASE's item-item weights B (Steck 2019), closed form on the Gram matrix.

    P = (XᵀX + λI)⁻¹, B = -P / diag(P) column-wise, diag(B) = 0.
    """
    gram = (train.T @ train).toarray().astype(np.float64)
    gram[np.diag_indices_from(gram)] += lam
    weights = scipy.linalg.inv(gram, overwrite_a=True, check_finite=False)
    del gram
    weights /= -np.diag(weights).copy()  # in place: the matrix is items x items
    np.fill_diagonal(weights, 0.0)
    return weights


def recall_at_k(scores: np.ndarray, seen: sp.csr_matrix, held_out: sp.csr_matrix, k: int = K) -> np.ndarray:
    """Per row: hits of the top-``k`` (``seen`` items excluded) over min(k, |held out|).

    ``scores``: (users, items) dense; ``seen`` and ``held_out``: (users, items) 0/1 sparse.
    The denominator min(k, |test|) is LensKit's and the EASE paper's.
    """
    scores = np.array(scores, np.float64, copy=True)
    seen = seen.tocoo()
    scores[seen.row, seen.col] = -np.inf
    k = min(k, scores.shape[1])
    top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    hits = np.asarray(held_out[np.arange(len(scores))[:, None], top].sum(axis=1)).ravel()
    relevant = np.asarray(held_out.sum(axis=1)).ravel()
    return hits / np.maximum(np.minimum(relevant, k), 1)


@dataclass(frozen=True)
class Reference:
    """Recall@K of EASE and of popularity on the same split, and what the split kept."""

    eval_users: int
    test_pairs: int
    ease_items: int  # items EASE was fitted on
    ease_recall: float
    popularity_recall: float
    others: dict[str, float] = field(default_factory=dict)  # Recall@K of any extra scorers

    @property
    def ratio(self) -> float:
        return self.ease_recall / self.popularity_recall if self.popularity_recall else math.nan


def reference_cf(
    users: np.ndarray,
    items: np.ndarray,
    times: np.ndarray,
    n_items: int,
    *,
    lam: float = EASE_LAMBDA,
    k: int = K,
    min_items: int = MIN_USER_ITEMS,
    min_item_count: int = EASE_MIN_ITEM_COUNT,
    max_items: int = EASE_MAX_ITEMS,
    others: Mapping[str, Callable[[np.ndarray], np.ndarray]] | None = None,
) -> Reference:
    """EASE (λ = ``lam``) against popularity, Recall@``k`` on a per-user temporal 80/20 split.

    Both learn from every training interaction (the light users' too). EASE is fitted on the
    items with at least ``min_item_count`` training interactions (the ``max_items`` most
    frequent at most); it cannot recommend the others, popularity can. Test users are those
    with ``min_items`` or more interactions. ``others``: more rankings to score on the same
    split, each a function of the evaluated user ids giving (users, n_items) scores.
    """
    users = np.asarray(users, np.int64)
    items = np.asarray(items, np.int64)
    train, test = temporal_split(users, times, min_items=min_items)
    eval_ids, eval_row = np.unique(users[test], return_inverse=True)
    if len(eval_ids) == 0:
        return Reference(0, 0, 0, math.nan, math.nan)
    all_ids, user_row = np.unique(users, return_inverse=True)

    popularity = item_counts(items[train], n_items).astype(np.float64)
    kept = np.flatnonzero(popularity >= min_item_count)
    kept = kept[np.argsort(-popularity[kept], kind="stable")][:max_items]
    column = np.full(n_items, -1, np.int64)
    column[kept] = np.arange(len(kept))

    in_ease = train & (column[items] >= 0)
    x = sp.csr_matrix(
        (np.ones(int(in_ease.sum())), (user_row[in_ease], column[items[in_ease]])),
        shape=(len(all_ids), len(kept)),
    )
    weights = ease_weights(x, lam)

    # the evaluated users' rows: their training items (all of them, to exclude) and test items
    eval_of_user = np.full(len(all_ids), -1, np.int64)
    eval_of_user[np.searchsorted(all_ids, eval_ids)] = np.arange(len(eval_ids))
    train_eval = train & (eval_of_user[user_row] >= 0)
    seen = _binary(eval_of_user[user_row[train_eval]], items[train_eval], len(eval_ids), n_items)
    held_out = _binary(eval_row, items[test], len(eval_ids), n_items)

    others = others or {}
    recalls: dict[str, list[np.ndarray]] = {name: [] for name in ("ease", "popularity", *others)}
    for low in range(0, len(eval_ids), _SCORE_ROWS):  # dense score rows, a block at a time
        rows = slice(low, low + _SCORE_ROWS)
        block_seen, block_held = seen[rows], held_out[rows]
        ease_scores = np.full((block_seen.shape[0], n_items), -np.inf)
        ease_scores[:, kept] = block_seen[:, kept] @ weights
        recalls["ease"].append(recall_at_k(ease_scores, block_seen, block_held, k))
        pop_scores = np.broadcast_to(popularity, ease_scores.shape)
        recalls["popularity"].append(recall_at_k(pop_scores, block_seen, block_held, k))
        for name, scorer in others.items():
            recalls[name].append(recall_at_k(scorer(eval_ids[rows]), block_seen, block_held, k))
    mean = {name: float(np.concatenate(values).mean()) for name, values in recalls.items()}
    return Reference(
        eval_users=len(eval_ids),
        test_pairs=int(test.sum()),
        ease_items=len(kept),
        ease_recall=mean.pop("ease"),
        popularity_recall=mean.pop("popularity"),
        others=mean,
    )


def _binary(rows: np.ndarray, cols: np.ndarray, n_rows: int, n_cols: int) -> sp.csr_matrix:
    matrix = sp.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(n_rows, n_cols))
    matrix.data[:] = 1.0  # a duplicate pair counts once
    return matrix
