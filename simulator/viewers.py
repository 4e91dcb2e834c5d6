"""How a simulated viewer behaves in one session: pick a movie, watch it, maybe rate it.

Pure functions of a random generator, the ground truth and the list the viewer
was shown; no I/O. Both the live mode (simulator.live) and the backfill
(simulator.backfill) turn these outcomes into movielog lines.

The choice model is what makes online metrics meaningful: every viewer browses,
sampling candidates by (a power of) popularity; a viewer looks at the shown list
with a probability that grows steeply with how well its top fits their true
taste (``follow`` scales it: the feedback-loop knob), and then weighs its titles
beside the browsed ones; either way they pick by noisily perceived taste.

Scenarios (simulator.director) change what viewers see without touching the
ground truth: an ``Audience`` may carry a per-movie affinity ``bonus`` (a genre
rising) and an ``available`` mask (movies not released yet are neither shown
nor browsable), and browsing popularity may differ from the catalog's.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from simulator.truth import Truth, affinity, enjoyment

# How viewers choose; the values are calibrated against real movie data (simulator.calibration,
# docs/architecture.md "Calibration"), never against our own model's score.
BROWSE_CANDIDATES = 50  # titles a browsing viewer looks at before choosing
BROWSE_POPULARITY_POWER = 0.5  # browsing samples titles by popularity ** power (< 1: flatter)
CHOICE_TEMPERATURE = 0.3  # lower: viewers pick what seems best more surely
PERCEPTION_NOISE = 0.5  # before watching, a viewer only guesses how much they will like a movie
LIST_FIT_TOP = 5  # the top of a list is what a viewer judges it by
LIST_FIT_POWER = 10.0  # a list is followed with probability follow * fit ** power
RATE_PROBABILITY = 0.12


@dataclass(frozen=True)
class Behaviour:
    """The knobs of the choice model (defaults: the calibrated values above)."""

    browse_candidates: int = BROWSE_CANDIDATES
    browse_popularity_power: float = BROWSE_POPULARITY_POWER
    choice_temperature: float = CHOICE_TEMPERATURE
    perception_noise: float = PERCEPTION_NOISE
    list_fit_power: float = LIST_FIT_POWER


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one session did."""

    movie: int  # index into the catalog
    from_list: bool  # chosen from the recommendations shown
    minutes: int  # minutes streamed: lines 0..minutes-1
    rating: int | None  # 1..5 if the viewer rated


@dataclass(frozen=True)
class Audience:
    """What the viewers need of the world, precomputed once."""

    truth: Truth
    runtimes: np.ndarray  # minutes, per movie index
    popularity_cdf: np.ndarray  # browsing samples titles by popularity
    bonus: np.ndarray | None = None  # per movie, added to the true affinity (taste drift)
    available: np.ndarray | None = None  # bool per movie; False: not released yet
    behaviour: Behaviour = Behaviour()

    @classmethod
    def build(
        cls,
        truth: Truth,
        runtimes: np.ndarray,
        popularity: np.ndarray,
        *,
        bonus: np.ndarray | None = None,
        available: np.ndarray | None = None,
        behaviour: Behaviour | None = None,
    ) -> Audience:
        behaviour = behaviour or Behaviour()
        weights = browse_weights(popularity, behaviour.browse_popularity_power)
        if available is not None:
            weights = np.where(available, weights, 0.0)  # an unreleased movie is never browsed
        cdf = np.cumsum(weights / weights.sum())
        cdf[-1] = 1.0
        return cls(truth, np.asarray(runtimes, dtype=np.int32), cdf, bonus, available, behaviour)


def browse_weights(popularity: np.ndarray, power: float = BROWSE_POPULARITY_POWER) -> np.ndarray:
    """How often browsing puts each movie in front of a viewer (relative): popularity ** power."""
    return np.asarray(popularity, dtype=np.float64) ** power


def taste(audience: Audience, user_id: int, movies: np.ndarray) -> np.ndarray:
    """How much the viewer likes ``movies`` now: the true affinity plus any scenario bonus."""
    scores = affinity(audience.truth, user_id, movies)
    if audience.bonus is not None:
        scores = scores + audience.bonus[movies]
    return scores


def _pick(
    rng: np.random.Generator, behaviour: Behaviour, scores: np.ndarray, bias: np.ndarray | None = None
) -> int:
    """A softmax choice among noisily perceived ``scores`` (optionally with a position bias)."""
    perceived = scores + rng.normal(0.0, behaviour.perception_noise, len(scores))
    logits = (perceived - perceived.max()) / behaviour.choice_temperature
    weights = np.exp(logits)
    if bias is not None:
        weights = weights * bias
    return int(rng.choice(len(scores), p=weights / weights.sum()))


def list_fit(audience: Audience, user_id: int, shown: np.ndarray) -> float:
    """0..1: how much the top of ``shown`` appeals to this viewer (mean true enjoyment)."""
    if len(shown) == 0:
        return 0.0
    top = shown[:LIST_FIT_TOP]
    return float(enjoyment(taste(audience, user_id, top)).mean())


def follow_probability(audience: Audience, user_id: int, shown: np.ndarray, follow: float) -> float:
    """How likely this viewer looks at ``shown`` at all: ``follow`` x fit ** power."""
    return follow * list_fit(audience, user_id, shown) ** audience.behaviour.list_fit_power


def choose(
    rng: np.random.Generator, audience: Audience, user_id: int, shown: np.ndarray, follow: float
) -> tuple[int, bool]:
    """The movie this viewer starts, and whether it came from the shown list.

    Every viewer browses; one who looks at the list (``follow_probability``) weighs its titles
    (with a position bias) beside the ones browsed and starts whichever seems best, so a list
    is taken when it holds something better than browsing found.
    """
    if audience.available is not None:
        shown = shown[audience.available[shown]]  # a listed movie that is not out yet cannot be started
    behaviour = audience.behaviour
    looks = len(shown) > 0 and rng.random() < follow_probability(audience, user_id, shown, follow)
    # side="right": a title of zero weight (not released) is never drawn
    draws = rng.random(behaviour.browse_candidates)
    candidates = np.searchsorted(audience.popularity_cdf, draws, side="right")
    if not looks:
        return int(candidates[_pick(rng, behaviour, taste(audience, user_id, candidates))]), False
    pool = np.concatenate([shown, candidates])
    bias = np.concatenate([1.0 / (1.0 + 0.15 * np.arange(len(shown))), np.ones(len(candidates))])
    pick = _pick(rng, behaviour, taste(audience, user_id, pool), bias)
    return int(pool[pick]), pick < len(shown)


def watch(rng: np.random.Generator, audience: Audience, user_id: int, movie: int) -> tuple[int, int | None]:
    """Minutes watched and an optional rating, both driven by true enjoyment plus noise."""
    joy = float(enjoyment(taste(audience, user_id, np.array([movie])))[0])
    share = float(np.clip(joy**1.5 + rng.normal(0.0, 0.12), 0.02, 1.0))
    minutes = max(1, round(int(audience.runtimes[movie]) * share))
    rating = None
    if rng.random() < RATE_PROBABILITY:
        rating = int(np.clip(round(1 + 4 * joy + rng.normal(0.0, 0.6)), 1, 5))
    return minutes, rating


def session(
    rng: np.random.Generator, audience: Audience, user_id: int, shown: np.ndarray, follow: float
) -> Outcome:
    """One viewing session of ``user_id`` who was shown ``shown`` (movie indices, best first)."""
    movie, from_list = choose(rng, audience, user_id, shown, follow)
    minutes, rating = watch(rng, audience, user_id, movie)
    return Outcome(movie, from_list, minutes, rating)
