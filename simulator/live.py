"""Live mode: viewers arrive in real time, ask our service, and their lines go to Kafka.

Sessions arrive as a Poisson process whose rate follows the daily cycle and is
set so the site writes about ``lines_per_second`` lines on average. Each
session first asks the recommendation service through the site's request
client (800 ms budget) and logs the outcome; the viewer then picks a movie
(from the list if it fits their taste, see simulator.viewers) and streams it,
one ``GET /data/m/...`` line per minute as the minutes pass. Lines of all
viewers go out in time order, stamped when they are written.
"""

from __future__ import annotations

import asyncio
import heapq
import logging
from collections.abc import Callable
from datetime import datetime

import httpx
import numpy as np

from movierec.movielog import RateEvent, WatchEvent, format_event
from simulator.backfill import HOURLY_SHARE, History
from simulator.client import ask, to_event
from simulator.viewers import session

log = logging.getLogger(__name__)

MEAN_LINES_PER_SESSION = 45.0  # measured on the default world; sets the session rate
MAX_CONCURRENT_REQUESTS = 200


class Clock:
    """Wall time, injectable so tests can run a day in seconds."""

    def now(self) -> datetime:
        return datetime.now()


async def run_live(
    history: History,
    write: Callable[[str, int], None],
    service_url: str,
    *,
    seed: int,
    lines_per_second: float = 50.0,
    follow: float = 0.5,
    minute_seconds: float = 60.0,
    stop: asyncio.Event | None = None,
    clock: Clock | None = None,
) -> dict[str, int]:
    """Run viewers until ``stop`` is set; returns counts of what was written."""
    rng = np.random.default_rng(seed)
    clock = clock or Clock()
    stop = stop or asyncio.Event()
    index_of = {str(slug): i for i, slug in enumerate(history.slugs)}
    due: list[tuple[float, int, str, int, int]] = []  # (at, seq, kind, user, movie/minute payload)
    counts = {"sessions": 0, "reco_ok": 0, "reco_failed": 0, "lines": 0}
    loop = asyncio.get_running_loop()
    limiter = asyncio.Semaphore(MAX_CONCURRENT_REQUESTS)
    sequence = 0

    def emit(line: str, user_id: int) -> None:
        write(line, user_id)
        counts["lines"] += 1

    async def one_session(http: httpx.AsyncClient, user_id: int) -> None:
        nonlocal sequence
        async with limiter:
            answer = await ask(http, service_url, user_id)
        emit(format_event(to_event(clock.now(), user_id, service_url, answer)), user_id)
        counts["reco_ok" if answer.status == 200 else "reco_failed"] += 1
        shown = np.array([index_of[s] for s in answer.items if s in index_of], dtype=np.int64)
        outcome = session(rng, history.audience, user_id, shown, follow)
        begin = loop.time() + float(rng.uniform(0.1, 1.5)) * minute_seconds  # finding the title
        for minute in range(outcome.minutes):
            sequence += 1
            heapq.heappush(
                due,
                (
                    begin + minute * minute_seconds,
                    sequence,
                    "watch",
                    user_id,
                    outcome.movie * 10_000 + minute,
                ),
            )
        if outcome.rating is not None:
            sequence += 1
            at = begin + outcome.minutes * minute_seconds
            heapq.heappush(due, (at, sequence, "rate", user_id, outcome.movie * 10 + outcome.rating))

    def flush_due() -> None:
        now = loop.time()
        while due and due[0][0] <= now:
            _, _, kind, user_id, payload = heapq.heappop(due)
            moment = clock.now()
            if kind == "watch":
                movie, minute = divmod(payload, 10_000)
                emit(format_event(WatchEvent(moment, user_id, str(history.slugs[movie]), minute)), user_id)
            else:
                movie, rating = divmod(payload, 10)
                emit(format_event(RateEvent(moment, user_id, str(history.slugs[movie]), rating)), user_id)

    tasks: set[asyncio.Task[None]] = set()
    async with httpx.AsyncClient(limits=httpx.Limits(max_connections=MAX_CONCURRENT_REQUESTS)) as http:
        next_arrival = loop.time()
        while not stop.is_set():
            flush_due()
            now = loop.time()
            while next_arrival <= now:
                counts["sessions"] += 1
                user_id = int(history.draw_users(rng, 1)[0])
                task = asyncio.create_task(one_session(http, user_id))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
                hour_rate = lines_per_second * 24 * HOURLY_SHARE[clock.now().hour] / MEAN_LINES_PER_SESSION
                next_arrival += float(rng.exponential(1.0 / hour_rate))
            await asyncio.sleep(0.05)
        for task in list(tasks):
            task.cancel()
    log.info("live viewers stopped: %s", counts)
    return counts
