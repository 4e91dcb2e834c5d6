"""Is the experiments' analysis honest? A/A false positives and power, on realistic per-user outcomes.

Evaluation only (reads the truth). The outcomes come from the simulator's own viewers, not from
Bernoulli draws: sessions arrive by user activity (heavy-tailed, as on the site), each viewer is
shown a list and picks, watches and stops as simulator.viewers decides, and each session becomes the
per-answer outcome the online metrics compute (a start of a listed movie, its minutes, all minutes;
in the simulator one session is one answer and its one viewing). Per user over the experiment:
the metrics of experiments.analysis.METRICS.

- **A/A**: users split at random into two groups that got the same list (the popularity top-20,
  the site's own); every analysis is the one experiments use (Welch's t-test per user, alpha 0.05).
  The share of significant results is the false-positive rate: it must be close to alpha.
- **power**: the design's sample size for the minimum detectable effect (from the same power
  analysis ``movierec experiment start`` runs, on these users' spread), then a planted effect of
  that size: in the treatment group each session is shown the user's true top-20 instead of the
  popularity list with the probability that raises the expected metric by exactly the MDE (a
  heterogeneous, realistic effect, not a shift of every user). The share detected is the power.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np

from experiments import analysis as stats
from simulator.history import History
from simulator.truth import true_top_k
from simulator.viewers import session

log = logging.getLogger(__name__)


@dataclass
class Pool:
    """Per session, under the control list (popularity) and under the better list (true top-20)."""

    user: np.ndarray  # user index in the pool, sessions grouped by user
    control: dict[str, np.ndarray]  # list_start (0/1), list_minutes, minutes
    better: dict[str, np.ndarray]
    first: np.ndarray  # per pool user: index of their first session (np.add.reduceat)
    users: int


def _outcome(movie: int, minutes: int, shown: np.ndarray) -> tuple[int, int, int]:
    listed = int(movie in set(shown.tolist()))
    return listed, minutes * listed, minutes


def build_pool(history: History, sessions: int, seed: int, follow: float = 0.5) -> Pool:
    """``sessions`` sessions drawn by activity (users come back as often as they do on the site),
    each played under both lists with independent viewers' randomness."""
    rng = np.random.default_rng(seed)
    drawn = np.sort(history.draw_users(rng, sessions))
    truth = history.audience.truth
    index_of = {str(slug): i for i, slug in enumerate(history.slugs)}
    control = np.zeros((sessions, 3), np.int64)
    better = np.zeros((sessions, 3), np.int64)
    best: dict[int, np.ndarray] = {}
    for n, user in enumerate(drawn.tolist()):
        if user not in best:
            best[user] = np.array([index_of[s] for s in true_top_k(truth, user)])
        for shown, out in ((history.baseline, control), (best[user], better)):
            outcome = session(rng, history.audience, user, shown, follow)
            out[n] = _outcome(outcome.movie, outcome.minutes, shown)
        if (n + 1) % 20_000 == 0:
            log.info("pool: %d of %d sessions", n + 1, sessions)
    first = np.flatnonzero(np.r_[True, drawn[1:] != drawn[:-1]])
    user = np.repeat(np.arange(len(first)), np.diff(np.r_[first, sessions]))
    names = ("list_start", "list_minutes", "minutes")
    return Pool(
        user,
        {name: control[:, i] for i, name in enumerate(names)},
        {name: better[:, i] for i, name in enumerate(names)},
        first,
        len(first),
    )


def per_user_metric(pool: Pool, outcome: dict[str, np.ndarray], users: np.ndarray, metric: str) -> np.ndarray:
    """The per-user value of ``metric`` (as experiments.population computes it) for pool ``users``."""
    counts = np.diff(np.r_[pool.first, len(pool.user)])
    if metric == "follow_rate":
        column = outcome["list_start"]
    elif metric == "followed_any":
        return (np.add.reduceat(outcome["list_start"], pool.first)[users] > 0).astype(float)
    else:
        column = outcome[metric.removesuffix("_per_answer")]
    return np.add.reduceat(column.astype(float), pool.first)[users] / counts[users]


def baseline(pool: Pool, metric: str) -> tuple[float, float]:
    values = per_user_metric(pool, pool.control, np.arange(pool.users), metric)
    return float(values.mean()), float(values.std(ddof=1))


