"""The statistics of experiments against values computed by hand from the textbook formulas (the
normal and t distributions from the standard library and scipy, never statsmodels' own answers)."""

from __future__ import annotations

import math
from statistics import NormalDist

import numpy as np
import pytest
from scipy.stats import t as student_t

from experiments import analysis as stats
from experiments.population import per_user

Z975 = NormalDist().inv_cdf(0.975)
Z80 = NormalDist().inv_cdf(0.8)


def two_sided_normal_p(z: float) -> float:
    return math.erfc(abs(z) / math.sqrt(2))


def test_two_proportions_z_test_and_intervals() -> None:
    result = stats.compare_proportions("followed_any", ("t", "c"), (30, 20), (100, 100), alpha=0.05)
    pooled = 50 / 200
    z = (0.30 - 0.20) / math.sqrt(pooled * (1 - pooled) * (1 / 100 + 1 / 100))
    assert result.statistic == pytest.approx(z, rel=1e-9)
    assert result.p_value == pytest.approx(two_sided_normal_p(z), rel=1e-9)
    half = Z975 * math.sqrt(0.3 * 0.7 / 100 + 0.2 * 0.8 / 100)  # Wald, unpooled
    assert result.difference_ci == pytest.approx((0.1 - half, 0.1 + half), rel=1e-6)
    log_half = Z975 * math.sqrt(1 / 30 - 1 / 100 + 1 / 20 - 1 / 100)  # log risk ratio
    assert result.relative == pytest.approx(0.5)
    assert result.relative_ci == pytest.approx((1.5 * math.exp(-log_half) - 1, 1.5 * math.exp(log_half) - 1))
    assert result.significant is False  # p = 0.10


def test_welch_t_test_and_intervals_of_the_difference_and_the_ratio() -> None:
    treatment = np.array([1.0, 2, 3, 4, 5])
    control = np.array([2.0, 4, 6, 8, 10, 12])
    result = stats.compare_means("minutes_per_answer", ("t", "c"), treatment, control, alpha=0.05)
    v_t, v_c = 2.5 / 5, 14.0 / 6  # sample variance / n
    se = math.sqrt(v_t + v_c)
    t = (3 - 7) / se
    df = (v_t + v_c) ** 2 / (v_t**2 / 4 + v_c**2 / 5)  # Welch-Satterthwaite
    assert result.statistic == pytest.approx(t, rel=1e-9)
    assert result.p_value == pytest.approx(2 * student_t.sf(abs(t), df), rel=1e-9)
    half = student_t.ppf(0.975, df) * se
    assert result.difference_ci == pytest.approx((-4 - half, -4 + half), rel=1e-9)
    log_se = math.sqrt(2.5 / (5 * 3**2) + 14.0 / (6 * 7**2))  # delta method on log(m_t / m_c)
    ratio = 3 / 7
    assert result.relative == pytest.approx(ratio - 1)
    assert result.relative_ci == pytest.approx(
        (ratio * math.exp(-Z975 * log_se) - 1, ratio * math.exp(Z975 * log_se) - 1)
    )
    assert result.significant and result.difference == -4


def test_the_sample_ratio_check_flags_a_broken_split_and_passes_a_fair_one() -> None:
    broken = stats.sample_ratio_check({"a": 5_200, "b": 4_800}, {"a": 0.5, "b": 0.5})
    assert broken.statistic == pytest.approx(2 * 200**2 / 5_000)  # 16
    assert broken.p_value == pytest.approx(math.erfc(math.sqrt(16 / 2)))  # chi-square, 1 df
    assert broken.mismatch
    fair = stats.sample_ratio_check({"a": 5_010, "b": 4_990}, {"a": 0.5, "b": 0.5})
    assert not fair.mismatch and fair.p_value == pytest.approx(math.erfc(math.sqrt(0.04 / 2)))
    uneven = stats.sample_ratio_check({"control": 7_040, "canary": 2_960}, {"control": 0.7, "canary": 0.3})
    expected_chi2 = 40**2 / 7_000 + 40**2 / 3_000
    assert uneven.statistic == pytest.approx(expected_chi2) and not uneven.mismatch
    missing = stats.sample_ratio_check({"control": 900}, {"control": 0.5, "canary": 0.5})
    assert missing.mismatch  # a variant nobody reached: the split is broken


def test_users_needed_for_a_mean_and_a_proportion_and_the_power_they_give() -> None:
    # n_control = (z_{1-a/2} + z_{power})^2 * sd^2 * (1 + 1/ratio) / mde^2
    hand = (Z975 + Z80) ** 2 * 0.4**2 * 2 / 0.02**2
    n_c, n_t = stats.users_needed(stats.MEAN, 0.27, 0.4, 0.02, 0.05, 0.8)
    assert abs(n_c - math.ceil(hand)) <= 1 and n_t == n_c
    hand_uneven = (Z975 + Z80) ** 2 * 0.4**2 * (1 + 7 / 3) / 0.02**2
    n_c, n_t = stats.users_needed(stats.MEAN, 0.27, 0.4, 0.02, 0.05, 0.8, ratio=3 / 7)
    assert abs(n_c - math.ceil(hand_uneven)) <= 1 and n_t == math.ceil(n_c * 3 / 7)
    h = 2 * math.asin(math.sqrt(0.32)) - 2 * math.asin(math.sqrt(0.30))  # Cohen's h
    n_c, _ = stats.users_needed(stats.PROPORTION, 0.30, None, 0.02, 0.05, 0.8)
    assert abs(n_c - math.ceil((Z975 + Z80) ** 2 * 2 / h**2)) <= 1
    at_plan = stats.power_reached(stats.MEAN, 0.27, 0.4, 0.02, 0.05, n_c := math.ceil(hand), n_c)
    assert 0.8 <= at_plan < 0.81
    assert stats.power_reached(stats.MEAN, 0.27, 0.4, 0.02, 0.05, n_c // 4, n_c // 4) < 0.3
    with pytest.raises(ValueError, match="standard deviation"):
        stats.users_needed(stats.MEAN, 0.27, None, 0.02, 0.05, 0.8)


def test_per_user_outcomes_count_each_user_once_and_leave_out_crossovers() -> None:
    import pandas as pd

    answers = pd.DataFrame(
        {
            "user_id": [1, 1, 1, 2, 3, 3],
            "variant": ["a", "a", "a", "b", "a", "b"],  # user 3 saw both: a crossover
            "list_starts": [1, 0, 2, 0, 1, 1],
            "list_minutes": [30, 0, 50, 0, 10, 10],
            "minutes": [30, 20, 50, 15, 10, 10],
        }
    )
    users, crossovers = per_user(answers)
    assert crossovers == 1 and sorted(users["user_id"]) == [1, 2]
    one = users.set_index("user_id").loc[1]
    assert one["answers"] == 3 and one["follow_rate"] == pytest.approx(2 / 3) and one["followed_any"] == 1
    assert one["minutes_per_answer"] == pytest.approx(100 / 3) and one["list_minutes_per_answer"] == 80 / 3
    assert users.set_index("user_id").loc[2, "followed_any"] == 0
