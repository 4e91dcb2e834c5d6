"""Does the rating-spam detector find what the simulator planted? (Evaluation only: reads the truth.)

The simulator's ``rating_spam`` scenario plants a ring (simulator.director: accounts just above
the world's users watching a few minutes of one target movie and rating it 5). Its injection log
names the accounts, the target and the start; here it is the answer key, never the detector's
input. A history with (or without) a ring is written into a fresh lake the way ingest writes it
(``consume.build_tables``, ``write_batch_files``, watch sessions; no Kafka), then:

- ``detection``: the detector (movierec.security.shilling) run at the end of every hour of every
  day, each day against the days before it, as the ingest DAG would see the lake grow: whether
  and when the ring was found, how many of its accounts, and every false alarm (a flagged account
  outside the ring, a target other than the planted one);
- ``exposure``: how far the target got into served lists: the share of the world's users whose
  top-20 (as served: their row of the serving file, else its fallback line) holds it, and its
  mean position there, for a model trained without and with the flags (the training-time defence).

    .venv/bin/python bench/bench_shilling.py [--users 20000] [--movies 2000] [--days 6]
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from movierec import lake, schemas, serving_file
from movierec.ingest import catalog_sync, consume, watch_sessions
from movierec.security import shilling, shilling_check
from movierec.settings import Settings
from simulator.backfill import run_backfill
from simulator.catalog import load_world
from simulator.history import History
from simulator.scenarios import Scenarios, make

log = logging.getLogger(__name__)

START = datetime(2026, 11, 20)
PARTITIONS = 2


@dataclass(frozen=True)
class Strength:
    """A ring's size and pace: ``accounts`` rating ``per_hour`` sessions each (0 accounts: none)."""

    name: str
    accounts: int
    per_hour: float


STRENGTHS = (
    Strength("none", 0, 0.0),
    Strength("weak", 10, 0.2),  # ~48 five-star ratings a day from 10 accounts
    Strength("strong", 50, 1.0),  # the scenario's default: ~1,200 a day from 50 accounts
)


def bench_settings(home: Path, users: int, movies: int, iterations: int, driver_memory: str) -> Settings:
    """Settings of a bench's small world in ``home``: local Spark, one test day."""
    from movierec import settings as settings_module

    return settings_module.load(
        {
            "MOVIEREC_HOME": str(home),
            "MOVIEREC_SCALE_USERS": str(users),
            "MOVIEREC_SCALE_MOVIES": str(movies),
            "MOVIEREC_SPARK_MASTER": "local[2]",
            "MOVIEREC_SPARK_DRIVER_MEMORY": driver_memory,
            "MOVIEREC_ALS_ITERATIONS": str(iterations),
            "MOVIEREC_TEST_DAYS": "1",
        }
    )


def popular_movie(history: History, rank: int) -> str:
    """The id of the ``rank``-th most popular movie (0: the most popular), a harder target to see:
    its organic newcomers rating it 5 are many."""
    return str(history.slugs[np.argsort(-history.popularity, kind="stable")[rank]])


def ring(strength: Strength, start: datetime, movie: str = "") -> Scenarios:
    """The rating_spam scenario of ``strength`` from ``start`` (none: no scenario)."""
    if strength.accounts == 0:
        return Scenarios()
    options = {"accounts": strength.accounts} | ({"movie": movie} if movie else {})
    return Scenarios((make("rating_spam", start, strength=strength.per_hour, options=options),))


# --- the lake, as ingest writes it --------------------------------------------------------------

LINES_PER_BATCH = 4_000_000


def simulated_lake(
    settings: Settings,
    history: History,
    *,
    days: float,
    sessions_per_day: int,
    scenarios: Scenarios | None = None,
    start: datetime = START,
) -> list[dict[str, Any]]:
    """Write ``days`` of history from ``start`` into ``settings``' lake (one committed batch, its
    watch sessions, the catalog's users and movies); returns the scenarios' injection log."""
    records: list[consume.Record] = []
    truth: list[dict[str, Any]] = []

    def write(line: str | bytes, user_id: int) -> None:
        value = line.encode() if isinstance(line, str) else line
        records.append(consume.Record(user_id % PARTITIONS, len(records), 0, value))

    run_backfill(
        history,
        write,
        seed=settings.seed,
        start=start,
        days=days,
        sessions_per_day=sessions_per_day,
        scenarios=scenarios,
        record=truth.append,
    )
    # Several batches, as ingest writes them: one table's strings must stay under Arrow's 2 GiB
    # (a week at full scale is ~49M lines, ~4 GB of text).
    for first in range(0, len(records), LINES_PER_BATCH) or [0]:
        commit_batch(settings, records[first : first + LINES_PER_BATCH], start)
    write_catalog(settings)
    return truth


