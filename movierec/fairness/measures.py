"""Fairness measures, pure: per-group quality against the rest of the users, and exposure of movie
segments in lists against their share of what viewers choose.

Unit of analysis: the user. Every measure is a ratio of sums over users, ``sum(y_i) / sum(x_i)``
(list minutes / answers, hits / users, tail slots / slots, tail viewings / viewings), so a heavy
user weighs by what they did while the uncertainty is counted per user (their answers or slots are
not independent). Confidence intervals: the delta method for a ratio estimator (cluster-robust
linearisation, Cochran 1977 ch. 6): ``se = sqrt(sum((y_i - R x_i)^2) / (n (n - 1))) / mean(x)``;
the ratio of two independent estimates A / B on the log scale,
``log(A / B) ± z sqrt((se_A / A)^2 + (se_B / B)^2)``. Two-sided, alpha 0.05 by default.

A requirement is *breached* when the whole interval lies below its threshold (the upper bound is
below it): a group or segment is reported as under the line only with evidence, at most alpha / 2
false alarms per compared group when it is in fact at the threshold.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from datetime import date
from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import norm

ALPHA = 0.05
QUALITY_RATIO = 0.8  # a group's quality at least 4/5 of the other users' (the four-fifths rule)
EXPOSURE_RATIO = 0.5  # a segment's share of list slots at least half its share of what viewers choose
MIN_USERS = 30  # groups with fewer users are listed, not judged
HEAD_SHARE = 0.8  # the head: the most chosen movies that together make 80% of choices; the rest is the tail
OLDER_YEARS = 20  # "older films": released at least this many years before the measured window ends
TOP_LANGUAGES = 5  # languages reported one by one (by share of choices); the rest as "other"
UNKNOWN = "unknown"
ATTRIBUTES = ("gender", "age_band", "occupation")  # the catalog's protected and sensitive attributes
# The catalog's age bands (MovieLens' own); prepare spells its Spark column from these too.
AGE_BANDS = ((18, "under 18"), (25, "18-24"), (35, "25-34"), (45, "35-44"), (50, "45-49"), (56, "50-55"))
OLDEST_BAND = "56+"


@dataclass(frozen=True)
class Estimate:
    """A ratio of sums over users with its interval."""

    value: float | None
    low: float | None
    high: float | None
    users: int

    def asdict(self) -> dict[str, Any]:
        return asdict(self)


def ratio_of_sums(y: Iterable[float], x: Iterable[float], alpha: float = ALPHA) -> Estimate:
    """``sum(y) / sum(x)`` over users (one entry each) with its delta-method interval."""
    ys, xs = np.asarray(list(y), np.float64), np.asarray(list(x), np.float64)
    n = len(ys)
    if n == 0 or xs.sum() <= 0:
        return Estimate(None, None, None, n)
    ratio = ys.sum() / xs.sum()
    if n < 2:
        return Estimate(float(ratio), None, None, n)
    residual = ys - ratio * xs
    se = math.sqrt(float((residual**2).sum()) / (n * (n - 1))) / xs.mean()
    z = norm.ppf(1 - alpha / 2)
    return Estimate(float(ratio), float(ratio - z * se), float(ratio + z * se), n)


def standard_error(estimate: Estimate, alpha: float = ALPHA) -> float | None:
    if estimate.low is None or estimate.high is None:
        return None
    return (estimate.high - estimate.low) / (2 * norm.ppf(1 - alpha / 2))


def ratio_of_estimates(a: Estimate, b: Estimate, alpha: float = ALPHA) -> Estimate:
    """``a / b`` of two independent estimates, interval on the log scale. ``a`` of 0 has the
    interval [0, upper bound of a / b]; an undefined or zero ``b`` gives no estimate."""
    if a.value is None or b.value is None or b.value <= 0:
        return Estimate(None, None, None, a.users)
    se_a, se_b = standard_error(a, alpha), standard_error(b, alpha)
    value = a.value / b.value
    if se_a is None or se_b is None:
        return Estimate(value, None, None, a.users)
    if a.value <= 0:
        return Estimate(0.0, 0.0, max(a.high or 0.0, 0.0) / b.value, a.users)
    z = norm.ppf(1 - alpha / 2)
    spread = z * math.sqrt((se_a / a.value) ** 2 + (se_b / b.value) ** 2)
    return Estimate(value, value * math.exp(-spread), value * math.exp(spread), a.users)


def breached(estimate: Estimate, threshold: float) -> bool:
    """The whole interval below the threshold."""
    return estimate.high is not None and estimate.high < threshold


# --- groups of users --------------------------------------------------------------------------


def age_band(ages: pd.Series) -> pd.Series:
    """The catalog's age bands; a missing age is "unknown"."""
    bands = pd.Series(OLDEST_BAND, index=ages.index, dtype="object")
    for below, name in reversed(AGE_BANDS):
        bands[ages < below] = name
    bands[ages.isna()] = UNKNOWN
    return bands


