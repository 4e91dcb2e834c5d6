"""Writing lines to a Kafka topic in bulk: the simulated site's stream, replayed archives.

One line per message, keyed by user id (so one user's lines stay in order on
one partition), through librdkafka (confluent-kafka): kafka-python tops out near
35,000 lines/s here, librdkafka near 270,000 (bench/bench_kafka_clients.py).
"""

from __future__ import annotations

import logging
import time
from types import TracebackType

from confluent_kafka import KafkaError, Message, Producer

from movierec.settings import Settings

log = logging.getLogger(__name__)


class DeliveryError(RuntimeError):
    """The broker did not take some lines (after librdkafka's own retries)."""


class TopicWriter:
    """Buffered, idempotent producer of movielog lines with running counts (callers report progress)."""

    def __init__(self, settings: Settings, topic: str | None = None) -> None:
        self.topic = topic or settings.topic
        self._producer: Producer | None = Producer(
            {
                "bootstrap.servers": settings.kafka_bootstrap,
                "client.id": "movierec-writer",
                "acks": "all",
                "enable.idempotence": True,  # a retried batch is not written twice
                "linger.ms": 20,
                "batch.size": 1_000_000,
                "message.timeout.ms": 60_000,  # then a line counts as refused, never silently dropped
                "queue.buffering.max.messages": 1_000_000,
                # A backfill writes millions of lines: no Python callback per acknowledged one, only
                # per refused one; the acknowledged are counted (see ``delivered``).
                "delivery.report.only.error": True,
                "on_delivery": self._refused,
            },
            logger=log,  # librdkafka's own messages go to our log, not raw stderr
        )
        self.sent = 0
        self.failed = 0
        self._last_error: KafkaError | None = None
        self._started = time.monotonic()

    def write(self, line: str | bytes, user_id: int | bytes | None) -> None:
        producer = self._live()
        value = line.encode() if isinstance(line, str) else line
        key = str(user_id).encode() if isinstance(user_id, int) else user_id
        while True:
            try:
                producer.produce(self.topic, value, key)
                break
            except BufferError:  # local queue full: let the I/O thread drain it
                producer.poll(0.05)
        self.sent += 1
        if self.sent % 10_000 == 0:
            producer.poll(0)  # serve refusal reports

    def _refused(self, error: KafkaError | None, _message: Message) -> None:
        if error is not None:  # only refusals are reported (delivery.report.only.error)
            self.failed += 1
            self._last_error = error

    def _live(self) -> Producer:
        if self._producer is None:
            raise RuntimeError("this TopicWriter is closed")
        return self._producer

    @property
    def delivered(self) -> int:
        """Lines the broker acknowledged: each line sent is queued, in flight, refused or acknowledged
        (a refusal not yet reported counts as queued until ``flush`` serves it)."""
        queued = 0 if self._producer is None else len(self._producer)
        return max(0, self.sent - queued - self.failed)

    def flush(self, timeout: float = 120.0) -> None:
        """Wait until every line is acknowledged; raise if any was refused."""
        remaining = self._live().flush(timeout)
        if remaining:
            raise DeliveryError(f"{remaining} lines still unacknowledged after {timeout:.0f} s")
        if self.failed:
            raise DeliveryError(f"{self.failed} lines refused by the broker (last: {self._last_error})")

    @property
    def rate(self) -> float:
        return self.sent / max(time.monotonic() - self._started, 1e-9)

    def close(self) -> None:
        """Flush what is pending and drop the connection."""
        self.flush()
        self._producer = None

    def __enter__(self) -> TopicWriter:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, trace: TracebackType | None
    ) -> None:
        if kind is None:
            self.close()
        elif self._producer is not None:
            self._producer.flush(10)
            self._producer = None
