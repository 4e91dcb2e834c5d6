"""Rating-spam (shilling) detection: pure functions over the lake's ``rate`` and ``watch_session`` rows.

A shilling ring pushes one target movie (or nukes it): a group of accounts rate it at the
extreme of the scale so that the model learns to recommend it (Lam & Riedl, "Shilling
recommender systems for fun and profit", WWW 2004). Two established signals, combined:

1. **Rater profile** (the attack-profile attributes of Chirita et al., "Preventing shilling
   attacks in online recommender systems", WIDM 2005, and Burke et al., "Classification
   features for recommender attack detection", 2006: target focus, extreme target rating,
   profile length). A rater of movie ``m`` in a window is *suspicious* when, in the window,
   ``m`` is the only movie the account touched (rated or watched: target focus), all its
   ratings of ``m`` are at one extreme (all 5: push, all 1: nuke), it watched less than
   ``max_minutes_per_rating`` of ``m`` per rating (an opinion without consumption, the
   "unverified review" signal of opinion-spam detection, Jindal & Liu, WSDM 2008), and it
   touched no other movie before the window (profile length: a new or single-purpose account).
2. **The target's own time series** (the burst detection of Zhang et al., "Detection of
   shilling attacks via time series", ICDM workshops 2006): the number of suspicious raters
   of ``m`` in the window against ``m``'s own daily counts of the previous days. The test is
   the posterior predictive of a Gamma-Poisson model (a negative binomial): with ``c`` such
   raters over ``n`` baseline days and a Gamma(``prior_count``, ``prior_days``) prior, the
   next day's count is NB(r = prior_count + c, p = (prior_days + n) / (prior_days + n + 1));
   the p-value is its upper tail at the window's count. Bonferroni over every movie with an
   interaction in the data (family-wise alpha), and at least ``min_accounts`` raters.

Organic viewers who are new, watch one movie and rate it 5 exist (most users here have one
or two interactions): they are the movie's baseline, which grows with its popularity, so a
popular movie needs a proportionally larger group. A window shorter than a day is tested
against the full-day baseline, which is conservative (a part of a day never holds more
raters than the whole day), so the same test serves partial days (time to detection).
Accounts flagged on earlier days are left out of the baseline, so a ring that keeps going
is not learned as the movie's normal.

Nothing here does I/O (``movierec.security.shilling_check`` reads the lake and writes flags).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

import pandas as pd
from scipy.stats import nbinom

PUSH, NUKE = "push", "nuke"
TOP, BOTTOM = 5, 1  # the extremes of the site's 1..5 scale


@dataclass(frozen=True)
class Rules:
    """The detector's parameters (see the module docstring)."""

    alpha: float = 0.01  # family-wise false-alarm rate per window (Bonferroni over movies)
    min_accounts: int = 5  # smallest ring worth flagging (an effect size, beside the p-value)
    # a rater who watched this much of the movie per rating gave an opinion of it (None: no limit);
    # in the simulated history, newcomers rating a movie 5 watched 24-120 minutes of it (one: 6)
    max_minutes_per_rating: float | None = 10.0
    baseline_days: int = 7  # days before the window whose counts form the target's history
    min_baseline_days: int = 2  # fewer days of history: no verdict (everyone looks new)
    prior_count: float = 1.0  # Gamma prior of the daily count: one rater ...
    prior_days: float = 1.0  # ... per day, worth one day of data


DEFAULT_RULES = Rules()


@dataclass(frozen=True)
class Account:
    """One account of a ring: its ratings of the target in the window and the minutes it watched of it."""

    user_id: int
    ratings: int
    minutes: int


@dataclass(frozen=True)
class Target:
    """A movie some ring pushes (or nukes) in the window, with the evidence."""

    movie_id: str
    direction: str  # push or nuke
    ring: tuple[Account, ...]  # the suspicious raters, by user id
    expected: float  # the baseline's predictive mean of suspicious raters for a day
    p_value: float
    ratings: int  # every rating of the movie in the window
    mean_rating: float
    ring_ratings: int  # of those, by the ring
    ring_minutes: int  # minutes the ring watched of it in the window
    history_ratings_per_day: float  # every rating of the movie, mean per baseline day
    history_mean_rating: float | None  # None: never rated in the baseline

    @property
    def accounts(self) -> tuple[int, ...]:
        return tuple(account.user_id for account in self.ring)