def user_groups(users: pd.DataFrame) -> pd.DataFrame:
    """(user_id -> gender, age_band, occupation) from the catalog's ``users`` rows; the newest row
    of a user wins, a value the catalog left empty is "unknown"."""
    if "fetched_at" in users:
        users = users.sort_values("fetched_at")
    users = users.drop_duplicates("user_id", keep="last").set_index("user_id")
    return pd.DataFrame(
        {
            "gender": users["gender"].fillna(UNKNOWN).astype(str),
            "age_band": age_band(users["age"].astype("float64")),
            "occupation": users["occupation"].fillna(UNKNOWN).astype(str),
        },
        index=users.index,
    )


def quality_by_group(
    per_user: pd.DataFrame,
    groups: pd.DataFrame,
    *,
    threshold: float = QUALITY_RATIO,
    min_users: int = MIN_USERS,
    alpha: float = ALPHA,
) -> dict[str, Any]:
    """Each group's quality against the rest of the users.

    ``per_user``: indexed by user, columns ``y`` and ``x`` (the quality is ``sum y / sum x``);
    ``groups``: indexed by user, one column per attribute (users missing there are "unknown").
    Per attribute and level: the level's estimate, the rest's, their ratio with its interval, and
    whether it breaches ``threshold``; per attribute the smallest judged ratio."""
    frame = per_user.join(groups, how="left")
    overall = ratio_of_sums(frame["y"], frame["x"], alpha)
    result: dict[str, Any] = {"overall": overall.asdict(), "threshold": threshold, "attributes": {}}
    for attribute in groups.columns:
        levels = frame[attribute].fillna(UNKNOWN).astype(str)
        rows = []
        for level in sorted(levels.unique()):
            inside = (levels == level).to_numpy()
            group = ratio_of_sums(frame["y"][inside], frame["x"][inside], alpha)
            rest = ratio_of_sums(frame["y"][~inside], frame["x"][~inside], alpha)
            ratio = ratio_of_estimates(group, rest, alpha)
            judged = level != UNKNOWN and group.users >= min_users and ratio.value is not None
            rows.append(
                {
                    "group": level,
                    "estimate": group.asdict(),
                    "rest": rest.asdict(),
                    "ratio": ratio.asdict(),
                    "judged": judged,
                    "breached": judged and breached(ratio, threshold),
                }
            )
        judged_ratios = [r["ratio"]["value"] for r in rows if r["judged"]]
        result["attributes"][attribute] = {
            "groups": rows,
            "min_ratio": min(judged_ratios) if judged_ratios else None,
            "breached": any(r["breached"] for r in rows),
        }
    result["breached"] = any(a["breached"] for a in result["attributes"].values())
    result["judged"] = sum(row["judged"] for a in result["attributes"].values() for row in a["groups"])
    return result


# --- segments of movies -------------------------------------------------------------------------


def long_tail(counts: pd.Series, head_share: float = HEAD_SHARE) -> set[str]:
    """The head: the most chosen movies that together make ``head_share`` of all choices (ties by
    id, so the split is reproducible); every other movie of ``counts`` is in the tail."""
    ordered = counts[counts > 0].sort_index().sort_values(ascending=False, kind="stable")
    total = ordered.sum()
    if total <= 0:
        return set(counts.index)
    before = ordered.cumsum() - ordered  # choices of the movies ranked above each one
    head = set(ordered.index[before < head_share * total])
    return set(counts.index) - head


