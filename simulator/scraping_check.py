"""Does the scraping detector find the simulator's scrapers, and only them? (Evaluation: reads the truth.)

On the real path: ``movierec serve`` (supervised, the settings' ports, its rate limit as configured)
with a popularity list for every user, the simulator's live viewers calling it from 127.0.0.1 (the
site's client) and writing their movielog lines to the settings' broker, and scraper scenarios
(simulator/live.py), each from its own address at its own rate. Then the movielog and our served
records are ingested into the lake and ``movierec.security.scraping_scan`` runs over the run. The
truth is what was planted: which address scraped at what rate from when.

One run plays every scraper at once (``Arm``s: the addresses keep them apart); a second run of the
same length without any is the clean stream. Per arm: detected or not, seconds from its start to
the end of the first flagged window, the answers it got; per run: false alarms (incidents of a
client that is no planted scraper). bench/bench_scraping.py prints the table.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd

from movierec import serving_file
from movierec.ingest import consume, served
from movierec.ingest.stream import TopicWriter
from movierec.models import registry
from movierec.ops import services
from movierec.ops.broker import broker
from movierec.security import scraping, scraping_scan
from movierec.settings import Settings
from simulator.catalog import World, load_world
from simulator.history import History, site_list
from simulator.live import run_live
from simulator.scenarios import Scenarios
from simulator.truth import load_truth

log = logging.getLogger(__name__)

VERSION = "20000101T000002Z"  # a pseudo-version: the popularity list for every user
BATCH = 10_000


@dataclass(frozen=True)
class Arm:
    """One planted scraper: a label, its rate (requests/s asked), its address, its first id."""

    label: str
    rate: float
    source: str
    first: int


@dataclass
class ArmResult:
    label: str
    rate: float
    source: str
    answered: int  # served records of its address
    detected: bool
    seconds_to_detection: float | None  # its start -> the end of the first flagged window
    incidents: int


@dataclass
class RunResult:
    seconds: float
    site_answers: int  # served records of the site's client
    served: int
    unlogged: int
    arms: list[ArmResult]
    false_alarms: list[dict[str, Any]]  # incidents of clients that are no planted scraper
    counts: dict[str, int] = field(default_factory=dict)


def write_popularity_file(settings: Settings, world: World) -> None:
    """The site's popularity top-20 for every user, made current (skipped when it exists)."""
    line = ",".join(str(world.movie_ids[m]) for m in site_list(np.asarray(world.popularity)))
    path = serving_file.file_path(settings.serving_dir, VERSION)
    if not path.exists():
        meta = {
            "model_version": VERSION,
            "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "git_commit": "simulator-scraping-check",
            "params": '{"policy": "popularity"}',
            "data_manifest": "{}",
            "metrics": '{"recall_at_20": 0.0}',
            "fallback": line,
        }
        starts = range(1, world.n_users + 1, BATCH)
        users = (list(range(first, min(first + BATCH, world.n_users + 1))) for first in starts)
        serving_file.write(path, ((ids, [line] * len(ids)) for ids in users), meta, total=world.n_users)
    if registry.current_version(settings) != VERSION:
        registry.promote(settings, VERSION, "the scraping check's list")


def scenario_specs(arms: list[Arm], lead: float, length: float) -> list[str]:
    """Scraper scenarios: each arm from ``lead`` s after the run's start, for ``length`` s."""
    return [
        f"scraper:start=+{lead:g}s,end=+{lead + length:g}s,strength={arm.rate:g},first={arm.first},"
        f"source={arm.source}"
        for arm in arms
    ]


def wait_until_serving(settings: Settings, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    url = f"http://{settings.server_host}:{settings.server_port}/healthz"
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"the service did not answer {url} within {timeout:.0f} s")


def play(
    settings: Settings, history: History, specs: list[str], seconds: float, **live: Any
) -> dict[str, int]:
    """Live viewers (and the scenarios of ``specs``) for ``seconds`` of wall time; their counts."""

    async def main() -> dict[str, int]:
        stop = asyncio.Event()
        asyncio.get_running_loop().call_later(seconds, stop.set)
        scenarios = Scenarios.of_specs(specs, datetime.now()) if specs else None
        url = f"http://{settings.server_host}:{settings.server_port}"
        refused = 0

        def write(line: str | bytes, user_id: int) -> None:
            nonlocal refused
            refused += isinstance(line, str) and ", status 429, " in line  # the site was refused
            writer.write(line, user_id)

        with TopicWriter(settings) as writer:
            counts = await run_live(
                history, write, url, seed=settings.seed, stop=stop, scenarios=scenarios, **live
            )
        return counts | {"site_429": refused}

    return asyncio.run(main())


