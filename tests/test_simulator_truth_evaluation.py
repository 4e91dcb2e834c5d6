"""The ground-truth report's measures, against values worked out by hand (evaluation-only code)."""

from __future__ import annotations

import numpy as np

from movierec.models import topk
from simulator.truth_evaluation import mean_affinity, overlap_at_k, recall_at_k, top_k_masked


def test_overlap_counts_shared_movies_out_of_k_and_ignores_padding() -> None:
    lists = np.array([[1, 2, 3, -1], [4, 5, 6, 7]])
    truths = np.array([[3, 2, 9, 8], [0, 1, 2, 3]])
    assert overlap_at_k(lists, truths, k=4).tolist() == [0.5, 0.0]


def test_mean_affinity_averages_the_listed_movies_only() -> None:
    affinities = np.array([[0.0, 1.0, 2.0, 3.0], [4.0, 5.0, 6.0, 7.0]])
    lists = np.array([[3, 1, -1], [0, -1, -1]])
    assert mean_affinity(lists, affinities).tolist() == [2.0, 4.0]


def test_recall_divides_by_the_smaller_of_relevant_and_k() -> None:
    lists = np.array([[1, 2], [3, 4]])
    relevant = [{1, 9, 8}, {4}]
    # user 1: 1 hit of min(3, 2) = 2 -> 0.5; user 2: 1 hit of 1 -> 1.0
    assert recall_at_k(lists, relevant, k=2) == 0.75


def test_top_k_masked_orders_best_first_and_never_lists_what_was_seen() -> None:
    scores = np.array([[0.1, 0.9, 0.5, 0.7], [0.4, 0.3, 0.2, 0.1]], np.float32)
    seen = topk.csr_from_pairs(np.array([0, 1]), np.array([1, 0]), 2)
    assert top_k_masked(scores, seen, k=2).tolist() == [[3, 2], [1, 2]]
    assert scores[0, 1] == np.float32(0.9)  # the caller's scores are not touched
