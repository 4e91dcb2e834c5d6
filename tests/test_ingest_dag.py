"""The real ``ingest_movielog`` DAG, run by Airflow (``dag.test()``), against the real broker fed by
the simulator with scenarios on: every line lands exactly once (in its table or in quarantine),
quarantine reasons are the ones the simulator says it injected, and drift is flagged for a drifted
stream and not for a clean one.

Each site has two runs: a day of history (the drift reference; the catalog DAG then stores its users
and movies, which the genre signal needs), and half a day after it (the batch that is checked).
"""

from __future__ import annotations

import base64
import hashlib
import itertools
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow.compute as pc
import pytest

from movierec import lake
from movierec import settings as settings_module
from movierec.ingest.stream import TopicWriter
from movierec.ops import airflow_ops
from movierec.ops.broker import broker
from simulator.backfill import run_backfill
from simulator.damage import line_kind
from simulator.history import History
from simulator.injection_log import MAX_STORED_CHARS, open_log, read_log
from simulator.scenarios import Scenarios
from tests.test_catalog_sync import Api, running_api
from tests.test_simulator_catalog import small_settings

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

REFERENCE_START = datetime(2026, 11, 20)
BATCH_START = REFERENCE_START + timedelta(days=1)
SESSIONS_PER_DAY = 1_500
MALFORMED = "malformed:strength=0.01"
DRIFTED = [
    "format_drift:strength=0.3,form=space_time",  # a new timestamp form: quarantined, by its reason
    "taste_drift:strength=3,genre=Horror",  # a genre rising: the genre mix of watches moves
]
SITES = {"clean": [], "drifted": DRIFTED}  # each site's checked batch: these scenarios on top of MALFORMED
_topics = itertools.count()

LineKey = bytes | tuple[str, str]


def line_key(line: str | bytes) -> LineKey:
    """A produced line as the ground-truth log identifies it (very long lines by their hash)."""
    raw = line.encode() if isinstance(line, str) else line
    if isinstance(line, str) and len(line) > MAX_STORED_CHARS:
        return ("sha256", hashlib.sha256(raw).hexdigest())
    return raw


def record_key(record: dict[str, Any]) -> LineKey:
    if "line_base64" in record:
        return base64.b64decode(record["line_base64"])
    if "sha256" in record:
        return ("sha256", record["sha256"])
    return record["line"].encode()


@dataclass
class Produced:
    real: Counter[str]  # real lines by kind (watch, rate, reco)
    injected: Counter[str]  # injected lines by the reason the simulator meant them to fail with

    def __add__(self, other: Produced) -> Produced:
        return Produced(self.real + other.real, self.injected + other.injected)

    @property
    def lines(self) -> int:
        return self.real.total() + self.injected.total()


def kind_of(line: str) -> str:
    kind = line_kind(line)
    return "reco" if kind == "reco200" else kind


def produce(
    site: settings_module.Settings,
    history: History,
    start: datetime,
    days: float,
    specs: list[str],
    seed: int,
) -> Produced:
    """Simulated history with scenarios into the site's topic; what was sent, from the ground truth."""
    sent: list[str | bytes] = []
    log_path = site.home / f"ground_truth-{seed}.jsonl"
    with TopicWriter(site) as writer, open_log(log_path) as record:

        def write(line: str | bytes, user_id: int) -> None:
            sent.append(line)
            writer.write(line, user_id)

        run_backfill(
            history,
            write,
            seed=seed,
            start=start,
            days=days,
            sessions_per_day=SESSIONS_PER_DAY,
            scenarios=Scenarios.of_specs(specs, origin=start),
            record=record,
        )
    injected = [r for r in read_log(log_path) if r["event"] == "inject"]
    waiting = Counter(record_key(r) for r in injected)
    real: Counter[str] = Counter()
    for line in sent:
        key = line_key(line)
        if waiting[key] > 0:
            waiting[key] -= 1
        else:
            assert isinstance(line, str)
            real[kind_of(line)] += 1
    assert waiting.total() == 0, "every injected line the ground truth names was sent"
    return Produced(real, Counter(r["reason"] for r in injected))


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    # generous limits: the catalog DAG fetches a whole small world here
    with running_api(tmp_path_factory.mktemp("dag-api"), rate=5_000, burst=5_000) as running:
        yield running


