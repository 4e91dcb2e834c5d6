"""The fairness measures on small hand-made data; expected values by hand or by a plain formula here."""

from __future__ import annotations

import math
from datetime import date

import numpy as np
import pandas as pd
import pytest

from movierec.fairness import measures, rerank

Z = 1.959963984540054  # the normal quantile of 0.975


def delta_interval(y: list[float], x: list[float]) -> tuple[float, float, float]:
    """The ratio estimator's linearised interval, written out longhand."""
    n = len(y)
    r = sum(y) / sum(x)
    mean_x = sum(x) / n
    s2 = sum((yi - r * xi) ** 2 for yi, xi in zip(y, x, strict=True)) / (n - 1)
    se = math.sqrt(s2 / n) / mean_x
    return r, r - Z * se, r + Z * se


def test_a_ratio_of_sums_weighs_users_by_their_answers_and_counts_uncertainty_per_user() -> None:
    y, x = [10.0, 0.0, 30.0, 5.0], [1.0, 2.0, 3.0, 1.0]
    found = measures.ratio_of_sums(y, x)
    assert found.value == pytest.approx(45 / 7)  # not the mean of per-user ratios (6.25)
    expected = delta_interval(y, x)
    assert (found.value, found.low, found.high) == pytest.approx(expected)
    assert found.users == 4


def test_a_share_with_one_slot_per_user_is_the_plain_proportion_interval() -> None:
    hits = [1.0] * 30 + [0.0] * 70
    found = measures.ratio_of_sums(hits, [1.0] * 100)
    p = 0.3
    se = math.sqrt(p * (1 - p) / 99)  # the sample variance's n - 1
    assert (found.low, found.high) == pytest.approx((p - Z * se, p + Z * se))


def test_no_users_or_nothing_to_divide_by_gives_no_estimate() -> None:
    assert measures.ratio_of_sums([], []).value is None
    assert measures.ratio_of_sums([1.0], [0.0]).value is None
    one = measures.ratio_of_sums([3.0], [2.0])
    assert one.value == 1.5 and one.low is None


def test_the_ratio_of_two_estimates_has_its_interval_on_the_log_scale() -> None:
    a = measures.Estimate(2.0, 2.0 - Z * 0.2, 2.0 + Z * 0.2, 50)
    b = measures.Estimate(4.0, 4.0 - Z * 0.2, 4.0 + Z * 0.2, 80)
    found = measures.ratio_of_estimates(a, b)
    spread = Z * math.sqrt((0.2 / 2.0) ** 2 + (0.2 / 4.0) ** 2)
    assert found.value == pytest.approx(0.5)
    assert (found.low, found.high) == pytest.approx((0.5 * math.exp(-spread), 0.5 * math.exp(spread)))
    zero = measures.ratio_of_estimates(measures.Estimate(0.0, -0.1, 0.1, 5), b)
    assert (zero.value, zero.low, zero.high) == pytest.approx((0.0, 0.0, 0.1 / 4.0))


def test_a_breach_needs_the_whole_interval_below_the_threshold() -> None:
    assert measures.breached(measures.Estimate(0.6, 0.5, 0.79, 40), 0.8)
    assert not measures.breached(measures.Estimate(0.6, 0.3, 0.9, 40), 0.8)  # not enough evidence
    assert not measures.breached(measures.Estimate(0.6, None, None, 1), 0.8)


def test_age_bands_follow_the_catalog_cut_points() -> None:
    ages = pd.Series([17, 18, 24, 25, 44, 45, 49, 50, 55, 56, 90, None], dtype="float64")
    assert measures.age_band(ages).tolist() == [
        "under 18", "18-24", "18-24", "25-34", "35-44", "45-49", "45-49", "50-55", "50-55",
        "56+", "56+", "unknown",
    ]  # fmt: skip


def test_quality_by_group_compares_each_group_with_the_rest_and_judges_only_big_known_groups() -> None:
    rng = np.random.default_rng(3)
    users = pd.DataFrame(
        {
            "user_id": range(200),
            "gender": ["F"] * 40 + ["M"] * 150 + [None] * 10,
            "age": [30] * 200,
            "occupation": ["writer"] * 5 + ["other"] * 195,
        }
    )
    answers = rng.integers(1, 4, 200).astype(float)
    minutes = np.where(np.arange(200) < 40, 5.0, 20.0) * answers  # women's lists: a quarter the minutes
    per_user = pd.DataFrame({"y": minutes, "x": answers}, index=pd.Index(range(200), name="user_id"))
    found = measures.quality_by_group(per_user, measures.user_groups(users))
    gender = {row["group"]: row for row in found["attributes"]["gender"]["groups"]}
    assert gender["F"]["estimate"]["value"] == pytest.approx(5.0)
    assert gender["F"]["rest"]["value"] == pytest.approx(20.0)
    assert gender["F"]["ratio"]["value"] == pytest.approx(0.25)
    assert gender["F"]["breached"] and not gender["M"]["breached"]
    assert not gender["unknown"]["judged"]  # the catalog's blanks are listed, never judged
    occupation = {row["group"]: row for row in found["attributes"]["occupation"]["groups"]}
    assert not occupation["writer"]["judged"]  # 5 users < 30
    assert found["attributes"]["gender"]["min_ratio"] == pytest.approx(0.25)
    assert found["breached"] and not found["attributes"]["age_band"]["breached"]
    # judged: F, M and other; not writer (5 users), unknown (no group), 25-34 (no one else to compare)
    assert found["judged"] == 3


