"""Backfill: days of site history written to the topic as fast as the broker takes them.

No recommendation service is in the loop. History is what the site logged
while its own baseline recommender (``site-baseline:8082``, a global
popularity list) answered: every session starts with that reco line
(status 200, 20 ids), then the viewer's watch minutes and maybe a rating,
with simulated timestamps. Lines of all viewers are interleaved in time order,
one simulated hour at a time; a session that runs past the hour carries its
remaining lines into the next one.

With scenarios (simulator.director), the director decides per session what the
site looks like at that moment (taste drift, unreleased movies, the follow
knob), adds scripted sessions (a rating-spam ring) and damages or rewrites
lines on their way out (malformed lines, format drift); it has its own random
stream, so scenarios that only add lines leave the real lines as they were.
"""

from __future__ import annotations

import bisect
import logging
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

import numpy as np

from movierec.movielog import RateEvent, RecoEvent, WatchEvent, format_event
from simulator.director import Director, director_for_run
from simulator.history import History, Line, Scripted
from simulator.viewers import session

if TYPE_CHECKING:
    from simulator.injection_log import Record
    from simulator.scenarios import Scenarios

log = logging.getLogger(__name__)

BASELINE_SERVER = "site-baseline:8082"
# Share of a day's sessions starting in each hour: quiet at night, busy in the evening.
HOURLY_SHARE = np.array(
    [2, 1.5, 1, 0.7, 0.6, 0.7, 1.2, 2, 2.6, 3, 3.2, 3.5, 4, 4, 4, 4.2, 4.6, 5.4, 6.5, 7.6, 8.4, 8, 6.5, 4]
)
HOURLY_SHARE = HOURLY_SHARE / HOURLY_SHARE.sum()


def session_lines(
    rng: np.random.Generator, history: History, user_id: int, start: datetime, follow: float
) -> list[Line]:
    """All lines of one session: (time, user id, line)."""
    latency = int(rng.integers(15, 120))
    outcome = session(rng, history.audience, user_id, history.baseline, follow)
    lead = int(rng.integers(5_000, 90_000))
    rate_delay = int(rng.integers(1_000, 120_000)) if outcome.rating is not None else 0
    decided = Scripted(
        start, user_id, outcome.movie, outcome.minutes, outcome.rating, latency, lead, rate_delay
    )
    return scripted_lines(history, decided)


def scripted_lines(
    history: History, scripted: Scripted, shown: np.ndarray | None = None, server: str = BASELINE_SERVER
) -> list[Line]:
    """A reco line with the site's list (or ``shown``, movie indices, as ``server`` answered), the
    watch lines one minute apart, maybe a rating."""
    start, user_id = scripted.moment, scripted.user_id
    listed = history.baseline if shown is None else shown
    items = tuple(str(history.slugs[i]) for i in listed)
    reco = RecoEvent(start, user_id, server, 200, items, None, scripted.latency_ms)
    lines: list[Line] = [(start, user_id, format_event(reco))]
    slug = str(history.slugs[scripted.movie])
    first = start + timedelta(milliseconds=scripted.lead_ms)
    for minute in range(scripted.minutes):
        moment = first + timedelta(seconds=60 * minute)
        lines.append((moment, user_id, format_event(WatchEvent(moment, user_id, slug, minute))))
    if scripted.rating is not None:
        moment = first + timedelta(milliseconds=60_000 * scripted.minutes + scripted.rate_delay_ms)
        lines.append((moment, user_id, format_event(RateEvent(moment, user_id, slug, scripted.rating))))
    return lines


def history_lines(
    rng: np.random.Generator,
    history: History,
    start: datetime,
    days: float,
    sessions_per_day: int,
    follow: float = 0.5,
    director: Director | None = None,
) -> Iterator[Line]:
    """Every line of ``days`` of history from ``start``, in time order (scenarios played by ``director``).

    No line is later than the end (``start + days``): a session still running then is cut
    there, its later minutes and rating never written, as a log read at that moment would be.
    Live viewers (simulator.live) take over from the end with sessions of their own.
    """
    end = start + timedelta(days=days)
    pending: list[Line] = []  # lines of sessions still running
    hour_start = start
    while hour_start < end:
        hour_end = min(hour_start + timedelta(hours=1), end)  # the last hour may be a part of one
        span_ms = int((hour_end - hour_start) / timedelta(milliseconds=1))
        expected = sessions_per_day * HOURLY_SHARE[hour_start.hour] * span_ms / 3_600_000
        count = rng.poisson(expected)
        starts = np.sort(rng.integers(0, span_ms, count))  # milliseconds, as the site logs them
        users = history.draw_users(rng, count)
        for offset, user_id in zip(starts, users, strict=True):
            moment = hour_start + timedelta(milliseconds=int(offset))
            if director is None:
                pending += session_lines(rng, history, int(user_id), moment, follow)
            else:
                site, knob = director.stage(moment)
                pending += session_lines(rng, site, int(user_id), moment, knob)
        if director is not None:
            director.advance(hour_end)  # recorded before this hour's lines go out
            for scripted in director.scripted(hour_start, hour_end):
                pending += scripted_lines(director.stage(scripted.moment)[0], scripted)
        pending.sort(key=_by_time)  # one sort per hour is cheaper than a heap per line
        # up to the hour's end; at the very end, a line stamped exactly then too
        last = hour_end == end
        cut = (bisect.bisect_right if last else bisect.bisect_left)(pending, hour_end, key=_by_time)
        yield from _written(pending[:cut], director)
        del pending[:cut]
        hour_start = hour_end
    if pending:
        log.info("history ends at %s: %d later lines of running sessions not written", end, len(pending))
    if director is not None:
        director.finish(end)


def _written(lines: list[Line], director: Director | None) -> Iterator[Line]:
    """The lines as the site writes them: through the director's damage when scenarios play."""
    if director is None:
        yield from lines
        return
    for moment, user_id, line in lines:
        yield from director.damage(moment, user_id, line)  # real lines are always str


def _by_time(item: Line) -> datetime:
    return item[0]


def run_backfill(
    history: History,
    write: Callable[[str | bytes, int], None],
    *,
    seed: int,
    start: datetime,
    days: float,
    sessions_per_day: int,
    follow: float = 0.5,
    progress_every: float = 5.0,
    scenarios: Scenarios | None = None,
    record: Record | None = None,
) -> int:
    """Write the history through ``write(line, user_id)``; returns the number of lines.

    With ``scenarios``, what they did goes to ``record`` (the ground-truth log).
    """
    rng = np.random.default_rng(seed)
    director = director_for_run(
        scenarios, history, seed=seed, record=record, follow=follow, origin=start, mode="backfill"
    )
    written = 0
    began = time.monotonic()
    next_report = began + progress_every
    end = start + timedelta(days=days)
    for moment, user_id, line in history_lines(rng, history, start, days, sessions_per_day, follow, director):
        write(line, user_id)
        written += 1
        if written % 20_000 == 0 and time.monotonic() >= next_report:
            done = (moment - start) / (end - start)
            rate = written / (time.monotonic() - began)
            log.info("backfill %5.1f%%  at %s  %d lines  %.0f lines/s", 100 * done, moment, written, rate)
            next_report = time.monotonic() + progress_every
    log.info("backfill done: %d lines in %.1f s", written, time.monotonic() - began)
    return written
