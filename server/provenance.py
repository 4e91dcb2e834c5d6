"""Provenance: one JSON record per answer on the served topic, never in the way of the answer.

``send`` hands a record to librdkafka's in-memory queue and returns at once
(microseconds); librdkafka's own thread batches and sends it. The queue holds at
most ``settings.served_buffer`` records: while Kafka is down it fills, and past
that a record is dropped and counted, as is one the broker never acknowledged
within ``DELIVERY_TIMEOUT_MS``. Answers never wait for Kafka.

Per answer the service does only what must differ per answer: ``answer_record``
writes the record's JSON directly (the fixed parts are constant strings), and
librdkafka reports failed deliveries only (``delivery.report.only.error``); the
acknowledged count is derived in ``poll`` (accepted - still queued - failed), so
no Python callback runs per record.

Records are keyed by user id with the murmur2 partitioner (the Java client's),
so ``movierec explain`` knows the one partition that holds a user's answers.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from typing import Any

from confluent_kafka import KafkaError, Message, Producer

from movierec.settings import Settings

log = logging.getLogger(__name__)

DELIVERY_TIMEOUT_MS = 300_000  # what the buffer rides out: a broker restart, not a long outage
PARTITIONER = "murmur2_random"  # Java-compatible: explain computes the partition from the user id


class AnswerTime:
    """The record's ``time`` field (UTC ISO 8601, milliseconds), the seconds part formatted once a second."""

    def __init__(self) -> None:
        self._second = -1
        self._prefix = ""

    def format(self, now: float) -> str:
        millis = int(now * 1000)
        second, milli = divmod(millis, 1000)
        if second != self._second:
            self._second = second
            self._prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        return f"{self._prefix}.{milli:03d}+00:00"


# printable ASCII but '"' and '\\': the characters a JSON string holds as they are
_PLAIN = bytes(range(0x20, 0x7F)).replace(b'"', b"").replace(b"\\", b"")
_QUOTED_LIMIT = 4096
_quoted: dict[str, str] = {}  # versions, variants and client addresses repeat: each quoted once


def _json(value: str | None) -> str:
    """A JSON string for a value that repeats (a version, a variant, an address)."""
    if value is None:
        return "null"
    quoted = _quoted.get(value)
    if quoted is None:
        quoted = json.dumps(value, ensure_ascii=False)
        if len(_quoted) < _QUOTED_LIMIT:
            _quoted[value] = quoted
    return quoted


def _json_once(value: str) -> str:
    """A JSON string for a value seen once (a request id): letters and digits need no escaping."""
    if value.isascii() and value.isalnum():
        return f'"{value}"'
    return json.dumps(value, ensure_ascii=False)


def _json_line(line: bytes | None) -> str:
    """The stored line as a JSON string; a line of plain characters (every valid one) as it is."""
    if line is None:
        return "null"
    if not line.translate(None, _PLAIN):
        return f'"{line.decode("ascii")}"'
    return json.dumps(line.decode(errors="replace"), ensure_ascii=False)


def answer_record(
    request_id: str,
    time_text: str,
    user_id: int | None,
    variant: str | None,
    model_version: str | None,
    items: bytes | None,
    fallback: bool,
    latency_ms: float,
    status: int,
    client: str,
    reason: str = "",
) -> bytes:
    """The served record of one answer as compact JSON, the fields in DESIGN.md's order.

    The same bytes ``json.dumps(record, separators=(",", ":"), ensure_ascii=False)`` gives
    for the record as a dict (tests/test_server_provenance.py), built without the dict.
    """
    text = (
        f'{{"request_id":{_json_once(request_id)},"time":"{time_text}",'
        f'"user_id":{"null" if user_id is None else user_id},"variant":{_json(variant)},'
        f'"model_version":{_json(model_version)},'
        f'"items":{_json_line(items)},'
        f'"fallback":{"true" if fallback else "false"},"latency_ms":{latency_ms!r},'
        f'"status":{status},"client":{_json(client)}'
    )
    if reason:
        text += f',"reason":{json.dumps(reason, ensure_ascii=False)}'
    return (text + "}").encode()


def producer_config(settings: Settings) -> dict[str, Any]:
    """The librdkafka settings of a producer of served records (``ServedRecorder``, its benches)."""
    return {
        "bootstrap.servers": settings.kafka_bootstrap,
        "client.id": "movierec-server",
        "acks": "all",
        "enable.idempotence": True,
        "partitioner": PARTITIONER,
        "linger.ms": 50,
        "message.timeout.ms": DELIVERY_TIMEOUT_MS,
        "queue.buffering.max.messages": max(1, settings.served_buffer),
        "queue.buffering.max.kbytes": 1_048_576,  # the message count is the bound that matters
        "delivery.report.only.error": True,  # successes are counted in poll, not called back
    }


class ServedRecorder:
    def __init__(
        self,
        settings: Settings,
        on_sent: Callable[[int], None] = lambda count: None,
        on_dropped: Callable[[str], None] = lambda reason: None,
    ) -> None:
        self.topic = settings.served_topic
        self._on_sent = on_sent
        self._on_dropped = on_dropped
        self._accepted = 0  # records librdkafka took
        self._failed = 0  # of those, reported undelivered
        self._acked = 0  # acknowledged records already reported to on_sent
        self._producer = Producer(
            {
                **producer_config(settings),
                "on_delivery": self._delivered,
            },
            logger=log,
        )

    def record(self, record: dict[str, Any], timestamp_ms: int = 0) -> None:
        """Queue one record given as a dict (tools, tests); the service itself uses ``send``."""
        value = json.dumps(record, separators=(",", ":"), ensure_ascii=False).encode()
        self.send(value, record.get("user_id"), timestamp_ms)

    def send(self, value: bytes, user_id: int | None, timestamp_ms: int = 0) -> None:
        """Queue one encoded record; ``timestamp_ms`` (the answer time) is its Kafka timestamp (0: now)."""
        key = None if user_id is None else str(user_id).encode()
        try:
            # The answer time as the Kafka timestamp lets explain --at seek by time (offsets_for_times).
            self._producer.produce(self.topic, value, key, timestamp=timestamp_ms)
        except BufferError:
            self._on_dropped("buffer_full")
            return
        except Exception as exc:  # provenance must never fail an answer
            log.warning("provenance record not queued: %s", exc)
            self._on_dropped("error")
            return
        self._accepted += 1

    def _delivered(self, error: KafkaError | None, _message: Message) -> None:
        if error is not None:  # only failures are reported (delivery.report.only.error)
            self._failed += 1
            self._on_dropped("undelivered")

    def poll(self) -> None:
        """Serve failure reports and count what the broker acknowledged since the last poll (cheap)."""
        self._producer.poll(0)
        # Every accepted record is queued, in flight, failed or acknowledged. A failure still waiting
        # to be served may be counted twice in len() for a moment: never report fewer than before.
        acked = self._accepted - len(self._producer) - self._failed
        if acked > self._acked:
            self._on_sent(acked - self._acked)
            self._acked = acked

    @property
    def queued(self) -> int:
        return len(self._producer)

    def close(self, timeout: float) -> int:
        """Send what is queued, waiting at most ``timeout`` seconds; the number of records left unsent."""
        left = self._producer.flush(timeout)
        self.poll()
        if left:
            log.warning("%d provenance records unsent at shutdown", left)
            for _ in range(left):
                self._on_dropped("shutdown")
        return left
