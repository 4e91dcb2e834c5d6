"""The feedback-loop measures and the exploration draw, on small data with hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from movierec.feedback import measures
from movierec.models import exploration


def test_gini_of_hand_computed_cases() -> None:
    assert measures.gini([0, 0, 0, 4]) == pytest.approx(0.75)  # all on one of 4: (n - 1) / n
    assert measures.gini([3, 3, 3]) == pytest.approx(0.0)
    # mean absolute difference over ordered pairs: (1 + 2 + 1) * 2 / (2 * 3**2 * mean 2)
    assert measures.gini([3, 1, 2]) == pytest.approx(8 / 36)
    assert measures.gini([]) == 0.0
    assert measures.gini([0, 0]) == 0.0
    with pytest.raises(ValueError, match="non-negative"):
        measures.gini([-1, 2])


def test_top_share_counts_the_k_largest() -> None:
    counts = [5] * 5 + [10] * 20  # the 20 largest are the tens, wherever they stand
    assert measures.top_share(counts) == pytest.approx(200 / 225)
    assert measures.top_share([1, 2, 3], k=1) == pytest.approx(3 / 6)
    assert measures.top_share([0, 0]) == 0.0


def test_list_share_and_its_bounds() -> None:
    assert measures.list_share(10, 3) == pytest.approx(0.3)
    assert measures.list_share(0, 0) is None
    with pytest.raises(ValueError, match="within"):
        measures.list_share(2, 3)


def test_catalog_counts_include_zeros_and_ignore_unknown_ids() -> None:
    counts = measures.catalog_counts(["b", "a", "b", "zz"], ["a", "b", "c"])
    assert counts.tolist() == [1, 2, 0]


def test_genre_diversity_per_user() -> None:
    genres = {"m1": ["Drama", "Comedy"], "m2": ["Drama"], "m3": ["Horror"], "m4": []}
    watches = pd.DataFrame({"user_id": [1, 1, 2, 3], "movie_id": ["m1", "m2", "m3", "m4"]})
    distinct, entropy, users = measures.genre_diversity(watches, genres)
    # user 1: Drama twice, Comedy once (2 genres); user 2: Horror (1); user 3: a movie without genres (0)
    assert users == 3
    assert distinct == pytest.approx((2 + 1 + 0) / 3)
    user1 = -(2 / 3) * math.log2(2 / 3) - (1 / 3) * math.log2(1 / 3)
    assert entropy == pytest.approx(user1 / 3)
    assert measures.genre_diversity(watches.iloc[:0], genres) == (0.0, 0.0, 0)


def test_period_measures_put_them_together() -> None:
    catalog = ["a", "b", "c", "d"]
    genres = {"a": ["Drama"], "b": ["Comedy"], "c": ["Drama"], "d": ["Horror"]}
    served = ["a", "b", "a", "c"]  # exposure counts a2 b1 c1 d0
    watches = pd.DataFrame({"user_id": [7, 7, 8], "movie_id": ["a", "a", "b"]})  # a2 b1 c0 d0
    result = measures.period_measures(served, watches, catalog, genres, starts=3, list_starts=2)
    # Gini of [0, 1, 1, 2]: ordered-pair absolute differences sum 2 * (1+1+2+0+1+1) = 12; 12 / (2*16*1)
    assert result.exposure_gini == pytest.approx(12 / 32)
    # Gini of [0, 0, 1, 2]: 2 * (0+1+2+1+2+1) = 14; 14 / (2 * 16 * 0.75)
    assert result.watch_gini == pytest.approx(14 / 24)
    assert result.exposure_top20 == 1.0  # a catalog smaller than 20: everything is the top
    assert result.list_share == pytest.approx(2 / 3)
    assert (result.users, result.slots, result.watches) == (2, 4, 3)
    assert result.genres_per_user == 1.0 and result.genre_entropy == 0.0


# --- exploration slots ------------------------------------------------------------------------------


def csr(rows: list[list[int]]) -> tuple[np.ndarray, np.ndarray]:
    indptr = np.cumsum([0] + [len(r) for r in rows])
    return indptr, np.array([i for r in rows for i in r], dtype=np.int64)


def test_exploration_positions() -> None:
    assert exploration.positions(20, 3) == [18, 19, 20]
    assert exploration.positions(20, 0) == []
    with pytest.raises(ValueError, match=r"0\.\.20"):
        exploration.positions(20, 21)


def test_explore_replaces_the_last_slots_outside_the_model_part_and_the_seen() -> None:
    items = np.array([[0, 1, 2, 3, 4], [5, 6, 7, 8, 9], [0, 1, 2, -1, -1]])
    seen = csr([[10, 11], [], [3, 4, 5, 6, 7, 8, 9, 10]])
    out = exploration.explore(items, seen, 12, 2, np.random.default_rng(1))
    assert out[:, :3].tolist() == items[:, :3].tolist()  # the model's part is kept
    assert set(out[0, 3:]) <= {3, 4, 5, 6, 7, 8, 9} and len(set(out[0, 3:])) == 2
    assert set(out[1, 3:]) <= {0, 1, 2, 3, 4, 10, 11} and len(set(out[1, 3:])) == 2
    assert out[2, 3:].tolist() == [11, -1]  # only movie 11 is neither listed nor seen
    assert exploration.explore(items, seen, 12, 0, np.random.default_rng(1)).tolist() == items.tolist()


def test_explore_draws_uniformly_from_the_pool() -> None:
    users = 6_000
    items = np.tile(np.arange(4), (users, 1))  # model part: 0, 1; pool: 2..9 (8 movies), 2 slots
    out = exploration.explore(items, csr([[]] * users), 10, 2, np.random.default_rng(3))
    counts = np.bincount(out[:, 2:].ravel(), minlength=10)
    assert counts[:2].sum() == 0
    expected = users * 2 / 8  # each pool movie is in a list with probability slots / pool
    sd = math.sqrt(users * (2 / 8) * (6 / 8))
    assert np.all(np.abs(counts[2:] - expected) < 5 * sd)