def long_tail_mask(counts: np.ndarray, head_share: float = HEAD_SHARE) -> np.ndarray:
    """``long_tail`` over an array indexed by movie index: True where the movie is in the tail."""
    tail = long_tail(pd.Series(np.asarray(counts, np.float64)), head_share)
    mask = np.zeros(len(counts), dtype=bool)
    mask[sorted(tail)] = True
    return mask


def movie_segments(
    movies: pd.DataFrame,
    choice_counts: pd.Series,
    window_end: date,
    *,
    head_share: float = HEAD_SHARE,
    older_years: int = OLDER_YEARS,
    top_languages: int = TOP_LANGUAGES,
) -> pd.DataFrame:
    """Per movie id (the catalog's and every chosen one): boolean columns ``long_tail``, ``older``
    and ``lang:<code>`` (the ``top_languages`` most chosen original languages, the rest
    ``lang:other``; a movie the catalog does not know has no language and is not older)."""
    movies = movies.drop_duplicates("id", keep="last").set_index("id")
    ids = movies.index.union(choice_counts.index)
    counts = choice_counts.reindex(ids, fill_value=0)
    cutoff = pd.Timestamp(window_end.replace(year=window_end.year - older_years))
    released = pd.to_datetime(movies["release_date"]).reindex(ids)
    language = movies["original_language"].reindex(ids).fillna(UNKNOWN).astype(str)
    by_language = counts.groupby(language).sum().sort_values(ascending=False, kind="stable")
    named = [code for code in by_language.index if code != UNKNOWN][:top_languages]
    tail = long_tail(counts, head_share)
    segments = pd.DataFrame(index=ids)
    segments["long_tail"] = segments.index.isin(list(tail))
    segments["older"] = (released < cutoff).fillna(False).astype(bool).to_numpy()
    for code in named:
        segments[f"lang:{code}"] = (language == code).to_numpy()
    segments["lang:other"] = (~language.isin(named)).to_numpy()
    return segments


def segment_shares(pairs: pd.DataFrame, segments: pd.DataFrame, alpha: float = ALPHA) -> dict[str, Estimate]:
    """Per segment: the share of ``pairs`` (user_id, movie_id: one row per list slot or per
    viewing) whose movie is in it, over users. A movie missing from ``segments`` is in none."""
    if pairs.empty:
        return {name: Estimate(None, None, None, 0) for name in segments.columns}
    flags = segments.reindex(pairs["movie_id"].to_numpy(), fill_value=False).to_numpy(dtype=np.float64)
    per_user = (
        pd.DataFrame(flags, columns=segments.columns)
        .assign(user_id=pairs["user_id"].to_numpy(), x=1.0)
        .groupby("user_id")
        .sum()
    )
    return {name: ratio_of_sums(per_user[name], per_user["x"], alpha) for name in segments.columns}


def exposure(
    slots: pd.DataFrame,
    choices: pd.DataFrame,
    segments: pd.DataFrame,
    *,
    judged: Iterable[str] = ("long_tail", "older"),
    threshold: float = EXPOSURE_RATIO,
    alpha: float = ALPHA,
) -> dict[str, Any]:
    """Per segment: share of list slots, share of choices, their ratio with its interval, and
    (for the ``judged`` segments) whether it breaches ``threshold``."""
    slot_shares = segment_shares(slots, segments, alpha)
    choice_shares = segment_shares(choices, segments, alpha)
    judged = set(judged)
    rows = {}
    for name in segments.columns:
        ratio = ratio_of_estimates(slot_shares[name], choice_shares[name], alpha)
        rows[name] = {
            "slot_share": slot_shares[name].asdict(),
            "choice_share": choice_shares[name].asdict(),
            "ratio": ratio.asdict(),
            "judged": name in judged,
            "breached": name in judged and breached(ratio, threshold),
        }
    return {
        "threshold": threshold,
        "slots": len(slots),
        "choices": len(choices),
        "segments": rows,
        "breached": any(r["breached"] for r in rows.values()),
    }
