"""The served topic into the lake against the real broker: every record exactly once, refused records
quarantined with their reason, and a crash between the files and the offsets healed by a re-run."""

from __future__ import annotations

import itertools
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from confluent_kafka import Producer

from movierec import lake
from movierec import settings as settings_module
from movierec.ingest import consume, served
from server.provenance import ServedRecorder
from tests.conftest import topics_on_broker

pytestmark = pytest.mark.kafka
_topics = itertools.count()
START = datetime(2026, 11, 20, 9, 58, tzinfo=UTC)


@pytest.fixture
def site(kafka: settings_module.Settings, tmp_path: Path) -> settings_module.Settings:
    return topics_on_broker(kafka, tmp_path, served_topic=f"served.test.{next(_topics)}")


def record(n: int) -> dict:
    moment = START + timedelta(seconds=7 * n)  # crosses 10:00: two hour partitions
    ok = n % 10 != 9
    return {
        "request_id": f"r{n:04d}",
        "time": moment.isoformat(timespec="milliseconds"),
        "user_id": n % 37 + 1 if ok else None,
        "variant": ("control", "treatment")[n % 2] if n % 3 else None,
        "model_version": "20261119T000000Z" if ok else None,
        "items": f"movie+{n}+2001,other+{n}+1999" if ok else None,
        "fallback": n % 5 == 0,
        "latency_ms": 0.8,
        "status": 200 if ok else 400,
        **({} if ok else {"reason": "user id has a sign"}),
    }


def send_records(settings: settings_module.Settings, count: int, first: int = 0) -> None:
    recorder = ServedRecorder(settings)  # the service's own producer
    for n in range(first, first + count):
        value = record(n)
        recorder.record(value, int(datetime.fromisoformat(value["time"]).timestamp() * 1000))
    assert recorder.close(30) == 0


def send_raw(settings: settings_module.Settings, values: list[bytes]) -> None:
    producer = Producer({"bootstrap.servers": settings.kafka_bootstrap})
    for value in values:
        producer.produce(settings.served_topic, value, key=b"1")
    assert producer.flush(30) == 0


def served_ids(settings: settings_module.Settings) -> list[str]:
    return lake.read_table(settings, "served", ["request_id"])["request_id"].to_pylist()


def test_every_record_lands_once_and_bad_ones_are_quarantined(site: settings_module.Settings) -> None:
    send_records(site, 120)
    bad = [b"not json", b"[1, 2]", json.dumps({"time": "2026-11-20T10:00:00+00:00"}).encode()]
    # a 200 without its model version passes the parser but not the expectations
    wrong = record(1) | {"request_id": "no-version", "model_version": None}
    send_raw(site, [*bad, json.dumps(wrong).encode()])

    report = served.ingest_served(site)
    assert report["counts"] == {"raw": 124, "served": 120, "quarantine": 4}
    ids = served_ids(site)
    assert sorted(ids) == sorted(f"r{n:04d}" for n in range(120))
    table = lake.read_table(site, "served")
    first = next(r for r in table.to_pylist() if r["request_id"] == "r0001")
    assert first["time"] == START + timedelta(seconds=7) and first["variant"] == "treatment"
    assert first["items"] == "movie+1+2001,other+1+1999" and first["user_id"] == 2
    hours = {p.parent.name for p in lake.table_dir(site, "served").rglob("*.parquet")}
    assert hours == {"hour=09", "hour=10"}
    reasons = lake.read_table(site, "quarantine", ["stage", "reason"]).to_pylist()
    assert sorted((r["stage"], r["reason"]) for r in reasons) == [
        ("quality", "version_on_success"),
        ("served", "served_missing_field"),
        ("served", "served_not_json"),
        ("served", "served_not_object"),
    ]
    assert served.ingest_served(site) == {"batch_id": None, "records": 0}  # nothing new
    # the movielog's manifests (learning reads them) are not mixed with the served ones
    assert lake.load_manifests(site) == []


def test_a_crash_before_the_offsets_are_committed_is_redone_without_duplicates(
    site: settings_module.Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    send_records(site, 50)

    def crash(*args: object, **kwargs: object) -> None:
        raise RuntimeError("killed before the commit")

    with monkeypatch.context() as patched:
        patched.setattr(consume, "commit_offsets", crash)
        with pytest.raises(RuntimeError, match="killed"):
            served.ingest_served(site)
    assert len(served_ids(site)) == 50  # the files were written, the offsets not
    send_records(site, 30, first=50)  # the topic grows meanwhile: not the unfinished batch's records

    redone = served.ingest_served(site)
    assert redone["records"] == 50  # the same ranges again, replacing their files
    assert served.ingest_served(site)["records"] == 30  # then the rest
    ids = served_ids(site)
    assert len(ids) == len(set(ids)) == 80
