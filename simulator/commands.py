"""The simulator's entry points behind ``movierec world ...``: load the site, then run a mode.

This is the I/O edge of the simulator (files, Kafka, HTTP, signals); the modes
themselves (simulator.backfill, simulator.live) are functions of their inputs.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from collections.abc import Sequence
from contextlib import AbstractContextManager, nullcontext
from datetime import datetime, timedelta
from pathlib import Path

from movierec.ingest.stream import TopicWriter
from movierec.settings import Settings
from simulator.backfill import run_backfill
from simulator.catalog import load_world
from simulator.history import History
from simulator.injection_log import Record, default_path, open_log
from simulator.live import run_live
from simulator.scenarios import Scenarios
from simulator.truth import load_truth

log = logging.getLogger(__name__)

# ~50 lines/s, the real site's average, at ~45 lines per session
DEFAULT_SESSIONS_PER_DAY = 96_000


def load_history(settings: Settings) -> History:
    """The site (catalog, users, ground truth) as the viewers need it; built once, then cached."""
    started = time.monotonic()
    world = load_world(settings)
    truth = load_truth(settings, world)
    log.info(
        "site loaded: %d users, %d movies in %.1f s",
        world.n_users,
        world.n_movies,
        time.monotonic() - started,
    )
    return History.build(world, truth)


def ground_truth_log(
    settings: Settings, scenarios: Scenarios, path: Path | None
) -> AbstractContextManager[Record | None]:
    """The ground-truth log to append to, when there are scenarios to record."""
    if not scenarios:
        return nullcontext()
    target = path or default_path(settings)
    log.info("%d scenario(s); ground truth appended to %s", len(scenarios), target)
    return open_log(target)


def backfill(
    settings: Settings,
    days: float,
    *,
    sessions_per_day: int = DEFAULT_SESSIONS_PER_DAY,
    follow: float = 0.5,
    end: datetime | None = None,
    scenarios: Sequence[str] = (),
    scenario_file: Path | None = None,
    ground_truth: Path | None = None,
) -> int:
    """Write ``days`` of history ending at ``end`` (default: now) to the movielog topic.

    ``scenarios`` (CLI specs) and ``scenario_file`` play in simulated time; offsets
    like ``+2d`` count from the start of the history.
    """
    end = end or datetime.now().replace(microsecond=0)
    start = end - timedelta(days=days)
    plan = Scenarios.gather(scenarios, scenario_file, origin=start)  # a bad spec fails before any work
    history = load_history(settings)
    log.info("backfill of %.2f days (%s .. %s) into %s", days, start, end, settings.topic)
    with TopicWriter(settings) as writer, ground_truth_log(settings, plan, ground_truth) as record:
        count = run_backfill(
            history,
            writer.write,
            seed=settings.seed,
            start=start,
            days=days,
            sessions_per_day=sessions_per_day,
            follow=follow,
            scenarios=plan,
            record=record,
        )
    log.info("backfill wrote %d lines (%.0f lines/s end to end)", count, writer.rate)
    return count


def calibration(
    settings: Settings,
    days: float,
    *,
    sessions_per_day: int = DEFAULT_SESSIONS_PER_DAY,
    follow: float = 0.5,
    end: datetime | None = None,
    from_lake: bool = False,
    plot: Path | None = None,
) -> str:
    """The calibration table (real data vs the history ``backfill`` would write, or the lake's)."""
    from simulator import calibration_report as report

    history = load_history(settings)
    if from_lake:
        data = report.from_lake(settings, history.slugs)
    else:
        end = end or datetime.now().replace(microsecond=0)
        data = report.from_backfill(
            history, seed=settings.seed, end=end, days=days, sessions_per_day=sessions_per_day, follow=follow
        )
    stats = report.measure(data, others={report.TRUTH: report.truth_ranking(history)})
    if plot is not None:
        report.plot(stats, plot)
    return report.render(stats)


def run(
    settings: Settings,
    *,
    service_url: str | None = None,
    lines_per_second: float = 50.0,
    follow: float = 0.5,
    minute_seconds: float = 60.0,
    scenarios: Sequence[str] = (),
    scenario_file: Path | None = None,
    ground_truth: Path | None = None,
) -> dict[str, int]:
    """Live viewers calling the service, until SIGINT or SIGTERM (scenarios in wall time from now)."""
    plan = Scenarios.gather(scenarios, scenario_file, origin=datetime.now().replace(microsecond=0))
    history = load_history(settings)
    url = service_url or f"http://{settings.server_host}:{settings.server_port}"

    async def main() -> dict[str, int]:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        log.info("live viewers calling %s at ~%.0f lines/s; stop with Ctrl-C", url, lines_per_second)
        with TopicWriter(settings) as writer, ground_truth_log(settings, plan, ground_truth) as record:
            return await run_live(
                history,
                writer.write,
                url,
                seed=settings.seed,
                lines_per_second=lines_per_second,
                follow=follow,
                minute_seconds=minute_seconds,
                stop=stop,
                scenarios=plan,
                record=record,
                catalog_url=settings.catalog_api_url,
            )

    return asyncio.run(main())


def api(settings: Settings) -> None:
    """The catalog API on settings.api_host:api_port, until stopped."""
    from simulator.api import serve

    serve(settings, rate=settings.api_rate, burst=settings.api_burst)