def test_equal_quality_is_no_breach() -> None:
    per_user = pd.DataFrame({"y": [10.0, 12.0] * 50, "x": [1.0] * 100}, index=range(100))
    groups = pd.DataFrame({"gender": ["F", "M"] * 50}, index=range(100))
    found = measures.quality_by_group(per_user, groups)
    assert found["attributes"]["gender"]["min_ratio"] == pytest.approx(10 / 12)
    assert not found["breached"]


def test_the_long_tail_is_what_lies_outside_the_head_of_80_percent_of_choices() -> None:
    counts = pd.Series({"a": 50, "b": 25, "c": 10, "d": 10, "e": 5, "f": 0})
    # a (0 before it) and b (50 before) are under 80; c starts at 75 < 80: head; d starts at 85
    assert measures.long_tail(counts) == {"d", "e", "f"}
    mask = measures.long_tail_mask(np.array([0, 50, 25, 10, 10, 5]))
    assert mask.tolist() == [True, False, False, False, True, True]


def test_segments_and_shares_of_slots_and_choices() -> None:
    movies = pd.DataFrame(
        {
            "id": ["a", "b", "c", "d"],
            "release_date": pd.to_datetime(["2020-01-01", "1990-05-01", "2006-12-01", None]).date,
            "original_language": ["en", "en", "fr", None],
        }
    )
    choices = pd.DataFrame({"user_id": [1, 1, 1, 2, 2, 3, 3, 3, 3, 3], "movie_id": list("aaaabbacdd")})
    counts = choices["movie_id"].value_counts()
    segments = measures.movie_segments(movies, counts, date(2026, 12, 1), top_languages=1)
    # a: 5 choices, b: 2, d: 2, c: 1 -> a (0 before), b (5), d (7 < 8 of 10) are the head
    assert segments.index[segments["long_tail"]].tolist() == ["c"]
    assert segments.index[segments["older"]].tolist() == ["b"]  # c, released on the cut-off day, is not
    assert segments["lang:en"].tolist() == [True, True, False, False]
    assert segments["lang:other"].tolist() == [False, False, True, True]
    slots = pd.DataFrame({"user_id": [1, 1, 2, 2, 2, 2], "movie_id": ["a", "c", "a", "b", "c", "zz"]})
    shares = measures.segment_shares(slots, segments)
    assert shares["long_tail"].value == pytest.approx(2 / 6)
    assert shares["older"].value == pytest.approx(1 / 6)
    assert shares["lang:other"].value == pytest.approx(2 / 6)  # c twice; zz is in no segment
    result = measures.exposure(slots, choices, segments)
    tail = result["segments"]["long_tail"]
    assert tail["choice_share"]["value"] == pytest.approx(1 / 10)
    assert tail["ratio"]["value"] == pytest.approx((2 / 6) / (1 / 10))
    assert result["slots"] == 6 and result["choices"] == 10


def test_a_tail_kept_out_of_lists_breaches_the_exposure_requirement() -> None:
    segments = pd.DataFrame({"long_tail": [False, True]}, index=["hit", "niche"])
    users = np.arange(100)
    slots = pd.DataFrame({"user_id": np.repeat(users, 10), "movie_id": ["hit"] * 990 + ["niche"] * 10})
    choices = pd.DataFrame({"user_id": np.repeat(users, 4), "movie_id": ["hit", "hit", "hit", "niche"] * 100})
    result = measures.exposure(slots, choices, segments)
    assert result["segments"]["long_tail"]["ratio"]["value"] == pytest.approx(0.01 / 0.25)
    assert result["breached"]
    fair = pd.DataFrame({"user_id": np.repeat(users, 4), "movie_id": ["hit", "hit", "niche", "niche"] * 100})
    assert not measures.exposure(fair, choices, segments)["breached"]


# --- the re-ranking ------------------------------------------------------------------------------


def test_the_tail_quota_keeps_the_best_tail_items_and_the_best_others_in_rank_order() -> None:
    is_tail = np.array([False, False, False, True, True, False, True])
    ranked = np.array([[0, 1, 2, 3, 4, 5, 6], [3, 4, 6, 0, 1, 2, 5], [0, 1, 5, 2, -1, -1, -1]])
    got = rerank.tail_quota(ranked, is_tail, k=4, min_tail=2)
    assert got.tolist() == [
        [0, 1, 3, 4],  # the two best tail items (3, 4) take the places of 2 and 5
        [3, 4, 6, 0],  # already three tail items in the top 4: unchanged
        [0, 1, 5, 2],  # no tail candidate at all: unchanged
    ]
    assert rerank.tail_quota(ranked, is_tail, k=4, min_tail=0).tolist() == [
        [0, 1, 2, 3], [3, 4, 6, 0], [0, 1, 5, 2],
    ]  # fmt: skip


def test_the_tail_quota_pads_short_lists_and_refuses_a_quota_beyond_the_list() -> None:
    got = rerank.tail_quota(np.array([[1, 0]]), np.array([False, True]), k=3, min_tail=1)
    assert got.tolist() == [[1, 0, -1]]
    with pytest.raises(ValueError, match="min_tail"):
        rerank.tail_quota(np.array([[1, 0]]), np.array([False, True]), k=2, min_tail=3)