def drain(settings: Settings) -> None:
    """Ingest every movielog line and served record there is into the lake."""
    while consume.ingest_batch(settings)["batch_id"] is not None:
        pass
    while served.ingest_served(settings)["batch_id"] is not None:
        pass


def run(
    settings: Settings,
    arms: list[Arm],
    *,
    lead: float,
    length: float,
    tail: float,
    thresholds: scraping.Thresholds,
    plot: Path | None = None,
    **live: Any,
) -> RunResult:
    """One run of ``lead + length + tail`` seconds with ``arms`` planted (none: a clean run);
    ``plot``: where to draw the detector's windows of the run."""
    world = load_world(settings)
    history = History.build(world, load_truth(settings, world))
    write_popularity_file(settings, world)
    broker.ensure_topics(settings)
    server = services.catalog_of(settings)["server"]
    began = datetime.now(UTC)
    try:
        services.start(settings, server)
        wait_until_serving(settings)
        began = datetime.now(UTC)
        counts = play(settings, history, scenario_specs(arms, lead, length), lead + length + tail, **live)
    finally:
        services.stop(settings, server)  # flushes the provenance records
    ended = datetime.now(UTC)
    drain(settings)
    since, until = began - timedelta(seconds=5), ended + timedelta(seconds=5)
    served_rows, reco = scraping_scan.read_inputs(settings, since, until)
    found = scraping.detect(served_rows, reco, thresholds, settings.site_timezone)
    if plot is not None:
        scraping_scan.plot(found, thresholds, plot, f"{len(arms)} scraper(s) planted")
    return judge(
        found, served_rows, arms, began + timedelta(seconds=lead), (ended - began).total_seconds(), counts
    )


def judge(
    found: scraping.Detection,
    served_rows: pd.DataFrame,
    arms: list[Arm],
    started: datetime,
    seconds: float,
    counts: dict[str, int],
) -> RunResult:
    """The detector's incidents against the planted arms (all started at ``started``)."""
    incidents = found.incidents
    per_client = served_rows["client"].value_counts()
    results = []
    for arm in arms:
        mine = incidents[incidents["client"] == arm.source]
        first = mine["detected_at"].min() if len(mine) else None
        delay = None if first is None else (first - pd.Timestamp(started)).total_seconds()
        answered = int(per_client.get(arm.source, 0))
        results.append(ArmResult(arm.label, arm.rate, arm.source, answered, len(mine) > 0, delay, len(mine)))
    planted = {arm.source for arm in arms}
    false = incidents[~incidents["client"].isin(planted)]
    return RunResult(
        seconds=seconds,
        site_answers=int(per_client.get("127.0.0.1", 0)),
        served=len(served_rows),
        unlogged=found.unlogged,
        arms=results,
        false_alarms=[{k: str(v) for k, v in row.items()} for row in false.to_dict("records")],
        counts=counts,
    )


def render(planted: RunResult, clean: RunResult, thresholds: scraping.Thresholds) -> str:
    """The markdown table of both runs."""
    counts = planted.counts
    lines = [
        f"windows of {thresholds.window_seconds:g} s; a window is flagged at >= {thresholds.min_rate:g} "
        f"unlogged answers/s with >= {thresholds.min_consecutive:.0%} of steps <= {thresholds.max_step} ids",
        "",
        "| scraper | asked req/s | answered | detected | time to detection | false alarms in its run |",
        "| --- | ---: | ---: | --- | ---: | ---: |",
        f"| none (clean run, {clean.seconds:.0f} s) | 0 | 0 | - | - | {len(clean.false_alarms)} |",
    ]
    for arm in planted.arms:
        delay = "-" if arm.seconds_to_detection is None else f"{arm.seconds_to_detection:.0f} s"
        lines.append(
            f"| {arm.label} ({arm.source}) | {arm.rate:g} | {arm.answered:,} "
            f"| {'yes' if arm.detected else 'no'} | {delay} | {len(planted.false_alarms)} |"
        )
    lines += [
        "",
        f"planted run: {planted.seconds:.0f} s, {planted.site_answers:,} answers to the site's client, "
        f"{planted.unlogged:,} answers the site never logged; clean run: {clean.site_answers:,} answers to "
        f"the site, {clean.unlogged:,} unlogged",
        f"the scrapers asked {counts.get('scraper_requests', 0):,} times, "
        f"{counts.get('scraper_throttled', 0):,} answered 429; the site's log: "
        f"{counts.get('reco_ok', 0):,} answers, {counts.get('site_429', 0):,} lines with status 429 "
        f"(clean run: {clean.counts.get('site_429', 0)})",
    ]
    return "\n".join(lines)