def planted_effect_probability(pool: Pool, metric: str, mde: float) -> float:
    """The chance per session of the better list that raises the metric's mean by ``mde``."""
    everyone = np.arange(pool.users)
    gain = (
        per_user_metric(pool, pool.better, everyone, metric).mean()
        - per_user_metric(pool, pool.control, everyone, metric).mean()
    )
    if gain <= mde:
        raise ValueError(f"the true top-20 gains only {gain:.3f} on {metric}: cannot plant {mde}")
    return mde / gain


def _analyse(values_t: np.ndarray, values_c: np.ndarray, kind: str, alpha: float) -> float:
    if kind == stats.PROPORTION:
        result = stats.compare_proportions(
            "m", ("t", "c"), (int(values_t.sum()), int(values_c.sum())), (len(values_t), len(values_c)), alpha
        )
    else:
        result = stats.compare_means("m", ("t", "c"), values_t, values_c, alpha)
    return result.p_value


def repeat(
    pool: Pool,
    *,
    metric: str,
    users_per_variant: int,
    repeats: int,
    alpha: float,
    plant: float,
    seed: int,
) -> dict[str, Any]:
    """``repeats`` experiments of ``2 x users_per_variant`` pool users split at random (each user a
    fair coin, as the salt's hash does); with ``plant`` > 0, treatment sessions get the better list
    with that probability. The share of p < alpha, and the effects seen."""
    rng = np.random.default_rng(seed)
    kind = stats.METRICS[metric].kind
    significant, effects = 0, []
    for _ in range(repeats):
        chosen = rng.choice(pool.users, 2 * users_per_variant, replace=False)
        treated = rng.random(len(chosen)) < 0.5
        users_t, users_c = chosen[treated], chosen[~treated]
        outcome = pool.control
        if plant > 0:
            switch = rng.random(len(pool.user)) < plant
            outcome = {k: np.where(switch, pool.better[k], pool.control[k]) for k in pool.control}
        values_t = per_user_metric(pool, outcome, users_t, metric)
        values_c = per_user_metric(pool, pool.control, users_c, metric)
        significant += _analyse(values_t, values_c, kind, alpha) < alpha
        effects.append(values_t.mean() - values_c.mean())
    effects_array = np.array(effects)
    share = significant / repeats
    return {
        "repeats": repeats,
        "significant": int(significant),
        "share": share,
        "share_95ci": _wilson(significant, repeats),
        "mean_effect": float(effects_array.mean()),
        "effect_sd": float(effects_array.std(ddof=1)),
    }


def _wilson(successes: int, trials: int) -> tuple[float, float]:
    from statsmodels.stats.proportion import proportion_confint

    low, high = proportion_confint(successes, trials, alpha=0.05, method="wilson")
    return float(low), float(high)


def check(
    history: History,
    *,
    sessions: int,
    metric: str,
    mde: float,
    alpha: float = 0.05,
    power: float = 0.8,
    repeats: int = 1_000,
    seed: int = 11,
) -> dict[str, Any]:
    """The A/A false-positive rate and the power at the design's sample size for ``mde``."""
    pool = build_pool(history, sessions, seed)
    kind = stats.METRICS[metric].kind
    mean, sd = baseline(pool, metric)
    n_control, _ = stats.users_needed(kind, mean, sd, mde, alpha, power)
    if 2 * n_control > pool.users:
        raise ValueError(f"the design needs {2 * n_control} users; the pool has {pool.users}: more sessions")
    common = {"metric": metric, "users_per_variant": n_control, "repeats": repeats, "alpha": alpha}
    aa = repeat(pool, **common, plant=0.0, seed=seed + 1)
    try:
        plant = planted_effect_probability(pool, metric, mde)
    except ValueError as exc:  # the better list does not move this metric: nothing to plant
        powered, plant = {"skipped": str(exc)}, None
    else:
        powered = repeat(pool, **common, plant=plant, seed=seed + 2)
    return {
        "metric": metric,
        "pool": {"sessions": sessions, "users": pool.users, "mean": mean, "sd": sd},
        "design": {"mde": mde, "alpha": alpha, "power": power, "users_per_variant": n_control},
        "aa": aa,
        "power": powered | {"session_share_switched": plant},
    }
