"""The embedded broker: configuration (unit) and the real JVM (integration)."""

from __future__ import annotations

import base64
import os
import random
import subprocess
import sys
import time
from collections.abc import Iterable
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import ConfigResource, ConfigResourceType, KafkaAdminClient
from kafka.structs import OffsetAndMetadata

from movierec import settings as settings_module
from movierec.movielog import RateEvent, RecoEvent, WatchEvent, format_event, parse_line
from movierec.ops import supervisor
from movierec.ops.broker import broker
from movierec.ops.processes import is_alive
from tests.conftest import broker_settings

CLI = str(Path(sys.executable).parent / "movierec")


def movielog_lines(count: int, seed: int = 7) -> list[str]:
    """A realistic mix of the three line kinds, formatted by the grammar."""
    rng = random.Random(seed)
    start = datetime(2026, 11, 28, 10, 0, 0)
    slugs = [f"movie+{n}+{1950 + n % 75}" for n in range(300)]
    lines = []
    for n in range(count):
        moment = start + timedelta(milliseconds=137 * n)
        user = rng.randint(1, 1_000_000)
        roll = rng.random()
        if roll < 0.9:
            event = WatchEvent(moment, user, rng.choice(slugs), rng.randint(0, 120))
        elif roll < 0.95:
            event = RateEvent(moment, user, rng.choice(slugs), rng.randint(1, 5))
        else:
            items = tuple(rng.sample(slugs, 20))
            event = RecoEvent(moment, user, "movierec:8082", 200, items, None, rng.randint(3, 90))
        lines.append(format_event(event))
    return lines


def lines_by_user(lines: Iterable[str]) -> dict[str, list[str]]:
    grouped: dict[str, list[str]] = {}
    for line in lines:
        grouped.setdefault(line.split(",", 2)[1], []).append(line)
    return grouped


def produce(settings: settings_module.Settings, topic: str, lines: list[str]) -> None:
    producer = KafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all", linger_ms=5)
    try:
        for line in lines:
            user = line.split(",", 2)[1]
            producer.send(topic, value=line.encode(), key=user.encode())
        producer.flush(timeout=60)
    finally:
        producer.close()


def group_reader(settings: settings_module.Settings, topic: str, group: str) -> KafkaConsumer:
    """A consumer in ``group`` from its committed offset (else the earliest); commits only when told."""
    return KafkaConsumer(
        topic,
        bootstrap_servers=settings.kafka_bootstrap,
        group_id=group,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )


def consume(consumer: KafkaConsumer, count: int, timeout: float = 60.0) -> list[tuple[int, int, str]]:
    """Up to ``count`` records as (partition, offset, line); stops early only on timeout."""
    got: list[tuple[int, int, str]] = []
    deadline = time.monotonic() + timeout
    while len(got) < count and time.monotonic() < deadline:
        for records in consumer.poll(timeout_ms=500, max_records=count - len(got)).values():
            got += [(r.partition, r.offset, r.value.decode()) for r in records]
    return got


# --- configuration (no broker needed) ----------------------------------------


def test_server_properties_describe_one_kraft_node(tmp_path: Path) -> None:
    settings = settings_module.load(
        {
            "MOVIEREC_HOME": str(tmp_path),
            "MOVIEREC_KAFKA_BOOTSTRAP": "127.0.0.1:29092",
            "MOVIEREC_KAFKA_CONTROLLER_PORT": "29093",
        }
    )
    text = broker.server_properties(settings)
    properties = dict(line.split("=", 1) for line in text.splitlines() if line and not line.startswith("#"))
    assert properties["process.roles"] == "broker,controller"
    assert properties["listeners"] == "PLAINTEXT://127.0.0.1:29092,CONTROLLER://127.0.0.1:29093"
    assert properties["controller.quorum.voters"] == "1@127.0.0.1:29093"
    assert properties["log.dirs"] == str(tmp_path / "kafka" / "data")
    assert properties["auto.create.topics.enable"] == "false"
    assert properties["offsets.topic.replication.factor"] == "1"


@pytest.mark.parametrize("bootstrap", ["kafka-1.prod:9092", "127.0.0.1:9092,127.0.0.1:9094", "127.0.0.1"])
def test_embedded_broker_refuses_external_or_bad_bootstrap(bootstrap: str) -> None:
    settings = settings_module.load({"MOVIEREC_KAFKA_BOOTSTRAP": bootstrap})
    with pytest.raises(broker.BrokerError, match="MOVIEREC_KAFKA_BOOTSTRAP"):
        broker.listener(settings)


def test_cluster_id_is_16_random_bytes() -> None:
    first, second = broker.new_cluster_id(), broker.new_cluster_id()
    assert first != second
    assert len(base64.urlsafe_b64decode(first + "==")) == 16


def test_no_broker_is_reported_where_none_was_started(tmp_path: Path) -> None:
    settings = settings_module.load({"MOVIEREC_HOME": str(tmp_path)})
    assert broker.running_pid(settings) is None
    assert broker.stop(settings) is False


# --- the real broker ----------------------------------------------------------


