"""Exact blocked top-k of user·item scores, seen items excluded (numpy GEMM, a compiled scan).

The cost of precomputing lists for every user is not the GEMM but picking the
top k out of ~27,000 scores per user: a plain ``argpartition`` touches every
score several times. Here each block of users is scored with one float32 GEMM
into a reused buffer, then one compiled pass per row (numba, ``scan_rows``):
seen items set to -inf, the maxima of interleaved column groups, and from them
a lower bound on the k-th score (the k-th largest group maximum: k distinct
items reach it), so only the few groups reaching it are inserted into a sorted
best-k. The result is exactly what a full sort gives, ties broken by the lower
item index.
"""

from __future__ import annotations

import sys
import types
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

# 128 x 27K float32 scores = 14 MB, in one buffer reused for every block (a fresh 110 MB block of
# 1024 users cost ~13 µs/user in page faults alone); per user, a GEMM of 128 rows costs ~6% less
# than of 64 and ~35% less than of 16 (bench_precompute.py --stages, bench/README.md)
DEFAULT_BLOCK_USERS = 128
DEFAULT_GROUPS = 256  # column groups for the lower bound: more groups, tighter bound, fewer visits
LINE = 16  # float32 scores per cache line: a group's members are whole lines


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
    # the seen pairs are written sorted by user (spark_jobs/prepare.py): then no sort is needed
    # (a stable argsort of 3M shuffled pairs takes ~0.4 s of the driver, the check ~3 ms)
    in_order = rows.size < 2 or bool((rows[1:] >= rows[:-1]).all())
    indptr = np.zeros(n_rows + 1, dtype=np.int64)
    np.cumsum(np.bincount(rows, minlength=n_rows), out=indptr[1:])
    # a copy either way: the CSR never shares memory with the caller's pairs
    return indptr, cols.copy() if in_order else cols[np.argsort(rows, kind="stable")]


def _check_factors(user_factors: np.ndarray, item_factors: np.ndarray) -> None:
    if user_factors.ndim != 2 or item_factors.ndim != 2:
        raise ValueError("factors must be 2-d arrays (rows x rank)")
    if user_factors.shape[1] != item_factors.shape[1]:
        raise ValueError(f"rank differs: users {user_factors.shape[1]}, items {item_factors.shape[1]}")