@dataclass(frozen=True)
class Verdict:
    """The detector's answer for one window."""

    start: datetime
    end: datetime
    status: str  # "ok" or "insufficient_history" (then never any target)
    baseline_days: tuple[date, ...]
    tested_movies: int
    threshold: float  # the per-movie p-value a target must be under (alpha / tested movies)
    suspicious_raters: int  # in the window, over every movie
    targets: tuple[Target, ...] = field(default=())

    @property
    def flagged_accounts(self) -> list[int]:
        return sorted({account for target in self.targets for account in target.accounts})


# --- the tables in ----------------------------------------------------------------------------

RATE_COLUMNS = ["time", "user_id", "movie_id", "rating"]
SESSION_COLUMNS = ["user_id", "movie_id", "first_time", "minutes_seen"]


def touches(rates: pd.DataFrame, sessions: pd.DataFrame) -> pd.DataFrame:
    """(user_id, movie_id, time) of every interaction: a rating at its time, a session at its start."""
    return pd.concat(
        [
            rates[["user_id", "movie_id", "time"]],
            sessions[["user_id", "movie_id", "first_time"]].rename(columns={"first_time": "time"}),
        ],
        ignore_index=True,
    )


def suspicious_raters(
    rates: pd.DataFrame, sessions: pd.DataFrame, start: datetime, end: datetime, rules: Rules = DEFAULT_RULES
) -> pd.DataFrame:
    """The suspicious raters of each movie in [start, end): one row per (user_id, movie_id) with
    direction, ratings, minutes. History is every row before ``start`` the frames hold."""
    columns = ["user_id", "movie_id", "direction", "ratings", "minutes"]
    everything = touches(rates, sessions)
    in_window = everything[(everything["time"] >= start) & (everything["time"] < end)]
    focused = in_window.groupby("user_id")["movie_id"].nunique()
    focused = focused[focused == 1].index
    window_rates = rates[(rates["time"] >= start) & (rates["time"] < end) & rates["user_id"].isin(focused)]
    if window_rates.empty:
        return pd.DataFrame(columns=columns)
    per_pair = window_rates.groupby(["user_id", "movie_id"])["rating"].agg(["min", "max", "size"])
    per_pair = per_pair.reset_index()
    per_pair["direction"] = None
    per_pair.loc[per_pair["min"] == TOP, "direction"] = PUSH
    per_pair.loc[per_pair["max"] == BOTTOM, "direction"] = NUKE
    per_pair = per_pair[per_pair["direction"].notna()]
    # profile length: no other movie before the window
    before = everything[(everything["time"] < start) & everything["user_id"].isin(per_pair["user_id"])]
    before = before.merge(per_pair[["user_id", "movie_id"]], on="user_id", suffixes=("", "_target"))
    busy = set(before.loc[before["movie_id"] != before["movie_id_target"], "user_id"])
    per_pair = per_pair[~per_pair["user_id"].isin(busy)]
    window_sessions = sessions[(sessions["first_time"] >= start) & (sessions["first_time"] < end)]
    minutes = window_sessions.groupby(["user_id", "movie_id"])["minutes_seen"].sum().rename("minutes")
    per_pair = per_pair.merge(minutes, on=["user_id", "movie_id"], how="left")
    per_pair["minutes"] = per_pair["minutes"].fillna(0).astype("int64")
    if rules.max_minutes_per_rating is not None:
        # over everything up to the window's end, so a viewing begun the evening before counts
        ever = watched_per_rating(rates, sessions, per_pair[["user_id", "movie_id"]], end)
        per_pair = per_pair[(ever < rules.max_minutes_per_rating).to_numpy()]
    return per_pair.rename(columns={"size": "ratings"})[columns].reset_index(drop=True)


def watched_per_rating(
    rates: pd.DataFrame, sessions: pd.DataFrame, pairs: pd.DataFrame, end: datetime
) -> pd.Series:
    """Minutes watched per rating given, of each (user_id, movie_id) of ``pairs``, before ``end``
    (in ``pairs``' order; every pair has at least one rating)."""
    keys = ["user_id", "movie_id"]
    seen = sessions[sessions["first_time"] < end].merge(pairs, on=keys)
    seen = seen.groupby(keys)["minutes_seen"].sum().rename("seen")
    given = rates[rates["time"] < end].merge(pairs, on=keys).groupby(keys).size().rename("given")
    both = pairs.merge(seen, on=keys, how="left").merge(given, on=keys, how="left")
    return both["seen"].fillna(0) / both["given"]


