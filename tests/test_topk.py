"""The blocked top-k must equal a full sort, whatever the scores: ties, seen items, short rows."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest

from movierec.models.topk import (
    compile_kernel,
    csr_from_pairs,
    scan_rows,
    top_k,
    top_k_argpartition,
    top_k_naive,
    top_k_of_scores,
)
from movierec.settings import REPO_ROOT


def _naive_with_seen(users: np.ndarray, items: np.ndarray, k: int, seen_pairs: list[tuple[int, int]]):
    scores = users.astype(np.float32) @ items.astype(np.float32).T
    for row, col in seen_pairs:
        scores[row, col] = -np.inf
    return top_k_naive(scores, k)


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("k", [1, 20, 45])
@pytest.mark.parametrize("groups", [4, 32, 256])
def test_top_k_equals_full_sort_on_random_scores_with_ties(seed: int, k: int, groups: int) -> None:
    rng = np.random.default_rng(seed)
    # Few distinct values: many ties everywhere, also across the k-th place; 301 columns: some
    # are left over from the groups.
    scores = rng.integers(0, 6, size=(37, 301)).astype(np.float32)
    scores[rng.random(scores.shape) < 0.3] = -np.inf
    scores[3, :291] = -np.inf  # fewer than k finite scores
    scores[3, 291:] = 1.0
    scores[4, :] = -np.inf  # nothing left at all
    scores[5, :] = np.arange(301, dtype=np.float32)  # ascending: every score beats the k-th so far
    before = scores.copy()
    got_items, got_scores = top_k_of_scores(scores, k, groups=groups)
    want_items, want_scores = top_k_naive(scores, k)
    np.testing.assert_array_equal(got_items, want_items)
    np.testing.assert_array_equal(got_scores, want_scores)
    assert (got_items[3] >= 0).sum() == min(k, 10)
    assert (got_items[4] == -1).all()
    np.testing.assert_array_equal(scores, before)  # the caller's scores are left as they were


@pytest.mark.parametrize("seed", range(3))
def test_top_k_from_factors_excludes_seen_and_matches_naive_across_blocks(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n_users, n_items, rank, k = 50, 400, 8, 20
    users = rng.normal(size=(n_users, rank)).astype(np.float32)
    items = rng.normal(size=(n_items, rank)).astype(np.float32)
    items[10] = items[11]  # identical items: exact ties broken by the lower index
    random_pairs = zip(rng.integers(0, n_users, 600), rng.integers(0, n_items, 600), strict=True)
    pairs = {(int(u), int(i)) for u, i in random_pairs}
    pairs |= {(7, i) for i in range(n_items - 5)}  # a user who saw all but 5 movies
    pairs |= {(8, i) for i in range(0, n_items, 2)}  # a user who saw half the catalog
    seen_pairs = sorted(pairs)
    rows, cols = np.array(seen_pairs).T
    seen = csr_from_pairs(rows, cols, n_users)

    result = top_k(users, items, k, seen, block_users=7, groups=64)  # blocks that do not divide the users
    want_items, want_scores = _naive_with_seen(users, items, k, seen_pairs)

    np.testing.assert_array_equal(result.items, want_items)
    np.testing.assert_allclose(result.scores, want_scores, rtol=1e-5)
    for user in range(n_users):
        chosen = set(result.row(user))
        assert not chosen & {i for u, i in seen_pairs if u == user}
    unseen_7 = set(range(n_items)) - {i for u, i in seen_pairs if u == 7}
    assert 0 < len(unseen_7) <= 5
    assert set(result.row(7)) == unseen_7  # fewer than k unseen: all of them, then padding
    assert (result.items[7, len(unseen_7) :] == -1).all()


def test_the_reused_score_buffer_leaves_nothing_of_one_block_in_the_next() -> None:
    rng = np.random.default_rng(5)
    n_users, n_items, k = 3 * 64 + 9, 2000, 20
    users = rng.integers(-2, 3, size=(n_users, 4)).astype(np.float32)  # small integers: many exact ties
    items = rng.integers(-2, 3, size=(n_items, 4)).astype(np.float32)
    pairs = sorted(
        {
            (int(u), int(i))
            for u, i in zip(rng.integers(0, n_users, 3000), rng.integers(0, n_items, 3000), strict=True)
        }
    )
    rows, cols = np.array(pairs).T
    # the last block is shorter than the buffer: its rows must not see the previous block's scores
    result = top_k(users, items, k, csr_from_pairs(rows, cols, n_users), block_users=64)
    want_items, want_scores = _naive_with_seen(users, items, k, pairs)
    np.testing.assert_array_equal(result.items, want_items)
    np.testing.assert_array_equal(result.scores, want_scores)


def test_top_k_without_seen_is_the_plain_argpartition_answer() -> None:
    rng = np.random.default_rng(11)
    users = rng.normal(size=(30, 16)).astype(np.float32)
    items = rng.normal(size=(5000, 16)).astype(np.float32)  # continuous scores: no ties
    result = top_k(users, items, 20)
    plain_items, _ = top_k_argpartition(users @ items.T, 20)
    np.testing.assert_array_equal(result.items, plain_items)


def test_seen_pairs_become_a_csr_by_row_whether_or_not_they_come_sorted() -> None:
    """Pairs sorted by row (as prepare writes them) skip the sort; shuffled ones are sorted, stably."""
    expected_indptr = [0, 2, 2, 5, 6]  # row 1 has nothing seen
    expected_indices = [4, 1, 0, 7, 3, 2]  # each row's items in the order the pairs gave them
    rows, cols = np.array([0, 0, 2, 2, 2, 3]), np.array([4, 1, 0, 7, 3, 2])
    for order in (np.arange(6), np.array([5, 2, 0, 3, 1, 4])):
        indptr, indices = csr_from_pairs(rows[order], cols[order], 4)
        assert indptr.tolist() == expected_indptr
        by_row = [sorted(indices[a:b].tolist()) for a, b in itertools.pairwise(indptr)]
        assert by_row == [[1, 4], [], [0, 3, 7], [2]]
    indptr, indices = csr_from_pairs(rows, cols, 4)
    assert indices.tolist() == expected_indices
    assert not np.shares_memory(indices, cols)  # the caller's pairs stay the caller's
    shuffled = np.array([2, 0, 2, 3, 0, 2])
    _, indices = csr_from_pairs(shuffled, np.array([10, 11, 12, 13, 14, 15]), 4)
    assert indices.tolist() == [11, 14, 10, 12, 15, 13]  # stable: each row keeps the given order


def test_bad_inputs_are_refused_clearly() -> None:
    users = np.zeros((3, 4), dtype=np.float32)
    with pytest.raises(ValueError, match="rank differs"):
        top_k(users, np.zeros((5, 3)), 2)
    with pytest.raises(ValueError, match="k must be"):
        top_k(users, np.zeros((5, 4)), 0)
    with pytest.raises(ValueError, match="out of range"):
        top_k(users, np.zeros((5, 4)), 2, csr_from_pairs(np.array([0]), np.array([9]), 3))
    with pytest.raises(ValueError, match="row index out of range"):
        csr_from_pairs(np.array([5]), np.array([0]), 3)
    # the compiled scan has no bounds checks: a CSR that points past its indices is refused first
    with pytest.raises(ValueError, match="not a CSR"):
        top_k(users, np.zeros((5, 4)), 2, (np.array([0, 1, 2, 9]), np.array([0, 1])))
    with pytest.raises(ValueError, match="not a CSR"):
        top_k(users, np.zeros((5, 4)), 2, (np.array([0, 2, 1, 2]), np.array([0, 1])))
    with pytest.raises(ValueError, match="out of range"):
        top_k(users, np.zeros((5, 4)), 2, (np.array([0, 1, 1, 1]), np.array([-1])))
    with pytest.raises(ValueError, match="groups must be"):
        top_k_of_scores(np.zeros((2, 5), dtype=np.float32), 2, groups=0)
    with pytest.raises(ValueError, match="k must be"):
        top_k_of_scores(np.zeros((2, 5), dtype=np.float32), 0)


# one process: compile (or load) the scan, run it once, print its cache hits and misses
_CACHE_PROBE = """
import numpy as np
from movierec.models.topk import compile_kernel, scan_rows
scan = compile_kernel(scan_rows)
items, best = np.full((2, 3), -1, np.int32), np.full((2, 3), -np.inf, np.float32)
scan(np.ones((2, 40), np.float32), np.zeros(3, np.int64), np.zeros(0, np.int64), 2, items, best)
print(sum(scan.stats.cache_hits.values()), sum(scan.stats.cache_misses.values()))
"""


def test_a_second_process_loads_the_compiled_scan_from_the_disk_cache(tmp_path: Path) -> None:
    env = os.environ | {"NUMBA_CACHE_DIR": str(tmp_path), "PYTHONPATH": str(REPO_ROOT)}

    def probe() -> list[int]:
        run = subprocess.run([sys.executable, "-c", _CACHE_PROBE], env=env, capture_output=True, text=True)
        assert run.returncode == 0, run.stderr
        return [int(n) for n in run.stdout.split()]

    assert probe() == [0, 1]  # the first process compiles, and writes the cache
    assert any(tmp_path.rglob("*.nbc"))
    assert probe() == [1, 0]  # the next one loads it


def test_a_kernel_whose_source_file_is_not_here_is_compiled_in_memory() -> None:
    # as on an executor without the project: the scan came by value, its file is elsewhere
    shipped = types.FunctionType(
        scan_rows.__code__.replace(co_filename="/not/on/this/machine/topk.py"), scan_rows.__globals__
    )
    scan = compile_kernel(shipped)
    scores = np.random.default_rng(3).standard_normal((6, 300)).astype(np.float32)
    items, best = np.full((6, 5), -1, np.int32), np.full((6, 5), -np.inf, np.float32)
    scan(scores.copy(), np.zeros(7, np.int64), np.zeros(0, np.int64), 4, items, best)
    np.testing.assert_array_equal(items, top_k_naive(scores, 5)[0])