def _check_scan(shape: tuple[int, int], k: int, groups: int, indptr: np.ndarray, indices: np.ndarray) -> None:
    """The compiled scan trusts its inputs (no bounds checks): refuse what would read or write
    outside them, with the reason."""
    n_rows, n_cols = shape
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    if groups < 1:
        raise ValueError(f"groups must be at least 1, got {groups}")
    if len(indptr) != n_rows + 1:
        raise ValueError(f"seen indptr has {len(indptr)} entries for {n_rows} users")
    if indptr[0] < 0 or indptr[-1] > len(indices) or (np.diff(indptr) < 0).any():
        raise ValueError(f"seen indptr is not a CSR over its {len(indices)} indices")
    used = indices[indptr[0] : indptr[-1]]
    if used.size and (used.min() < 0 or used.max() >= n_cols):
        raise ValueError(f"seen item index out of range 0..{n_cols - 1}")


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
    n_users = users.shape[0]
    _check_factors(users, items_t.T)
    indptr, indices = seen if seen is not None else (np.zeros(n_users + 1), np.zeros(0))
    indptr, indices = np.asarray(indptr, dtype=np.int64), np.asarray(indices, dtype=np.int64)
    _check_scan((n_users, items_t.shape[1]), k, groups, indptr, indices)
    out_items = np.full((n_users, k), -1, dtype=np.int32)
    out_scores = np.full((n_users, k), -np.inf, dtype=np.float32)
    buffer = np.empty((min(block_users, n_users), items_t.shape[1]), dtype=np.float32)
    scan = _compiled_scan()
    for start, stop in _blocks(n_users, block_users):
        scores = buffer[: stop - start]
        np.matmul(users[start:stop], items_t, out=scores)
        scan(scores, indptr[start : stop + 1], indices, groups, out_items[start:stop], out_scores[start:stop])
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
    scores are padded with -1 / -inf. ``scores`` is left as it is.
    """
    scores = np.ascontiguousarray(scores, dtype=np.float32)  # with no seen cells the scan writes nothing
    n_rows = scores.shape[0]
    no_seen, no_items = np.zeros(n_rows + 1, dtype=np.int64), np.zeros(0, dtype=np.int64)
    _check_scan(scores.shape, k, groups, no_seen, no_items)
    out_items = np.full((n_rows, k), -1, dtype=np.int32)
    out_scores = np.full((n_rows, k), -np.inf, dtype=np.float32)
    _compiled_scan()(scores, no_seen, no_items, groups, out_items, out_scores)
    return out_items, out_scores


def scan_rows(
    scores: np.ndarray,
    indptr: np.ndarray,
    indices: np.ndarray,
    groups: int,
    out_items: np.ndarray,
    out_scores: np.ndarray,
) -> None:
    """What ``_compiled_scan`` compiles (plain Python: correct, but slow uncompiled). Per row of
    ``scores``: set its seen cells (``indices[indptr[r]:indptr[r + 1]]``; ``indptr`` is this
    block's slice of the CSR) to -inf, then write its best ``k = out_items.shape[1]`` into
    ``out_*`` (preset to -1 / -inf), best first, ties to the lower column.

    The row is cut into tiles of ``groups`` runs of ``LINE`` columns; group g holds run g of every
    tile, so one pass of element-wise maxima over the tiles gives every group's maximum, and a
    group's members are a few whole cache lines. The k-th largest group maximum is a lower bound on
    the k-th score (k distinct items reach it), so only the groups whose maximum reaches it (about
    k of them) are visited; a visited line's members are first counted against the bound (one
    vector compare), and only members reaching it are tried in the sorted best-k arrays."""
    n_rows, n_cols = scores.shape
    k = out_items.shape[1]
    width = groups * LINE
    n_tiles = (n_cols + width - 1) // width
    full_tiles = n_cols // width
    lanes = np.empty(width, dtype=scores.dtype)
    maxima = np.empty(groups, dtype=scores.dtype)
    bound = np.empty(k, dtype=scores.dtype)
    for r in range(n_rows):
        row = scores[r]
        for p in range(indptr[r], indptr[r + 1]):
            row[indices[p]] = -np.inf
        lanes[:] = -np.inf
        for t in range(n_tiles):
            base = t * width
            for x in range(min(width, n_cols - base)):
                value = row[base + x]
                lanes[x] = value if value > lanes[x] else lanes[x]
        bound[:] = -np.inf
        for g in range(groups):
            top = lanes[g * LINE]
            for x in range(g * LINE + 1, (g + 1) * LINE):
                top = lanes[x] if lanes[x] > top else top
            maxima[g] = top
            if top > bound[k - 1]:  # the k-th largest group maximum, by insertion
                place = k - 1
                while place > 0 and bound[place - 1] < top:
                    bound[place] = bound[place - 1]
                    place -= 1
                bound[place] = top
        threshold = bound[k - 1]
        best_items = out_items[r]
        best_scores = out_scores[r]
        for g in range(groups):
            if not maxima[g] >= threshold or maxima[g] == -np.inf:
                continue
            for t in range(n_tiles):
                first = t * width + g * LINE
                if t < full_tiles:  # a whole line: counted first, in one vector compare (hot scan -23%)
                    reaching = 0
                    for x in range(LINE):
                        reaching += row[first + x] >= threshold
                    if reaching == 0:
                        continue
                for j in range(first, min(first + LINE, n_cols)):
                    value = row[j]
                    if value < threshold:  # most members: below the bound, so not in the best k
                        continue
                    kth_score, kth_item = best_scores[k - 1], best_items[k - 1]
                    if value > kth_score or (value == kth_score and kth_item >= 0 and j < kth_item):
                        place = k - 1
                        while place > 0 and (
                            best_scores[place - 1] < value
                            or (best_scores[place - 1] == value and best_items[place - 1] > j)
                        ):
                            best_scores[place] = best_scores[place - 1]
                            best_items[place] = best_items[place - 1]
                            place -= 1
                        best_scores[place] = value
                        best_items[place] = j


# Compiled once per process and kept in a registry module, not in this module's globals: this
# module is pickled by value to Spark's Python workers (spark_jobs/precompute.py), and a compiled
# function would not survive the trip, nor should each task recompile.
_REGISTRY = "movierec_compiled_kernels"


def _compiled_scan() -> Callable[..., None]:
    registry = sys.modules.setdefault(_REGISTRY, types.ModuleType(_REGISTRY))
    scan = getattr(registry, "topk_scan", None)
    if scan is None:
        scan = compile_kernel(scan_rows)
        registry.topk_scan = scan
    return scan


def compile_kernel(function: Callable[..., None]) -> Callable[..., None]:
    """``function`` compiled by numba, cached on disk where its source file is: a process that
    finds the cache loads the kernel in ~0.7 s instead of compiling it for ~1.7 s, numba's import
    included (``bench/bench_kernel_cache.py``); every Python worker of a precompute, and its
    driver, start with this. Numba keys the cache by the source file's stamp, so an edited file
    is compiled afresh. An executor without the project (the function came by value) or without
    a writable cache folder compiles it in memory."""
    import numba  # here: only processes that score pay for the compiler

    try:
        return numba.njit(nogil=True, cache=True)(function)
    except RuntimeError:  # numba: "cannot cache function ...: no locator available for file ..."
        return numba.njit(nogil=True, cache=False)(function)


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