@dataclass
class Site:
    name: str  # a key of SITES
    settings: settings_module.Settings
    produced: Produced


def run_site(
    kafka: settings_module.Settings,
    home: Path,
    api: Api,
    history: History,
    dagbag: Any,
    monkeypatch: pytest.MonkeyPatch,
    name: str,
) -> Site:
    settings = replace(
        small_settings(home),
        kafka_bootstrap=kafka.kafka_bootstrap,
        topic=f"dag.test.{next(_topics)}",
        api_url=api.url,
        catalog_rate=2_000.0,
    )
    broker.ensure_topic(settings, settings.topic, partitions=3)
    # the tasks load their settings from MOVIEREC_*, as they do under the scheduler
    for variable, value in airflow_ops.movierec_env(settings).items():
        monkeypatch.setenv(variable, value)

    produced = produce(settings, history, REFERENCE_START, 1, [MALFORMED], seed=11)
    assert dagbag.dags["ingest_movielog"].test().state == "success"
    assert dagbag.dags["catalog"].test().state == "success"

    produced += produce(settings, history, BATCH_START, 0.5, [MALFORMED, *SITES[name]], seed=12)
    assert dagbag.dags["ingest_movielog"].test().state == "success"
    return Site(name, settings, produced)


@pytest.fixture(scope="module", params=list(SITES))
def site(
    request: pytest.FixtureRequest,
    kafka: settings_module.Settings,
    tmp_path_factory: pytest.TempPathFactory,
    api: Api,
    history: History,
    dagbag: Any,
    airflow_db: None,
) -> Iterator[Site]:
    """Each site of SITES in turn (pytest groups the tests by site, so one is built at a time)."""
    name = request.param
    with pytest.MonkeyPatch.context() as monkeypatch:
        yield run_site(kafka, tmp_path_factory.mktemp(name), api, history, dagbag, monkeypatch, name)


def quarantined(settings: settings_module.Settings) -> Any:
    return lake.read_table(settings, "quarantine")


def test_every_line_lands_once_in_its_table_or_in_quarantine(site: Site) -> None:
    settings, produced = site.settings, site.produced
    quarantine = quarantined(settings)
    by_stage = quarantine.group_by("stage").aggregate([("stage", "count")]).to_pylist()
    assert {row["stage"]: row["stage_count"] for row in by_stage}.get("parse", 0) == produced.injected.total()

    # real lines: in their typed table, or set aside by the expectations (stage "quality")
    failed_quality = quarantine.filter(pc.equal(quarantine["stage"], "quality"))["line"].to_pylist()
    set_aside = Counter(kind_of(line) for line in failed_quality)
    for kind in ("watch", "rate", "reco"):
        assert lake.read_table(settings, kind).num_rows + set_aside[kind] == produced.real[kind], kind

    raw = lake.read_table(settings, "raw", columns=["partition", "offset"])
    assert raw.num_rows == produced.lines
    keys = set(zip(raw["partition"].to_pylist(), raw["offset"].to_pylist(), strict=True))
    assert len(keys) == raw.num_rows  # nothing twice


def test_quarantine_reasons_are_what_the_simulator_injected(site: Site) -> None:
    quarantine = quarantined(site.settings)
    parse_stage = quarantine.filter(pc.equal(quarantine["stage"], "parse"))
    assert Counter(parse_stage["reason"].to_pylist()) == site.produced.injected
    assert site.produced.injected.total() > 0


def drifted_signals(site: Site) -> set[str]:
    table = lake.read_table(site.settings, "drift")
    batch_ids = sorted(set(table["batch_id"].to_pylist()))
    last = table.filter(pc.equal(table["batch_id"], batch_ids[-1]))
    return {row["signal"] for row in last.to_pylist() if row["drifted"]}


def test_drift_is_flagged_for_the_drifted_stream_and_not_for_the_clean_one(site: Site) -> None:
    flagged = drifted_signals(site)
    if site.name == "clean":
        assert flagged == set()
        return
    # the new timestamp form shows in the quarantine mix, the rising genre in the genre mix of watches
    assert any("quarantine" in signal for signal in flagged), flagged
    assert any("genre" in signal for signal in flagged), flagged