def day_start(day: date) -> datetime:
    return datetime(day.year, day.month, day.day)


def baseline_counts(
    rates: pd.DataFrame,
    sessions: pd.DataFrame,
    days: Sequence[date],
    exclude: Collection[int] = (),
    rules: Rules = DEFAULT_RULES,
) -> pd.DataFrame:
    """(movie_id, direction, day, raters): suspicious raters per movie on each of ``days`` (whole
    days), leaving out the accounts of ``exclude`` (flagged before)."""
    frames = []
    for day in days:
        found = suspicious_raters(rates, sessions, day_start(day), day_start(day) + timedelta(days=1), rules)
        found = found[~found["user_id"].isin(list(exclude))]
        counts = found.groupby(["movie_id", "direction"]).size().rename("raters").reset_index()
        frames.append(counts.assign(day=day))
    if not frames:
        return pd.DataFrame(columns=["movie_id", "direction", "day", "raters"])
    return pd.concat(frames, ignore_index=True)


def tail_p_value(count: int, history_total: float, history_days: int, rules: Rules) -> float:
    """P(X >= count) under the Gamma-Poisson posterior predictive of the baseline (module docstring)."""
    r = rules.prior_count + history_total
    p = (rules.prior_days + history_days) / (rules.prior_days + history_days + 1)
    return float(nbinom.sf(count - 1, r, p))


def baseline_days_before(start: datetime, present: Collection[date], rules: Rules) -> tuple[date, ...]:
    """The whole days before ``start``'s day (at most ``rules.baseline_days``) that hold data."""
    first = start.date()
    wanted = [first - timedelta(days=k) for k in range(rules.baseline_days, 0, -1)]
    return tuple(day for day in wanted if day in present)


def detect(
    rates: pd.DataFrame,
    sessions: pd.DataFrame,
    start: datetime,
    end: datetime,
    *,
    baseline: pd.DataFrame,
    baseline_days: Sequence[date],
    rules: Rules = DEFAULT_RULES,
) -> Verdict:
    """The rings of [start, end) (see the module docstring); ``baseline`` from ``baseline_counts``
    over ``baseline_days``. ``rates``/``sessions`` hold the window and the history before it."""
    everything = touches(rates, sessions)
    tested = int(everything.loc[everything["time"] < end, "movie_id"].nunique())
    threshold = rules.alpha / max(tested, 1)
    found = suspicious_raters(rates, sessions, start, end, rules)
    days = tuple(baseline_days)
    if len(days) < rules.min_baseline_days:
        return Verdict(start, end, "insufficient_history", days, tested, threshold, len(found))
    history = baseline.groupby(["movie_id", "direction"])["raters"].sum()
    window_rates = rates[(rates["time"] >= start) & (rates["time"] < end)]
    day_starts = [day_start(day) for day in baseline_days]
    history_rates = rates[
        (rates["time"] >= min(day_starts)) & (rates["time"] < max(day_starts) + timedelta(days=1))
    ]
    targets = []
    for (movie, direction), ring in found.groupby(["movie_id", "direction"]):
        if len(ring) < rules.min_accounts:
            continue
        total = float(history.get((movie, direction), 0.0))
        p_value = tail_p_value(len(ring), total, len(baseline_days), rules)
        if p_value >= threshold:
            continue
        of_movie = window_rates[window_rates["movie_id"] == movie]
        before = history_rates.loc[history_rates["movie_id"] == movie, "rating"]
        targets.append(
            Target(
                movie_id=str(movie),
                direction=str(direction),
                ring=tuple(
                    Account(int(row.user_id), int(row.ratings), int(row.minutes))
                    for row in ring.sort_values("user_id").itertuples()
                ),
                expected=(rules.prior_count + total) / (rules.prior_days + len(baseline_days)),
                p_value=p_value,
                ratings=len(of_movie),
                mean_rating=float(of_movie["rating"].mean()),
                ring_ratings=int(ring["ratings"].sum()),
                ring_minutes=int(ring["minutes"].sum()),
                history_ratings_per_day=len(before) / len(baseline_days),
                history_mean_rating=None if before.empty else float(before.mean()),
            )
        )
    targets.sort(key=lambda t: (t.p_value, t.movie_id))
    return Verdict(start, end, "ok", days, tested, threshold, len(found), tuple(targets))
