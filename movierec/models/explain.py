"""``movierec explain <userid> [--at TIME]``: from an answer served back to the model and its data.

The service records every answer on the served topic (server/provenance.py),
keyed by user id with the Java client's murmur2 partitioner, so one user's
records all sit in one known partition. This module reads that partition up to
its end (or to a little past ``--at``), keeps the user's latest 200 answer at or
before the time, then opens that version's serving file read-only and returns
its meta: version, pipeline commit, parameters and the data manifest.
"""

from __future__ import annotations

import json
import logging
import sys
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from kafka.partitioner.default import murmur2

from movierec import serving_file
from movierec.settings import Settings

log = logging.getLogger(__name__)

PROGRESS_EVERY = 500_000
_AT_MARGIN = timedelta(seconds=30)  # records are timestamped by the worker, not the broker: allow skew


class ExplainError(RuntimeError):
    """Nothing to explain (no record, or its serving file is gone); the message says what."""


@dataclass(frozen=True)
class Explanation:
    served: dict[str, Any]
    serving_file: Path
    meta: dict[str, str]

    def as_dict(self) -> dict[str, Any]:
        meta = {key: _maybe_json(value) for key, value in self.meta.items()}
        return {"served": self.served, "serving_file": str(self.serving_file), "meta": meta}


def partition_of(user_id: int, partitions: int) -> int:
    """The partition the service's producer (murmur2, like Java clients) put this user's records in."""
    return (murmur2(str(user_id).encode()) & 0x7FFFFFFF) % partitions


def parse_time(text: str) -> datetime:
    """ISO 8601; without an offset it is this machine's local time."""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ExplainError(f"--at {text!r} is not an ISO 8601 time (e.g. 2026-11-28T10:15:02)") from None
    return moment if moment.tzinfo else moment.astimezone()


def latest_served(records: list[dict[str, Any]], user_id: int, at: datetime | None) -> dict[str, Any] | None:
    """The user's last 200 answer (by its own time) at or before ``at``, of ``records`` in any order."""
    best: tuple[datetime, dict[str, Any]] | None = None
    for record in records:
        if record.get("user_id") != user_id or record.get("status") != 200 or not record.get("model_version"):
            continue
        try:
            moment = datetime.fromisoformat(record["time"])
        except (KeyError, TypeError, ValueError):
            continue
        if at is not None and moment > at:
            continue
        if best is None or moment >= best[0]:
            best = (moment, record)
    return None if best is None else best[1]


def read_user_records(settings: Settings, user_id: int, at: datetime | None) -> list[dict[str, Any]]:
    """Every record of ``user_id`` in its partition of the served topic (up to a little past ``at``)."""
    from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, TopicPartition

    consumer = Consumer(
        {
            "bootstrap.servers": settings.kafka_bootstrap,
            "group.id": "movierec-explain",  # required by librdkafka; nothing is committed
            "enable.auto.commit": False,
            "enable.partition.eof": False,
        },
        logger=log,
    )
    try:
        topic = settings.served_topic
        try:
            metadata = consumer.list_topics(topic, timeout=10)
        except KafkaException as exc:
            raise ExplainError(f"cannot reach Kafka at {settings.kafka_bootstrap}: {exc}") from None
        described = metadata.topics.get(topic)
        if described is None or described.error is not None or not described.partitions:
            raise ExplainError(f"topic {topic} does not exist: nothing has been served yet")
        partition = partition_of(user_id, len(described.partitions))
        low, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)
        end = high
        if at is not None:
            stamp = int((at + _AT_MARGIN).timestamp() * 1000)
            found = consumer.offsets_for_times([TopicPartition(topic, partition, stamp)], timeout=10)[0]
            if found.offset >= 0:
                end = min(high, found.offset)
        consumer.assign([TopicPartition(topic, partition, OFFSET_BEGINNING)])
        return _scan(consumer, user_id, low, end, f"{topic}[{partition}]")
    finally:
        consumer.close()


def _scan(consumer: Any, user_id: int, low: int, end: int, where: str) -> list[dict[str, Any]]:
    key = str(user_id).encode()
    matches: list[dict[str, Any]] = []
    read = idle = 0
    position = low
    while position < end:
        messages = consumer.consume(10_000, timeout=5)
        idle = 0 if messages else idle + 1
        if idle == 3:
            raise ExplainError(f"reading {where}: no records for 15 s at offset {position} (of {end})")
        for message in messages:
            if message.error():
                raise ExplainError(f"reading {where}: {message.error()}")
            position = message.offset() + 1
            if message.offset() >= end:
                break
            read += 1
            if read % PROGRESS_EVERY == 0:
                print(f"explain: {read:,} of {end - low:,} records of {where} read", file=sys.stderr)
            if message.key() == key:
                try:
                    matches.append(json.loads(message.value()))
                except ValueError:
                    continue  # not a record of ours: nothing to explain in it
    return matches


def explain(settings: Settings, user_id: int, at: datetime | None = None) -> Explanation:
    served = latest_served(read_user_records(settings, user_id, at), user_id, at)
    if served is None:
        when = f" at or before {at.isoformat()}" if at else ""
        raise ExplainError(f"no answer served to user {user_id}{when} on {settings.served_topic}")
    try:
        path = serving_file.file_path(settings.serving_dir, served["model_version"])
    except ValueError as exc:
        raise ExplainError(f"user {user_id} was served at {served['time']}, but {exc}") from None
    if not path.exists():
        raise ExplainError(
            f"user {user_id} was served model {served['model_version']} at {served['time']}, "
            f"but {path} is no longer kept (MOVIEREC_KEEP_VERSIONS={settings.keep_versions})"
        )
    return Explanation(served, path, serving_file.read_meta(path))


def render(explanation: Explanation) -> str:
    """The explanation for a person: the answer, then the model's provenance."""
    served, meta = explanation.served, explanation.meta
    lines = [
        f"user {served['user_id']} was served at {served['time']} (request {served['request_id']}, "
        f"variant {served.get('variant') or '-'}):",
        f"  {served['items']}",
        f"model version  {meta.get('model_version')}",
        f"created at     {meta.get('created_at')}",
        f"git commit     {meta.get('git_commit')}",
        f"serving file   {explanation.serving_file}",
    ]
    for key in ("params", "data_manifest", "metrics"):
        value = _maybe_json(meta.get(key, ""))
        shown = json.dumps(value, indent=2, sort_keys=True) if not isinstance(value, str) else value
        lines.append(f"{key}:")
        lines.extend(f"  {line}" for line in shown.splitlines())
    return "\n".join(lines)


def _maybe_json(text: str | None) -> Any:
    try:
        return json.loads(text) if text else text
    except ValueError:
        return text
