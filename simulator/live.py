"""Live mode: viewers arrive in real time, ask our service, and their lines go to Kafka.

Sessions arrive as a Poisson process whose rate follows the daily cycle and is
set so the site writes about ``lines_per_second`` lines on average. Each
session first asks the recommendation service through the site's request
client (800 ms budget) and logs the outcome; the viewer then picks a movie
(from the list if it fits their taste, see simulator.viewers) and streams it,
one ``GET /data/m/...`` line per minute as the minutes pass. Lines of all
viewers go out in time order, stamped when they are written.

Scenarios play in wall time through simulator.director, as in the backfill;
the ones that need I/O happen here: a catalog outage is switched on and off
through the catalog API's ``/_faults`` admin route (and switched off when the
run stops), and a scraper task enumerates ``/recommend/<id>`` on our service
over consecutive ids (the site's client did not make those calls, so they
write no movielog lines).
"""

from __future__ import annotations

import asyncio
import heapq
import logging
from collections.abc import Callable, Coroutine
from datetime import datetime
from typing import Any

import httpx
import numpy as np

from movierec.movielog import RateEvent, WatchEvent, format_event
from simulator.backfill import HOURLY_SHARE
from simulator.client import ask, to_event
from simulator.director import Director, catalog_faults, director_for_run
from simulator.history import History, Scripted
from simulator.injection_log import Record
from simulator.scenarios import Scenario, Scenarios
from simulator.viewers import session

log = logging.getLogger(__name__)

MEAN_LINES_PER_SESSION = 45.0  # measured on the default world; sets the session rate
MAX_CONCURRENT_REQUESTS = 200
SCRAPER_USER_AGENT = "Mozilla/5.0 (compatible; reco-harvester/0.3)"  # what a scraper might send
SCRAPER_CONCURRENCY = 50
ADMIN_TIMEOUT_SECONDS = 5.0


class Clock:
    """Wall time, injectable so tests can run a day in seconds."""

    def now(self) -> datetime:
        return datetime.now()


