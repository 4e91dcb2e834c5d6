"""Provenance: one JSON record per answer on the served topic, never in the way of the answer.

``record`` hands the record to librdkafka's in-memory queue and returns at once
(microseconds); librdkafka's own thread sends it. The queue holds at most
``settings.served_buffer`` records: while Kafka is down it fills, and past that
a record is dropped and counted, as is one the broker never acknowledged within
``DELIVERY_TIMEOUT_MS``. Answers never wait for Kafka.

Records are keyed by user id with the murmur2 partitioner (the Java client's),
so ``movierec explain`` knows the one partition that holds a user's answers.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

from confluent_kafka import KafkaError, Message, Producer

from movierec.settings import Settings

log = logging.getLogger(__name__)

DELIVERY_TIMEOUT_MS = 300_000  # what the buffer rides out: a broker restart, not a long outage
PARTITIONER = "murmur2_random"  # Java-compatible: explain computes the partition from the user id


class ServedRecorder:
    def __init__(
        self,
        settings: Settings,
        on_sent: Callable[[], None] = lambda: None,
        on_dropped: Callable[[str], None] = lambda reason: None,
    ) -> None:
        self.topic = settings.served_topic
        self._on_sent = on_sent
        self._on_dropped = on_dropped
        self._producer = Producer(
            {
                "bootstrap.servers": settings.kafka_bootstrap,
                "client.id": "movierec-server",
                "acks": "all",
                "enable.idempotence": True,
                "partitioner": PARTITIONER,
                "linger.ms": 50,
                "message.timeout.ms": DELIVERY_TIMEOUT_MS,
                "queue.buffering.max.messages": max(1, settings.served_buffer),
                "queue.buffering.max.kbytes": 1_048_576,  # the message count is the bound that matters
            },
            logger=log,
        )

    def record(self, record: dict[str, Any], timestamp_ms: int = 0) -> None:
        """Queue one record; ``timestamp_ms`` (its answer time) becomes the Kafka timestamp (0: now)."""
        value = json.dumps(record, separators=(",", ":"), ensure_ascii=False).encode()
        key = None if record.get("user_id") is None else str(record["user_id"]).encode()
        try:
            # The answer time as the Kafka timestamp lets explain --at seek by time (offsets_for_times).
            self._producer.produce(
                self.topic, value, key, on_delivery=self._delivered, timestamp=timestamp_ms
            )
        except BufferError:
            self._on_dropped("buffer_full")
        except Exception as exc:  # provenance must never fail an answer
            log.warning("provenance record not queued: %s", exc)
            self._on_dropped("error")

    def _delivered(self, error: KafkaError | None, _message: Message) -> None:
        if error is None:
            self._on_sent()
        else:
            self._on_dropped("undelivered")

    def poll(self) -> None:
        """Serve delivery callbacks (counts); cheap, called from the worker's background loop."""
        self._producer.poll(0)

    @property
    def queued(self) -> int:
        return len(self._producer)

    def close(self, timeout: float) -> int:
        """Send what is queued, waiting at most ``timeout`` seconds; the number of records left unsent."""
        left = self._producer.flush(timeout)
        if left:
            log.warning("%d provenance records unsent at shutdown", left)
            for _ in range(left):
                self._on_dropped("shutdown")
        return left
