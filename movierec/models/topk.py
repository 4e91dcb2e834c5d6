"""Exact blocked top-k of user·item scores, seen items excluded (pure numpy).

The cost of precomputing lists for every user is not the GEMM but picking the
top k out of ~27,000 scores per user: a plain ``argpartition`` touches every
score several times. Here each block of users is scored with one float32 GEMM,
seen items are set to -inf, and a cheap per-row lower bound on the k-th score
(the k-th largest of ``groups`` interleaved column-group maxima: k distinct
items reach it, so the true k-th score is at least as large) leaves only a
handful of candidates per row; those are sorted exactly. The result is exactly
what a full sort gives, ties broken by the lower item index.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

# 64 x 27K float32 scores = 7 MB: the block stays in cache from the GEMM through the top-k's passes,
# and one buffer is reused for every block (a fresh 110 MB block of 1024 users cost ~13 µs/user in
# page faults alone; bench_precompute.py --stages)
DEFAULT_BLOCK_USERS = 64
DEFAULT_GROUPS = 256  # column groups for the lower bound: more groups, tighter bound, fewer candidates


@dataclass(frozen=True)
class TopK:
    """Per user row: item indices best first (-1 pads rows with fewer than k unseen items) and scores."""

    items: np.ndarray  # (users, k) int32
    scores: np.ndarray  # (users, k) float32, -inf where items is -1

    def row(self, i: int) -> list[int]:
        """The item indices of row ``i``, without padding."""
        return [int(item) for item in self.items[i] if item >= 0]


def csr_from_pairs(rows: np.ndarray, cols: np.ndarray, n_rows: int) -> tuple[np.ndarray, np.ndarray]:
    """(indptr, indices) of a 0/1 matrix given as (row, col) pairs, e.g. the seen (user, item) pairs."""
    rows = np.asarray(rows, dtype=np.int64)
    cols = np.asarray(cols, dtype=np.int64)
    if rows.shape != cols.shape:
        raise ValueError(f"rows and cols differ in shape: {rows.shape} vs {cols.shape}")
    if rows.size and (rows.min() < 0 or rows.max() >= n_rows):
        raise ValueError(f"row index out of range 0..{n_rows - 1}")
    order = np.argsort(rows, kind="stable")
    indptr = np.zeros(n_rows + 1, dtype=np.int64)
    np.cumsum(np.bincount(rows, minlength=n_rows), out=indptr[1:])
    return indptr, cols[order]


def _check_inputs(
    user_factors: np.ndarray, item_factors: np.ndarray, k: int, indptr: np.ndarray | None
) -> None:
    if user_factors.ndim != 2 or item_factors.ndim != 2:
        raise ValueError("factors must be 2-d arrays (rows x rank)")
    if user_factors.shape[1] != item_factors.shape[1]:
        raise ValueError(f"rank differs: users {user_factors.shape[1]}, items {item_factors.shape[1]}")
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    if indptr is not None and len(indptr) != user_factors.shape[0] + 1:
        raise ValueError(f"seen indptr has {len(indptr)} entries for {user_factors.shape[0]} users")


def top_k(
    user_factors: np.ndarray,
    item_factors: np.ndarray,
    k: int = 20,
    seen: tuple[np.ndarray, np.ndarray] | None = None,
    *,
    block_users: int = DEFAULT_BLOCK_USERS,
    groups: int = DEFAULT_GROUPS,
) -> TopK:
    """Exact top-``k`` items per user by dot product, excluding ``seen`` (CSR ``(indptr, indices)``)."""
    users = np.ascontiguousarray(user_factors, dtype=np.float32)
    items_t = np.ascontiguousarray(np.asarray(item_factors, dtype=np.float32).T)  # (rank, n): GEMM-ready
    indptr, indices = seen if seen is not None else (None, None)
    _check_inputs(users, items_t.T, k, indptr)
    n_users = users.shape[0]
    out_items = np.full((n_users, k), -1, dtype=np.int32)
    out_scores = np.full((n_users, k), -np.inf, dtype=np.float32)
    buffer = np.empty((min(block_users, n_users), items_t.shape[1]), dtype=np.float32)
    for start, stop in _blocks(n_users, block_users):
        scores = buffer[: stop - start]
        np.matmul(users[start:stop], items_t, out=scores)
        if indptr is not None:
            mask_seen(scores, indptr[start : stop + 1], indices)
        out_items[start:stop], out_scores[start:stop] = top_k_of_scores(scores, k, groups=groups)
    return TopK(out_items, out_scores)


def _blocks(n: int, size: int) -> Iterator[tuple[int, int]]:
    for start in range(0, n, size):
        yield start, min(start + size, n)


def mask_seen(scores: np.ndarray, indptr: np.ndarray, indices: np.ndarray) -> None:
    """Set the seen (row, item) cells of this block to -inf, in place; ``indptr`` is the block's slice."""
    lo, hi = int(indptr[0]), int(indptr[-1])
    if hi == lo:
        return
    cols = np.asarray(indices[lo:hi], dtype=np.int64)
    rows = np.repeat(np.arange(scores.shape[0]), np.diff(indptr))
    if cols.min() < 0 or cols.max() >= scores.shape[1]:
        raise ValueError(f"seen item index out of range 0..{scores.shape[1] - 1}")
    scores[rows, cols] = -np.inf