async def run_live(
    history: History,
    write: Callable[[str | bytes, int], None],
    service_url: str,
    *,
    seed: int,
    lines_per_second: float = 50.0,
    follow: float = 0.5,
    minute_seconds: float = 60.0,
    stop: asyncio.Event | None = None,
    clock: Clock | None = None,
    scenarios: Scenarios | None = None,
    record: Record | None = None,
    catalog_url: str | None = None,
) -> dict[str, int]:
    """Run viewers until ``stop`` is set; returns counts of what was written.

    With ``scenarios``, what they did goes to ``record`` (the ground-truth log);
    ``catalog_url`` is the catalog API a catalog_outage scenario switches.
    """
    rng = np.random.default_rng(seed)
    clock = clock or Clock()
    stop = stop or asyncio.Event()
    index_of = {str(slug): i for i, slug in enumerate(history.slugs)}
    due: list[tuple[float, int, str, int, int]] = []  # (at, seq, kind, user, movie/minute payload)
    counts = {"sessions": 0, "reco_ok": 0, "reco_failed": 0, "lines": 0}
    loop = asyncio.get_running_loop()
    limiter = asyncio.Semaphore(MAX_CONCURRENT_REQUESTS)
    sequence = 0
    director = director_for_run(
        scenarios, history, seed=seed, record=record, follow=follow, origin=clock.now(), mode="live"
    )
    if director is not None:
        counts |= {"spam_sessions": 0, "scraper_requests": 0, "scraper_answered": 0, "scraper_failed": 0,
                   "scraper_throttled": 0}  # fmt: skip

    def emit(moment: datetime, line: str, user_id: int) -> None:
        if director is None:
            write(line, user_id)
            counts["lines"] += 1
            return
        for _, user, out in director.damage(moment, user_id, line):
            write(out, user)
            counts["lines"] += 1

    async def one_session(http: httpx.AsyncClient, user_id: int, scripted: Scripted | None = None) -> None:
        nonlocal sequence
        async with limiter:
            answer = await ask(http, service_url, user_id)
        moment = clock.now()
        emit(moment, format_event(to_event(moment, user_id, service_url, answer)), user_id)
        counts["reco_ok" if answer.status == 200 else "reco_failed"] += 1
        if scripted is None:
            site, knob = (history, follow) if director is None else director.stage(moment)
            shown = np.array([index_of[s] for s in answer.items if s in index_of], dtype=np.int64)
            outcome = session(rng, site.audience, user_id, shown, knob)
            movie, minutes, rating = outcome.movie, outcome.minutes, outcome.rating
        else:  # a scenario decided what this session does
            movie, minutes, rating = scripted.movie, scripted.minutes, scripted.rating
        begin = loop.time() + float(rng.uniform(0.1, 1.5)) * minute_seconds  # finding the title
        for minute in range(minutes):
            sequence += 1
            heapq.heappush(
                due, (begin + minute * minute_seconds, sequence, "watch", user_id, movie * 10_000 + minute)
            )
        if rating is not None:
            sequence += 1
            heapq.heappush(
                due, (begin + minutes * minute_seconds, sequence, "rate", user_id, movie * 10 + rating)
            )

    def flush_due() -> None:
        now = loop.time()
        while due and due[0][0] <= now:
            _, _, kind, user_id, payload = heapq.heappop(due)
            moment = clock.now()
            if kind == "watch":
                movie, minute = divmod(payload, 10_000)
                line = format_event(WatchEvent(moment, user_id, str(history.slugs[movie]), minute))
            else:
                movie, rating = divmod(payload, 10)
                line = format_event(RateEvent(moment, user_id, str(history.slugs[movie]), rating))
            emit(moment, line, user_id)

    tasks: set[asyncio.Task[None]] = set()

    def spawn(work: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.create_task(work)
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        return task

    scrapers: dict[int, asyncio.Task[None]] = {}  # by scenario index
    outages_on: dict[int, Scenario] = {}  # by scenario index
    admin_calls: set[asyncio.Task[None]] = set()  # fault switches: finished, never cancelled, at stop

    def act(index: int, scenario: Scenario, change: str) -> None:
        """The I/O of a scenario switching on or off."""
        assert director is not None
        if scenario.kind == "catalog_outage":
            on = change == "start"
            if on:
                outages_on[index] = scenario
            else:
                outages_on.pop(index, None)
            switch = set_catalog_faults(director, catalog_url, index, catalog_faults(scenario, on))
            call = asyncio.create_task(switch)
            admin_calls.add(call)
            call.add_done_callback(admin_calls.discard)
        elif scenario.kind == "scraper" and change == "start":
            first, rate, source = scenario.options["first"], scenario.strength, scenario.options["source"]
            scrapers[index] = asyncio.create_task(scrape(service_url, first, rate, counts, source))
        elif scenario.kind == "scraper" and index in scrapers:
            scrapers.pop(index).cancel()

    async with httpx.AsyncClient(limits=httpx.Limits(max_connections=MAX_CONCURRENT_REQUESTS)) as http:
        next_arrival = loop.time()
        last = clock.now()
        while not stop.is_set():
            if director is not None:
                now_dt = clock.now()
                for index, scenario, change in director.advance(now_dt):
                    act(index, scenario, change)
                for scripted in director.scripted(last, now_dt):
                    counts["spam_sessions"] += 1
                    spawn(one_session(http, scripted.user_id, scripted))
                last = now_dt
            flush_due()
            now = loop.time()
            while next_arrival <= now:
                counts["sessions"] += 1
                user_id = int(history.draw_users(rng, 1)[0])
                spawn(one_session(http, user_id))
                hour_rate = lines_per_second * 24 * HOURLY_SHARE[clock.now().hour] / MEAN_LINES_PER_SESSION
                next_arrival += float(rng.exponential(1.0 / hour_rate))
            await asyncio.sleep(0.05)
        for task in list(tasks):
            task.cancel()
        for task in scrapers.values():
            task.cancel()
        await asyncio.gather(*scrapers.values(), *admin_calls, return_exceptions=True)
    if director is not None:
        for index, scenario in outages_on.items():  # the catalog API outlives this run: leave it healthy
            await set_catalog_faults(director, catalog_url, index, catalog_faults(scenario, False))
        director.finish(clock.now(), counts)
    log.info("live viewers stopped: %s", counts)
    return counts


async def set_catalog_faults(
    director: Director, catalog_url: str | None, index: int, faults: dict[str, Any]
) -> None:
    """POST ``faults`` to the catalog API's admin route; the outcome goes to the ground-truth log."""
    if not catalog_url:
        log.warning("catalog_outage: no catalog API URL, nothing switched")
        director.note("catalog_faults", index=index, faults=faults, ok=False, error="no catalog API URL")
        return
    try:
        async with httpx.AsyncClient(timeout=ADMIN_TIMEOUT_SECONDS) as admin:
            response = await admin.post(f"{catalog_url}/_faults", json=faults)
        ok, error = response.status_code == 200, None if response.status_code == 200 else response.text
    except httpx.HTTPError as exc:
        ok, error = False, f"{type(exc).__name__}: {exc}"
    if not ok:
        log.warning("catalog_outage: POST %s/_faults failed: %s", catalog_url, error)
    director.note("catalog_faults", index=index, faults=faults, ok=ok, error=error)


async def scrape(service_url: str, first: int, rate: float, counts: dict[str, int], source: str = "") -> None:
    """GET /recommend/<id> for id = first, first + 1, ... at ``rate`` per second, until cancelled,
    connecting from ``source`` (another host's address; "": the system's choice)."""
    loop = asyncio.get_running_loop()
    inflight: set[asyncio.Task[None]] = set()
    limits = httpx.Limits(max_connections=SCRAPER_CONCURRENCY)
    transport = httpx.AsyncHTTPTransport(limits=limits, local_address=source or None)
    headers = {"User-Agent": SCRAPER_USER_AGENT}
    async with httpx.AsyncClient(transport=transport, headers=headers, timeout=2.0) as http:

        async def one(user_id: int) -> None:
            try:
                response = await http.get(f"{service_url}/recommend/{user_id}")
                counts["scraper_answered"] += response.status_code == 200
                counts["scraper_throttled"] += response.status_code == 429
            except httpx.HTTPError:
                counts["scraper_failed"] += 1

        began, next_id = loop.time(), first
        try:
            while True:
                due = first + int((loop.time() - began) * rate) - next_id
                for _ in range(max(0, min(due, SCRAPER_CONCURRENCY - len(inflight)))):
                    counts["scraper_requests"] += 1
                    task = asyncio.create_task(one(next_id))
                    inflight.add(task)
                    task.add_done_callback(inflight.discard)
                    next_id += 1
                await asyncio.sleep(0.01)
        finally:
            for task in inflight:
                task.cancel()
            await asyncio.gather(*inflight, return_exceptions=True)
