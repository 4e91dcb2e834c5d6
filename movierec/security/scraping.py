"""Scraping of ``/recommend`` found in our own telemetry: pure functions over pandas frames, no I/O.

What we answered (the ``served`` table: provenance records, each naming its client) against what
the site asked (the movielog's recommendation request lines, the ``reco`` table). The site logs
every request its own client made, answered or not; a scraper's requests never reach the site's
log. So a scraper shows as (docs/security-serving.md):

- **unlogged answers**: served records with no site line for the same user within ``tolerance``
  (the matching of the online metrics: the site stamps its line by its own clock and zone);
- **at a high rate**: at least ``min_rate`` per second from one client within a ``window``;
- **on consecutive user ids**: of the client's successive unlogged answers in the window, at
  least ``min_consecutive`` step to a user id within ``max_step`` of the previous one (an
  enumeration; the site's own users arrive in random order, about 1 in 1,000 steps that short
  on a site of a million users).

Windows that meet all three are flagged; flagged windows of one client no more than one window
apart form one incident: which client, from when to when, how many answers, which ids.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

import numpy as np
import pandas as pd

from movierec.online.outcomes import site_time_to_utc

SERVED_COLUMNS = ["time", "user_id", "client", "status"]
RECO_COLUMNS = ["time", "user_id"]
UNKNOWN_CLIENT = "unknown"  # records written before the service named the client
WINDOW_COLUMNS = [
    "client", "window_start", "answers", "users", "consecutive_share", "rate", "first_user", "last_user",
]  # fmt: skip
INCIDENT_COLUMNS = [
    "client", "start", "end", "detected_at", "answers", "windows", "peak_rate", "first_user", "last_user",
]  # fmt: skip


@dataclass(frozen=True)
class Thresholds:
    window_seconds: float = 60.0
    min_rate: float = 0.25  # unlogged answers per second from one client in a window
    max_step: int = 1_000  # a step between successive ids this short counts as consecutive
    min_consecutive: float = 0.5  # share of consecutive steps in a window
    tolerance_seconds: float = 60.0  # a served record and the site's line of it: at most this apart

    def __post_init__(self) -> None:
        if self.window_seconds <= 0 or self.min_rate <= 0 or self.max_step < 1:
            raise ValueError("window_seconds and min_rate must be > 0, max_step >= 1")
        if not 0 < self.min_consecutive <= 1 or self.tolerance_seconds < 0:
            raise ValueError("min_consecutive must be in (0, 1], tolerance_seconds >= 0")


def unlogged_answers(
    served: pd.DataFrame, reco: pd.DataFrame, tolerance: timedelta, timezone: str
) -> pd.DataFrame:
    """The served answers (status 200, a user id) with no site line of the same user within
    ``tolerance``; columns time (UTC), user_id, client. ``reco`` times are the site's local times."""
    answers = served[(served["status"] == 200) & served["user_id"].notna()]
    left = pd.DataFrame(
        {
            "time": pd.to_datetime(answers["time"], utc=True).astype("datetime64[ns, UTC]").to_numpy(),
            "user_id": answers["user_id"].astype("int64").to_numpy(),
            "client": answers["client"].fillna(UNKNOWN_CLIENT).astype(str).to_numpy(),
        }
    )
    if left.empty or reco.empty:
        return left
    right = pd.DataFrame(
        {
            "time": site_time_to_utc(reco["time"], timezone).astype("datetime64[ns, UTC]").to_numpy(),
            "user_id": reco["user_id"].astype("int64").to_numpy(),
        }
    ).dropna(subset=["time"])
    right["logged"] = True
    matched = pd.merge_asof(
        left.sort_values("time"),
        right.sort_values("time"),
        on="time",
        by="user_id",
        direction="nearest",
        tolerance=pd.Timedelta(tolerance),
    )
    return matched[matched["logged"].isna()].drop(columns="logged").reset_index(drop=True)


