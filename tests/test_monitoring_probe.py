"""The probe against the real broker: the site's tail counts request lines by outcome and
recognises fallback answers; ingest lag in lines and seconds from the ingest group's offsets;
the broker's health is 0 where no broker listens."""

from __future__ import annotations

import time
from datetime import datetime
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from movierec import settings as settings_module
from movierec.monitoring import probe
from movierec.movielog import RecoEvent, WatchEvent, format_event
from movierec.ops.broker import broker
from movierec.settings import Settings

pytestmark = pytest.mark.kafka
FALLBACK = ("pop+a+2001", "pop+b+2002")


def private(kafka: Settings, tmp_path: Path, topic: str) -> Settings:
    settings = settings_module.load(
        {
            "MOVIEREC_HOME": str(tmp_path),
            "MOVIEREC_KAFKA_BOOTSTRAP": kafka.kafka_bootstrap,
            "MOVIEREC_TOPIC": topic,
        }
    )
    broker.ensure_topic(settings, topic, partitions=2, config={"message.timestamp.type": "LogAppendTime"})
    return settings


def produce(settings: Settings, lines: list[str]) -> None:
    producer = Producer({"bootstrap.servers": settings.kafka_bootstrap})
    for n, line in enumerate(lines):
        producer.produce(settings.topic, line.encode(), key=str(n).encode())
    assert producer.flush(30) == 0


def sample(registry: object, name: str, **labels: str) -> float:
    value = registry.get_sample_value(name, labels)  # type: ignore[attr-defined]
    return 0.0 if value is None else value


def test_the_tail_counts_request_lines_by_outcome_from_where_it_started(
    kafka: Settings, tmp_path: Path
) -> None:
    settings = private(kafka, tmp_path, "probe-tail")
    now = datetime(2026, 11, 30, 12, 0, 0)
    produce(
        settings, [format_event(RecoEvent(now, 1, "old:8082", 0, (), "x", 800))]
    )  # before the tail: not counted
    tail = probe.SiteTail(settings, lambda: {",".join(FALLBACK)})
    tail.poll(2.0)  # assigned at the end
    ours = "ours:8082"
    produce(
        settings,
        [
            format_event(RecoEvent(now, 1, ours, 200, FALLBACK, None, 12)),
            format_event(RecoEvent(now, 2, ours, 200, ("mine+x+1999",), None, 30)),
            format_event(RecoEvent(now, 3, ours, 200, ("mine+x+1999",), None, 800)),
            format_event(RecoEvent(now, 4, ours, 0, (), "java.net.ConnectException: Connection refused", 3)),
            format_event(RecoEvent(now, 5, ours, 503, (), "no model", 2)),
            format_event(WatchEvent(now, 6, "mine+x+1999", 3)),
            "garbage, not a line",
        ],
    )
    deadline = time.monotonic() + 60
    while sample(tail.registry, "movierec_site_requests_total", server=ours, outcome="error") < 1:
        assert time.monotonic() < deadline, "the tail never saw the lines"
        tail.poll(1.0)
    tail.close()
    counts = {
        outcome: sample(tail.registry, "movierec_site_requests_total", server=ours, outcome=outcome)
        for outcome in probe.OUTCOMES
    }
    assert counts == {"up": 2, "slow": 1, "timeout": 1, "error": 1}
    assert sample(tail.registry, "movierec_site_fallback_answers_total", server=ours) == 1
    assert sample(tail.registry, "movierec_site_requests_total", server="old:8082", outcome="timeout") == 0
    # the logged latency, in seconds: 4 of 5 at or under 50 ms
    assert sample(tail.registry, "movierec_site_request_latency_seconds_bucket", server=ours, le="0.05") == 4
    assert sample(tail.registry, "movierec_site_request_latency_seconds_count", server=ours) == 5


def test_ingest_lag_is_what_the_ingest_group_has_not_committed(kafka: Settings, tmp_path: Path) -> None:
    settings = private(kafka, tmp_path, "probe-lag")
    now = datetime(2026, 11, 30, 12, 0, 0)
    produce(settings, [format_event(WatchEvent(now, n, "mine+x+1999", n)) for n in range(100)])
    assert sample(probe.ingest_lag(settings), "movierec_ingest_lag_lines") == 100  # nothing committed yet
    group = Consumer({"bootstrap.servers": settings.kafka_bootstrap, "group.id": probe.INGEST_GROUP})
    try:
        ends = [group.get_watermark_offsets(TopicPartition(settings.topic, p), timeout=10)[1] for p in (0, 1)]
        committed = [TopicPartition(settings.topic, 0, ends[0]), TopicPartition(settings.topic, 1, 0)]
        group.commit(offsets=committed, asynchronous=False)
    finally:
        group.close()
    registry = probe.ingest_lag(settings)
    assert sample(registry, "movierec_ingest_lag_lines") == ends[1]
    assert sample(registry, "movierec_ingest_lag_seconds") >= 0
    assert sample(registry, "movierec_probe_last_success_timestamp_seconds", probe="ingest") > 0


def test_the_broker_down_is_a_zero_not_an_error(tmp_path: Path) -> None:
    settings = settings_module.load(
        {"MOVIEREC_HOME": str(tmp_path), "MOVIEREC_KAFKA_BOOTSTRAP": "127.0.0.1:9"}
    )
    assert sample(probe.kafka_health(settings), "movierec_kafka_up") == 0
