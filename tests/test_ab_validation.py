"""The experiments' analysis on realistic per-user outcomes (the simulator's viewers, small world):
A/A splits give false positives at about alpha, and the design's sample size detects an effect of the
minimum detectable size about as often as the power it claims (bench/bench_ab_validation.py runs
1,000 repeats per metric at full scale)."""

from __future__ import annotations

from pathlib import Path

import pytest

from simulator import ab_check
from simulator.history import History

pytestmark = pytest.mark.slow


def test_aa_false_positives_near_alpha_and_power_at_the_design_size(history: History) -> None:
    result = ab_check.check(history, sessions=8_000, metric="list_minutes_per_answer", mde=8.0, repeats=400)
    # 400 analyses at a true rate of 5%: 2.1%..7.9% is +-2.7 standard errors
    assert 0.021 <= result["aa"]["share"] <= 0.079, result["aa"]
    assert abs(result["aa"]["mean_effect"]) < 0.5 * result["aa"]["effect_sd"]  # no bias in the split
    # the design's n for power 0.8; the planted effect is the MDE on average
    assert result["power"]["mean_effect"] == pytest.approx(8.0, rel=0.1)
    assert result["power"]["share"] >= 0.72, result["power"]


def test_aa_for_a_zero_one_metric_with_the_z_test(history: History) -> None:
    pool = ab_check.build_pool(history, 8_000, seed=5)
    result = ab_check.repeat(
        pool, metric="followed_any", users_per_variant=600, repeats=400, alpha=0.05, plant=0.0, seed=6
    )
    assert 0.021 <= result["share"] <= 0.079, result


def test_a_plant_larger_than_the_best_list_can_give_is_refused(history: History, tmp_path: Path) -> None:
    pool = ab_check.build_pool(history, 500, seed=3)
    with pytest.raises(ValueError, match="cannot plant"):
        ab_check.planted_effect_probability(pool, "list_minutes_per_answer", 10_000.0)