def window_stats(unlogged: pd.DataFrame, thresholds: Thresholds) -> pd.DataFrame:
    """One row per (client, window) with unlogged answers: counts, rate, share of consecutive steps."""
    if unlogged.empty:
        return pd.DataFrame(columns=WINDOW_COLUMNS)
    width = pd.Timedelta(seconds=thresholds.window_seconds)
    frame = unlogged.sort_values(["client", "time"], kind="stable").reset_index(drop=True)
    origin = pd.Timestamp(0, tz="UTC")
    frame["window_start"] = origin + ((frame["time"] - origin) // width) * width
    ids = frame["user_id"].to_numpy()
    same = (frame["client"].to_numpy()[1:] == frame["client"].to_numpy()[:-1]) & (
        frame["window_start"].to_numpy()[1:] == frame["window_start"].to_numpy()[:-1]
    )
    short = np.abs(np.diff(ids)) <= thresholds.max_step
    # a step belongs to the window of its second answer; the first answer of a window has none
    frame["step"] = np.concatenate([[False], same])
    frame["short"] = np.concatenate([[False], same & short])
    groups = frame.groupby(["client", "window_start"], sort=True)
    stats = groups.agg(
        answers=("user_id", "size"),
        users=("user_id", "nunique"),
        steps=("step", "sum"),
        shorts=("short", "sum"),
        first_user=("user_id", "min"),
        last_user=("user_id", "max"),
    ).reset_index()
    stats["consecutive_share"] = np.where(
        stats["steps"] > 0, stats["shorts"] / stats["steps"].clip(lower=1), 0.0
    )
    stats["rate"] = stats["answers"] / thresholds.window_seconds
    return stats[WINDOW_COLUMNS]


def flag(windows: pd.DataFrame, thresholds: Thresholds) -> pd.Series:
    """Which windows look like scraping: a high rate of unlogged answers on consecutive ids."""
    return (windows["rate"] >= thresholds.min_rate) & (
        windows["consecutive_share"] >= thresholds.min_consecutive
    )


def incidents(windows: pd.DataFrame, thresholds: Thresholds) -> pd.DataFrame:
    """Flagged windows of a client joined while at most one window apart: one row per incident.
    ``detected_at``: the end of its first flagged window, the earliest the data shows it."""
    flagged = windows[flag(windows, thresholds)].sort_values(["client", "window_start"])
    if flagged.empty:
        return pd.DataFrame(columns=INCIDENT_COLUMNS)
    width = pd.Timedelta(seconds=thresholds.window_seconds)
    gap = flagged.groupby("client")["window_start"].diff()
    flagged = flagged.assign(incident=(gap.isna() | (gap > 2 * width)).cumsum())
    rows = flagged.groupby("incident").agg(
        client=("client", "first"),
        start=("window_start", "min"),
        last_window=("window_start", "max"),
        answers=("answers", "sum"),
        windows=("answers", "size"),
        peak_rate=("rate", "max"),
        first_user=("first_user", "min"),
        last_user=("last_user", "max"),
    )
    rows["end"] = rows["last_window"] + width
    rows["detected_at"] = rows["start"] + width
    return rows.reset_index(drop=True)[INCIDENT_COLUMNS]


@dataclass
class Detection:
    unlogged: int  # answers the site never logged, all clients
    windows: pd.DataFrame  # WINDOW_COLUMNS, with a "flagged" column
    incidents: pd.DataFrame  # INCIDENT_COLUMNS


def detect(served: pd.DataFrame, reco: pd.DataFrame, thresholds: Thresholds, timezone: str) -> Detection:
    """The whole detector: unlogged answers -> windows per client -> incidents."""
    tolerance = timedelta(seconds=thresholds.tolerance_seconds)
    unlogged = unlogged_answers(served, reco, tolerance, timezone)
    windows = window_stats(unlogged, thresholds)
    windows = windows.assign(flagged=flag(windows, thresholds).astype(bool))
    return Detection(len(unlogged), windows, incidents(windows, thresholds))
