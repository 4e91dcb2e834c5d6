"""The bulk topic writer against the real broker."""

from __future__ import annotations

import pytest
from kafka import KafkaConsumer

from movierec import settings as settings_module
from movierec.ingest.stream import DeliveryError, TopicWriter
from movierec.ops.broker import broker
from tests.test_kafka_broker import consume, movielog_lines


@pytest.mark.kafka
def test_every_line_arrives_once_keyed_by_user(kafka: settings_module.Settings) -> None:
    topic = "writer.test"
    broker.ensure_topic(kafka, topic, partitions=4)
    lines = movielog_lines(5_000, seed=3)
    with TopicWriter(kafka, topic) as writer:
        for line in lines:
            writer.write(line, int(line.split(",", 2)[1]))
    assert (writer.sent, writer.delivered, writer.failed) == (5_000, 5_000, 0)
    with pytest.raises(RuntimeError, match="closed"):
        writer.write(lines[0], 1)  # nothing is taken that would never be sent

    consumer = KafkaConsumer(topic, bootstrap_servers=kafka.kafka_bootstrap, auto_offset_reset="earliest")
    try:
        got = consume(consumer, 5_000)
        got += consume(consumer, 1, timeout=2)
    finally:
        consumer.close()
    assert sorted(line for _, _, line in got) == sorted(lines)
    partition_of_user: dict[str, set[int]] = {}
    for partition, _, line in got:
        partition_of_user.setdefault(line.split(",", 2)[1], set()).add(partition)
    assert all(len(partitions) == 1 for partitions in partition_of_user.values())


@pytest.mark.kafka
def test_lines_the_broker_refuses_are_reported(kafka: settings_module.Settings) -> None:
    writer = TopicWriter(kafka, "no.such.topic")  # auto-creation is off on our broker
    writer.write("2026-11-28T10:00:00,1,GET /rate/up+2009=5", 1)
    with pytest.raises(DeliveryError, match=r"unacknowledged|refused"):
        writer.flush(timeout=10)
    assert (writer.sent, writer.delivered) == (1, 0)  # a refused line never counts as delivered
    del writer