@pytest.mark.kafka
def test_ten_thousand_lines_come_back_exactly(kafka: settings_module.Settings) -> None:
    topic = "roundtrip.test"
    assert broker.ensure_topic(kafka, topic, partitions=4)
    lines = movielog_lines(10_000)
    produce(kafka, topic, lines)

    consumer = KafkaConsumer(
        topic, bootstrap_servers=kafka.kafka_bootstrap, auto_offset_reset="earliest", group_id="roundtrip"
    )
    try:
        got = consume(consumer, 10_000)
        extra = consume(consumer, 1, timeout=3)  # nothing twice, nothing else
    finally:
        consumer.close()

    assert len(got) == 10_000
    assert extra == []
    assert sorted(line for _, _, line in got) == sorted(lines)
    # keyed by user, so each user's lines keep their order within a partition
    assert lines_by_user(line for _, _, line in sorted(got)) == lines_by_user(lines)
    assert {partition for partition, _, _ in got} == {0, 1, 2, 3}
    assert all(not hasattr(parse_line(line), "reason") for _, _, line in got)


@pytest.mark.kafka
def test_movielog_topic_has_explicit_partitions_and_retention(kafka: settings_module.Settings) -> None:
    admin = KafkaAdminClient(bootstrap_servers=kafka.kafka_bootstrap)
    try:
        described = admin.describe_topics([kafka.topic])
        configs = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, kafka.topic)])
    finally:
        admin.close()
    assert len(described[0]["partitions"]) == kafka.topic_partitions
    entries = configs["topic"][kafka.topic]
    assert entries["retention.ms"]["value"] == str(kafka.topic_retention_hours * 3600 * 1000)
    assert entries["message.timestamp.type"]["value"] == "LogAppendTime"
    assert not broker.ensure_topic(kafka, kafka.topic, partitions=1)  # existing topic left alone


@pytest.mark.kafka
def test_status_command_reports_the_broker_and_its_topics(kafka: settings_module.Settings) -> None:
    env = {
        "PATH": os.environ["PATH"],
        "MOVIEREC_HOME": str(kafka.home),
        "MOVIEREC_KAFKA_BOOTSTRAP": kafka.kafka_bootstrap,
    }
    result = subprocess.run([CLI, "kafka", "status"], env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert f"kafka {kafka.kafka_bootstrap} (embedded, pid " in result.stdout
    assert f"topic {kafka.topic}: {kafka.topic_partitions} partitions" in result.stdout

    env["MOVIEREC_KAFKA_BOOTSTRAP"] = "127.0.0.1:1"  # nothing listens there
    down = subprocess.run([CLI, "kafka", "status"], env=env, capture_output=True, text=True)
    assert down.returncode == 3
    assert "DOWN" in down.stdout


@pytest.mark.kafka
@pytest.mark.slow
def test_restart_keeps_committed_data_and_offsets(tmp_path: Path) -> None:
    settings = broker_settings(tmp_path)
    topic, group = "restart.test", "restart-group"
    lines = movielog_lines(2_000, seed=11)
    first_pid = broker.start(settings)
    try:
        assert broker.start(settings) == first_pid  # a second start finds it running
        broker.ensure_topic(settings, topic, partitions=1)
        produce(settings, topic, lines)
        reader = group_reader(settings, topic, group)
        first_half = consume(reader, 1_000)
        reader.commit({TopicPartition(topic, 0): OffsetAndMetadata(1_000, "", -1)})
        reader.close()
    finally:
        assert broker.stop(settings)
    assert broker.running_pid(settings) is None
    assert not is_alive(first_pid)  # no JVM left behind
    assert not supervisor.is_running(settings)  # nor the supervisor, once its last program stopped
    marker = broker.libs_dir(settings) / ".resolved"
    resolved_at = marker.stat().st_mtime

    second_pid = broker.start(settings)
    try:
        assert second_pid != first_pid
        assert marker.stat().st_mtime == resolved_at  # the jar cache was reused, no Maven run
        resumed = group_reader(settings, topic, group)
        rest = consume(resumed, 1_000)
        rest += consume(resumed, 1, timeout=3)
        resumed.close()
        everything = KafkaConsumer(
            topic, bootstrap_servers=settings.kafka_bootstrap, auto_offset_reset="earliest"
        )
        all_again = consume(everything, 2_000)
        everything.close()
    finally:
        broker.stop(settings)

    assert [line for _, _, line in first_half] == lines[:1_000]
    assert [offset for _, offset, _ in rest] == list(range(1_000, 2_000))
    assert [line for _, _, line in rest] == lines[1_000:]
    assert [line for _, _, line in all_again] == lines


def test_storage_formats_with_a_cluster_id_that_looks_like_an_option(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = broker_settings(tmp_path)
    monkeypatch.setattr(broker, "new_cluster_id", lambda: "-Ab3dEfGhIjKlMnOpQrStU")  # base64url may start so
    broker.prepare(settings)
    meta = (broker.data_dir(settings) / "meta.properties").read_text()
    assert "cluster.id=-Ab3dEfGhIjKlMnOpQrStU" in meta
