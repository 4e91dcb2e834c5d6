"""The statistics of an experiment, per user (the unit of randomisation), with statsmodels. Pure.

- A binary per-user metric (did the user follow any list) is compared with the two-proportion
  z-test (pooled variance, ``proportions_ztest``); its interval of the absolute difference is Wald's
  and of the ratio the log interval (``confint_proportions_2indep``).
- A per-user mean (a user's share of answers followed, minutes per answer) is compared with Welch's
  t-test (``ttest_ind(usevar="unequal")``); the interval of the difference is Welch's
  (``CompareMeans.tconfint_diff``), of the relative difference the delta method on the log ratio.
- The split is checked first: Pearson's chi-square goodness of fit of the users seen per variant
  against the configured shares; p < ``SRM_ALPHA`` is a sample-ratio mismatch and the experiment is
  invalid, whatever its metrics say.
- Power: the users each variant needs to detect the minimum detectable effect at alpha with the
  wanted power (``NormalIndPower``; Cohen's h for proportions, d = MDE / sd for means), and the
  power reached with the users there are.

Stopping rule: a fixed horizon. The verdict is taken once, when every variant has the users the
power analysis asked for or the planned end has come (whichever is first; neither depends on the
outcomes); looks before that are interim, shown with their intervals but never decided on, so the
false-positive rate stays alpha.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from scipy.stats import chisquare, norm
from statsmodels.stats.power import NormalIndPower
from statsmodels.stats.proportion import (
    confint_proportions_2indep,
    proportion_effectsize,
    proportions_ztest,
)
from statsmodels.stats.weightstats import CompareMeans, DescrStatsW, ttest_ind

SRM_ALPHA = 0.001  # a split this unlikely under the configured shares is broken, not unlucky
PROPORTION = "proportion"
MEAN = "mean"


@dataclass(frozen=True)
class MetricSpec:
    kind: str  # PROPORTION (a 0/1 per user) or MEAN (a number per user)
    operationalisation: str


# Per-user outcomes over the experiment (experiments.population); larger is better for all of them.
METRICS: dict[str, MetricSpec] = {
    "follow_rate": MetricSpec(
        MEAN, "per user: the share of their answers after which a movie of the list started within the window"
    ),
    "followed_any": MetricSpec(
        PROPORTION, "per user: 1 if a movie of any list they got started within the window, else 0"
    ),
    "list_minutes_per_answer": MetricSpec(
        MEAN, "per user: minutes watched of listed movies started after their answers, per answer"
    ),
    "minutes_per_answer": MetricSpec(
        MEAN, "per user: minutes of every viewing started within the window after their answers, per answer"
    ),
}


@dataclass(frozen=True)
class Comparison:
    """A treatment variant against the control on one metric."""

    metric: str
    test: str
    control: str
    treatment: str
    n_control: int
    n_treatment: int
    mean_control: float
    mean_treatment: float
    difference: float  # treatment - control
    difference_ci: tuple[float, float]
    relative: float | None  # treatment / control - 1
    relative_ci: tuple[float, float] | None
    statistic: float
    p_value: float
    alpha: float

    @property
    def significant(self) -> bool:
        return self.p_value < self.alpha

    def as_dict(self) -> dict[str, Any]:
        return asdict(self) | {"significant": self.significant}


def _nan_to_none(value: float) -> float | None:
    return None if value is None or not math.isfinite(value) else float(value)


def compare_proportions(
    metric: str,
    names: tuple[str, str],
    successes: tuple[int, int],
    totals: tuple[int, int],
    alpha: float,
) -> Comparison:
    """Two-proportion z-test of ``successes / totals``; ``names`` etc. are (treatment, control)."""
    (x_t, x_c), (n_t, n_c) = successes, totals
    statistic, p_value = proportions_ztest([x_t, x_c], [n_t, n_c])
    low, high = confint_proportions_2indep(x_t, n_t, x_c, n_c, method="wald", compare="diff", alpha=alpha)
    p_t, p_c = x_t / n_t, x_c / n_c
    relative = relative_ci = None
    if x_t > 0 and x_c > 0:
        r_low, r_high = confint_proportions_2indep(
            x_t, n_t, x_c, n_c, method="log", compare="ratio", alpha=alpha
        )
        relative, relative_ci = p_t / p_c - 1, (float(r_low) - 1, float(r_high) - 1)
    return Comparison(
        metric, "two-proportion z-test", names[1], names[0], n_c, n_t, p_c, p_t, p_t - p_c,
        (float(low), float(high)), relative, relative_ci, float(statistic), float(p_value), alpha,
    )  # fmt: skip


def compare_means(
    metric: str, names: tuple[str, str], treatment: np.ndarray, control: np.ndarray, alpha: float
) -> Comparison:
    """Welch's t-test of per-user values; ``names`` is (treatment, control)."""
    x_t, x_c = np.asarray(treatment, float), np.asarray(control, float)
    with np.errstate(divide="ignore", invalid="ignore"):  # both arms constant: NaN, never significant
        statistic, p_value, _df = ttest_ind(x_t, x_c, usevar="unequal")
        compared = CompareMeans(DescrStatsW(x_t), DescrStatsW(x_c))
        low, high = compared.tconfint_diff(alpha=alpha, usevar="unequal")
    m_t, m_c = float(x_t.mean()), float(x_c.mean())
    relative = relative_ci = None
    if m_t > 0 and m_c > 0:
        # delta method on log(m_t / m_c): var = s_t^2 / (n_t m_t^2) + s_c^2 / (n_c m_c^2)
        se = math.sqrt(x_t.var(ddof=1) / (len(x_t) * m_t**2) + x_c.var(ddof=1) / (len(x_c) * m_c**2))
        half = norm.isf(alpha / 2) * se
        ratio = m_t / m_c
        relative, relative_ci = ratio - 1, (ratio * math.exp(-half) - 1, ratio * math.exp(half) - 1)
    return Comparison(
        metric, "Welch's t-test", names[1], names[0], len(x_c), len(x_t), m_c, m_t, m_t - m_c,
        (float(low), float(high)), relative, relative_ci, float(statistic), float(p_value), alpha,
    )  # fmt: skip


