"""Backfill: days of site history written to the topic as fast as the broker takes them.

No recommendation service is in the loop. History is what the site logged
while its own baseline recommender (``site-baseline:8082``, a global
popularity list) answered: every session starts with that reco line
(status 200, 20 ids), then the viewer's watch minutes and maybe a rating,
with simulated timestamps. Lines of all viewers are interleaved in time order,
one simulated hour at a time; a session that runs past the hour carries its
remaining lines into the next one.
"""

from __future__ import annotations

import bisect
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np

from movierec.movielog import RateEvent, RecoEvent, WatchEvent, format_event
from simulator.catalog import World
from simulator.truth import Truth
from simulator.viewers import Audience, session

log = logging.getLogger(__name__)

BASELINE_SERVER = "site-baseline:8082"
# Share of a day's sessions starting in each hour: quiet at night, busy in the evening.
HOURLY_SHARE = np.array(
    [2, 1.5, 1, 0.7, 0.6, 0.7, 1.2, 2, 2.6, 3, 3.2, 3.5, 4, 4, 4, 4.2, 4.6, 5.4, 6.5, 7.6, 8.4, 8, 6.5, 4]
)
HOURLY_SHARE = HOURLY_SHARE / HOURLY_SHARE.sum()


@dataclass(frozen=True)
class History:
    """What a backfill needs: the audience, the catalog's ids, and who is active."""

    audience: Audience
    slugs: np.ndarray  # movie id per movie index (str)
    activity_cdf: np.ndarray  # sessions are drawn from users (id = index + 1) by activity
    baseline: np.ndarray  # movie indices of the site's popularity list

    @classmethod
    def build(cls, world: World, truth: Truth) -> History:
        audience = Audience.build(truth, world.runtime, world.popularity)
        weights = np.asarray(truth.activity, dtype=np.float64)
        cdf = np.cumsum(weights / weights.sum())
        cdf[-1] = 1.0
        baseline = np.argsort(-np.asarray(world.popularity), kind="stable")[:20]
        return cls(audience, world.movie_ids, cdf, baseline)

    def draw_users(self, rng: np.random.Generator, count: int) -> np.ndarray:
        """``count`` user ids, each drawn with probability proportional to activity."""
        return np.searchsorted(self.activity_cdf, rng.random(count)) + 1


def session_lines(
    rng: np.random.Generator, history: History, user_id: int, start: datetime, follow: float
) -> list[tuple[datetime, int, str]]:
    """All lines of one session: (time, user id, line)."""
    shown = history.baseline
    items = tuple(str(history.slugs[i]) for i in shown)
    latency = int(rng.integers(15, 120))
    lines = [
        (start, user_id, format_event(RecoEvent(start, user_id, BASELINE_SERVER, 200, items, None, latency)))
    ]
    outcome = session(rng, history.audience, user_id, shown, follow)
    slug = str(history.slugs[outcome.movie])
    first = start + timedelta(milliseconds=int(rng.integers(5_000, 90_000)))
    for minute in range(outcome.minutes):
        moment = first + timedelta(seconds=60 * minute)
        lines.append((moment, user_id, format_event(WatchEvent(moment, user_id, slug, minute))))
    if outcome.rating is not None:
        moment = first + timedelta(milliseconds=60_000 * outcome.minutes + int(rng.integers(1_000, 120_000)))
        lines.append((moment, user_id, format_event(RateEvent(moment, user_id, slug, outcome.rating))))
    return lines


def history_lines(
    rng: np.random.Generator,
    history: History,
    start: datetime,
    days: float,
    sessions_per_day: int,
    follow: float = 0.5,
) -> Iterator[tuple[datetime, int, str]]:
    """Every line of ``days`` of history from ``start``, in time order."""
    pending: list[tuple[datetime, int, str]] = []  # lines of sessions still running
    hours = round(days * 24)
    for hour in range(hours):
        hour_start = start + timedelta(hours=hour)
        hour_end = hour_start + timedelta(hours=1)
        count = rng.poisson(sessions_per_day * HOURLY_SHARE[hour_start.hour])
        starts = np.sort(rng.integers(0, 3_600_000, count))  # milliseconds, as the site logs them
        users = history.draw_users(rng, count)
        for offset, user_id in zip(starts, users, strict=True):
            moment = hour_start + timedelta(milliseconds=int(offset))
            pending += session_lines(rng, history, int(user_id), moment, follow)
        pending.sort(key=_by_time)  # one sort per hour is cheaper than a heap per line
        cut = bisect.bisect_left(pending, hour_end, key=_by_time)
        yield from pending[:cut]
        del pending[:cut]
    yield from pending


def _by_time(item: tuple[datetime, int, str]) -> datetime:
    return item[0]


def run_backfill(
    history: History,
    write: Callable[[str, int], None],
    *,
    seed: int,
    start: datetime,
    days: float,
    sessions_per_day: int,
    follow: float = 0.5,
    progress_every: float = 5.0,
) -> int:
    """Write the history through ``write(line, user_id)``; returns the number of lines."""
    rng = np.random.default_rng(seed)
    written = 0
    began = time.monotonic()
    next_report = began + progress_every
    end = start + timedelta(days=days)
    for moment, user_id, line in history_lines(rng, history, start, days, sessions_per_day, follow):
        write(line, user_id)
        written += 1
        if written % 20_000 == 0 and time.monotonic() >= next_report:
            done = (moment - start) / (end - start)
            rate = written / (time.monotonic() - began)
            log.info("backfill %5.1f%%  at %s  %d lines  %.0f lines/s", 100 * done, moment, written, rate)
            next_report = time.monotonic() + progress_every
    log.info("backfill done: %d lines in %.1f s", written, time.monotonic() - began)
    return written
