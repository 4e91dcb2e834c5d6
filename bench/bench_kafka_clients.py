"""Producer throughput of kafka-python vs confluent-kafka through the real broker.

Side by side in one run, same lines, same topic settings: the ratio decides which
client the bulk paths (backfill, replay) use. Run on demand:

    .venv/bin/python bench/bench_kafka_clients.py [--lines 300000]

It starts a private embedded broker on free ports (in a temporary home) and
stops it at the end.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path

from movierec.movielog import WatchEvent, format_event
from movierec.ops.broker import broker


def sample_lines(count: int) -> list[tuple[bytes, bytes]]:
    start = datetime(2026, 11, 28, 10, 0, 0)
    out = []
    for n in range(count):
        user = n * 7919 % 1_000_000 + 1
        event = WatchEvent(start + timedelta(milliseconds=n), user, f"movie+{n % 27_000}+1999", n % 120)
        out.append((str(user).encode(), format_event(event).encode()))
    return out


def with_kafka_python(bootstrap: str, topic: str, lines: list[tuple[bytes, bytes]]) -> None:
    from kafka import KafkaProducer

    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=20, batch_size=512 * 1024)
    for key, value in lines:
        producer.send(topic, value=value, key=key)
    producer.flush()
    producer.close()


def with_confluent_kafka(bootstrap: str, topic: str, lines: list[tuple[bytes, bytes]]) -> None:
    from confluent_kafka import Producer

    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            "acks": "all",
            "enable.idempotence": True,
            "linger.ms": 20,
            "batch.size": 1_000_000,
            "compression.type": "lz4",
            "queue.buffering.max.messages": 1_000_000,
        }
    )
    for key, value in lines:
        while True:
            try:
                producer.produce(topic, value, key)
                break
            except BufferError:  # local queue full: let the I/O thread drain it
                producer.poll(0.01)
    producer.flush()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=300_000)
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="bench-kafka-"))
    settings = broker.private_settings(home)
    lines = sample_lines(args.lines)
    clients: dict[str, Callable[[str, str, list[tuple[bytes, bytes]]], None]] = {
        "kafka-python 3.0": with_kafka_python,
        "confluent-kafka (librdkafka)": with_confluent_kafka,
    }
    broker.start(settings)
    try:
        rates = {}
        for name, produce in clients.items():
            topic = f"bench.{len(rates)}"
            broker.ensure_topic(settings, topic, partitions=4)
            started = time.perf_counter()
            produce(settings.kafka_bootstrap, topic, lines)
            rates[name] = args.lines / (time.perf_counter() - started)
    finally:
        broker.stop(settings)
    baseline = rates["kafka-python 3.0"]
    print(f"{args.lines:,} movielog lines, acks=all, 4 partitions, keyed by user")
    print(f"{'client':<30} {'lines/s':>12} {'ratio':>7}")
    for name, rate in rates.items():
        print(f"{name:<30} {rate:>12,.0f} {rate / baseline:>6.1f}x")


if __name__ == "__main__":
    main()