def commit_batch(settings: Settings, records: Sequence[consume.Record], planned_at: datetime) -> str:
    """``records`` as one committed ingest batch (files, manifest, its days' watch sessions), as
    ingest writes one; the batch's ranges run from each partition's lowest offset. Its id."""
    ranges = []
    for partition in sorted({record.partition for record in records}):
        offsets = [record.offset for record in records if record.partition == partition]
        ranges.append(lake.PartitionRange(partition, min(offsets), max(offsets) + 1))
    batch_id = consume.batch_id_for(settings.topic, ranges)
    manifest = lake.Manifest(batch_id, settings.topic, ranges, planned_at=planned_at.isoformat())
    manifest.files = consume.write_batch_files(settings, batch_id, consume.build_tables(records))
    manifest.state = "committed"
    lake.save_manifest(settings, manifest)
    watch_sessions.update_watch_sessions(settings, batch_id)
    return batch_id


def write_catalog(settings: Settings) -> None:
    """The catalog tables as catalog_sync stores them: every movie, every world user (not the ring's)."""
    world = load_world(settings)
    fetched = datetime(2026, 11, 30, tzinfo=UTC)
    movie_rows = [catalog_sync.movie_row(row["id"], row, fetched) for row in world.movies.to_pylist()]
    lake.write_parquet_atomically(
        pa.Table.from_pylist(movie_rows, schema=schemas.MOVIES),
        lake.table_dir(settings, "movies") / "part-sim.parquet",
    )
    users = world.users_table()
    users = users.append_column("fetched_at", pa.array([fetched] * users.num_rows, schemas.FETCHED_AT))
    lake.write_parquet_atomically(
        users.cast(schemas.USERS), lake.table_dir(settings, "users") / "part-sim.parquet"
    )


# --- the truth ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Planted:
    """A ring as the injection log records it."""

    accounts: frozenset[int]
    target: str
    start: datetime


def planted(log_records: Sequence[dict[str, Any]]) -> Planted | None:
    """The (first) rating_spam ring of the log, None if it has none."""
    for record in log_records:
        if record.get("event") != "run":
            continue
        for scenario in record["scenarios"]:
            if scenario["kind"] == "rating_spam":
                first, last = scenario["accounts"]
                return Planted(
                    frozenset(range(first, last + 1)),
                    scenario["target"],
                    datetime.fromisoformat(scenario["start"]),
                )
    return None


# --- detection, hour by hour ---------------------------------------------------------------------


@dataclass
class Detection:
    """The detector's record over a lake, scored against the truth (if any)."""

    windows: int = 0  # hourly checks that had a verdict (enough history)
    first_detection: datetime | None = None  # end of the first window that flagged the planted target
    hours_to_detection: float | None = None  # from the ring's start
    found_accounts: int = 0  # ring accounts flagged by the end
    ring_accounts: int = 0
    false_accounts: set[int] = field(default_factory=set)  # flagged, not in the ring
    false_targets: set[str] = field(default_factory=set)
    false_alarm_windows: int = 0  # windows that flagged anything outside the truth
    daily: list[dict[str, Any]] = field(default_factory=list)  # the full-day verdict of each day

    @property
    def detected(self) -> bool:
        return self.first_detection is not None


def lake_days(rates: pd.DataFrame, sessions: pd.DataFrame) -> list[date]:
    return sorted({t.date() for t in pd.concat([rates["time"], sessions["first_time"]])})