def top_k_of_scores(
    scores: np.ndarray, k: int, *, groups: int = DEFAULT_GROUPS
) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-k of each row of ``scores`` (-inf = excluded): (items int32, scores float32), best first.

    Ties are broken by the lower column index; rows with fewer than k finite
    scores are padded with -1 / -inf.
    """
    n_rows = scores.shape[0]
    rows, cols = _candidates(scores, k, groups)
    values = scores[rows, cols]
    # Sort by row, then score descending, then column ascending; keep the first k of each row.
    order = np.lexsort((cols, -values, rows))
    rows, cols, values = rows[order], cols[order], values[order]
    starts = np.searchsorted(rows, np.arange(n_rows))
    rank_in_row = np.arange(rows.size) - starts[rows]
    keep = rank_in_row < k
    out_items = np.full((n_rows, k), -1, dtype=np.int32)
    out_scores = np.full((n_rows, k), -np.inf, dtype=np.float32)
    out_items[rows[keep], rank_in_row[keep]] = cols[keep]
    out_scores[rows[keep], rank_in_row[keep]] = values[keep]
    return out_items, out_scores


def _candidates(scores: np.ndarray, k: int, groups: int) -> tuple[np.ndarray, np.ndarray]:
    """(rows, cols) of every finite score at or above its row's lower bound on the k-th score (so
    all ties with the k-th are in), in no particular order.

    Columns are dealt into ``groups`` interleaved groups (column j -> group j % groups), so
    items sorted by popularity spread over all groups; leftover columns are groups of one. The
    bound is the k-th largest group maximum; only the groups whose maximum reaches it (about k of
    them) are searched, instead of comparing every score with it.
    """
    n_rows, n_cols = scores.shape
    per_group = n_cols // groups if groups > k else 0
    if per_group == 0:  # too few columns for a useful bound: take every finite score
        return _at_or_above(scores, _kth_largest(scores, k))
    split = per_group * groups
    head = scores[:, :split].reshape(n_rows, per_group, groups)  # a view: [row, j // groups, j % groups]
    maxima = np.concatenate([head.max(axis=1), scores[:, split:]], axis=1)
    threshold = _kth_largest(maxima, k)
    group_rows, group_ids = _at_or_above(maxima[:, :groups], threshold)
    members = head[group_rows, :, group_ids]  # (reached groups, per_group): their scores
    hit, position = _at_or_above(members, threshold[group_rows])
    tail_rows, tail_cols = _at_or_above(scores[:, split:], threshold)
    rows = np.concatenate([group_rows[hit], tail_rows])
    cols = np.concatenate([position * groups + group_ids[hit], tail_cols + split])
    return rows, cols


def _at_or_above(values: np.ndarray, bound: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(rows, cols) of the cells of ``values`` at or above their row's ``bound``."""
    flat = np.flatnonzero(values >= bound[:, None])  # ~10x faster than 2-d np.nonzero
    return np.divmod(flat, values.shape[1])


def _kth_largest(values: np.ndarray, k: int) -> np.ndarray:
    """Per row, the k-th largest value (-inf if fewer than k columns), never below the smallest
    finite float: -inf would make every excluded cell a candidate."""
    n_rows, n_cols = values.shape
    if n_cols < k:
        bound = np.full(n_rows, -np.inf, dtype=np.float32)
    else:
        bound = np.partition(values, n_cols - k, axis=1)[:, n_cols - k]
    return np.maximum(bound, np.finfo(np.float32).min).astype(np.float32)


def top_k_naive(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Reference: full stable sort of every row (score descending, then column ascending). Slow."""
    n_rows = scores.shape[0]
    out_items = np.full((n_rows, k), -1, dtype=np.int32)
    out_scores = np.full((n_rows, k), -np.inf, dtype=np.float32)
    for i in range(n_rows):
        order = np.lexsort((np.arange(scores.shape[1]), -scores[i]))
        best = order[np.isfinite(scores[i, order])][:k]
        out_items[i, : len(best)] = best
        out_scores[i, : len(best)] = scores[i, best]
    return out_items, out_scores


def top_k_argpartition(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The plain way (for the benchmark): argpartition every row, then sort the k. Ties arbitrary."""
    k_eff = min(k, scores.shape[1])
    part = np.argpartition(-scores, k_eff - 1, axis=1)[:, :k_eff]
    part_scores = np.take_along_axis(scores, part, axis=1)
    order = np.argsort(-part_scores, axis=1, kind="stable")
    return np.take_along_axis(part, order, axis=1).astype(np.int32), np.take_along_axis(
        part_scores, order, axis=1
    )