@dataclass(frozen=True)
class SampleRatio:
    observed: dict[str, int]
    expected: dict[str, float]
    statistic: float
    p_value: float

    @property
    def mismatch(self) -> bool:
        return self.p_value < SRM_ALPHA

    def as_dict(self) -> dict[str, Any]:
        return asdict(self) | {"mismatch": self.mismatch, "threshold": SRM_ALPHA}


def sample_ratio_check(observed: dict[str, int], shares: dict[str, float]) -> SampleRatio:
    """Chi-square goodness of fit of users per variant against the configured shares."""
    names = [name for name in shares if shares[name] > 0]
    counts = np.array([observed.get(name, 0) for name in names], float)
    total = counts.sum()
    weights = np.array([shares[name] for name in names], float)
    expected = total * weights / weights.sum()
    if total == 0 or len(names) < 2:
        return SampleRatio(dict(observed), dict(zip(names, expected.tolist(), strict=True)), 0.0, 1.0)
    statistic, p_value = chisquare(counts, expected)
    return SampleRatio(
        {name: int(observed.get(name, 0)) for name in names},
        dict(zip(names, expected.tolist(), strict=True)),
        float(statistic),
        float(p_value),
    )


def effect_size(kind: str, baseline: float, sd: float | None, mde: float) -> float:
    """Cohen's h (proportions) or d = MDE / sd (means) of an absolute effect ``mde`` on ``baseline``."""
    if kind == PROPORTION:
        return abs(float(proportion_effectsize(min(baseline + mde, 1.0), baseline)))
    if not sd or sd <= 0:
        raise ValueError("a mean metric needs its per-user standard deviation for the power analysis")
    return abs(mde) / sd


def users_needed(
    kind: str, baseline: float, sd: float | None, mde: float, alpha: float, power: float, ratio: float = 1.0
) -> tuple[int, int]:
    """Users (control, treatment) to detect ``mde`` two-sided at ``alpha`` with ``power``;
    ``ratio`` = treatment users per control user (the shares' ratio)."""
    size = effect_size(kind, baseline, sd, mde)
    control = NormalIndPower().solve_power(effect_size=size, alpha=alpha, power=power, ratio=ratio)
    control = math.ceil(float(np.asarray(control).item()))
    return control, math.ceil(control * ratio)


def power_reached(
    kind: str, baseline: float, sd: float | None, mde: float, alpha: float, n_control: int, n_treatment: int
) -> float:
    """The power of the test, with these users, against an effect of ``mde``."""
    if n_control < 2 or n_treatment < 2:
        return 0.0
    size = effect_size(kind, baseline, sd, mde)
    return float(
        NormalIndPower().power(effect_size=size, nobs1=n_control, alpha=alpha, ratio=n_treatment / n_control)
    )