def detection(
    settings: Settings, truth: Planted | None, rules: shilling.Rules = shilling.DEFAULT_RULES
) -> Detection:
    """The detector at the end of every hour of every day of the lake (see the module docstring)."""
    rates, sessions = shilling_check.read_frames(settings, date.min, date.max)
    everything = lake_days(rates, sessions)
    result = Detection(ring_accounts=0 if truth is None else len(truth.accounts))
    flagged_before: set[int] = set()  # accounts flagged by the full-day checks of earlier days
    found: set[int] = set()
    for day in everything:
        start = shilling.day_start(day)
        baseline_days = shilling.baseline_days_before(start, set(everything), rules)
        baseline = shilling.baseline_counts(rates, sessions, baseline_days, flagged_before, rules)
        verdict = None
        for hour in range(1, 25):
            end = start + timedelta(hours=hour)
            verdict = shilling.detect(
                rates, sessions, start, end, baseline=baseline, baseline_days=baseline_days, rules=rules
            )
            if verdict.status != "ok":
                continue
            result.windows += 1
            wrong = score_window(result, verdict, truth, found)
            result.false_alarm_windows += int(wrong)
        assert verdict is not None
        flagged_before |= set(verdict.flagged_accounts)
        result.daily.append(shilling_check.report(verdict) | {"day": day.isoformat()})
    result.found_accounts = len(found)
    return result


def score_window(
    result: Detection, verdict: shilling.Verdict, truth: Planted | None, found: set[int]
) -> bool:
    """Record one window's verdict in ``result``; True if it flagged anything outside the truth."""
    wrong = False
    for target in verdict.targets:
        if truth is not None and target.movie_id == truth.target:
            if result.first_detection is None:
                result.first_detection = verdict.end
                result.hours_to_detection = (verdict.end - truth.start).total_seconds() / 3600
            ring_members = set(target.accounts) & truth.accounts
            found |= ring_members
            outside = set(target.accounts) - truth.accounts
        else:
            result.false_targets.add(target.movie_id)
            outside = set(target.accounts)
        result.false_accounts |= outside
        wrong |= bool(outside) or truth is None or target.movie_id != truth.target
    return wrong


# --- exposure of the target in served lists ------------------------------------------------------


@dataclass(frozen=True)
class Exposure:
    """How the served lists of one serving file treat the target, over the world's users."""

    serving_id: str
    candidate: str
    users: int
    with_target: int  # users whose top-20 holds it
    mean_position: float | None  # 1-based, among those

    @property
    def share(self) -> float:
        return self.with_target / self.users if self.users else 0.0


def exposure(path: Path, target: str, users: int) -> Exposure:
    """The target's place in the lists ``path`` serves to users 1..``users`` (fallback line for
    users without a row, as the service answers them)."""
    meta = serving_file.read_meta(path)
    fallback = meta["fallback"].split(",")
    positions: list[int] = []
    db = serving_file.open_readonly(path)
    try:
        rows = db.execute("SELECT user_id, items FROM recs WHERE user_id <= ?", (users,)).fetchall()
    finally:
        db.close()
    listed = {user: items.split(",") for user, items in rows}
    for user in range(1, users + 1):
        items = listed.get(user, fallback)
        if target in items:
            positions.append(items.index(target) + 1)
    candidate = json.loads(meta.get("params", "{}")).get("candidate", "?")
    mean = sum(positions) / len(positions) if positions else None
    return Exposure(meta["model_version"], str(candidate), users, len(positions), mean)


# --- the training-time defence, measured -----------------------------------------------------------


def flag_every_day(settings: Settings) -> list[dict[str, Any]]:
    """``movierec security shilling`` on every day of the lake, oldest first (as the DAG would have)."""
    rates, sessions = shilling_check.read_frames(settings, date.min, date.max)
    return [shilling_check.check_day(settings, day) for day in lake_days(rates, sessions)]


def served_version(
    settings: Settings, spark: Any, version: str, fitting: Sequence[Any], *, defence: bool
) -> Path:
    """A retrain as the DAG runs it (prepare, train, evaluate, precompute) with the defence on or
    off; the serving file's path."""
    from spark_jobs.evaluate import evaluate
    from spark_jobs.prepare import prepare
    from spark_jobs.train import train

    settings = replace(settings, shilling_defence=defence)
    prepare(spark, settings, version)
    train(spark, settings, version, fitting)
    evaluate(settings, version)
    return precompute_only(settings, spark, version)


def precompute_only(settings: Settings, spark: Any, version: str) -> Path:
    """Precompute ``version`` (again, e.g. with other exploration slots); the serving file's path."""
    from spark_jobs.precompute import precompute

    return Path(str(precompute(settings, version, spark=spark)["path"]))
