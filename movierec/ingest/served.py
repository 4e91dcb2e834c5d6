"""Ingest the service's provenance records (topic ``movierec.served``) into the lake, exactly once.

Online metrics join what the site logged (reco lines) with what we served (which model version
and experiment variant answered); experiments are analysed from those labels over weeks, longer
than the topic keeps records (14 days). So the records are ingested like the movielog, with the
same protocol and the same guarantees (``movierec.ingest.consume``): plan the offset ranges into a
manifest, read exactly those, check them (Great Expectations suite ``served``), write one Parquet
file per hour named after the batch, record the files, commit the offsets. A crash anywhere is
redone with the same ranges and the same file names, so nothing is lost or doubled.

    served/date=YYYY-MM-DD/hour=HH/part-<batch_id>.parquet      by the answer's UTC time
    _manifests/served/<batch_id>.json                           (apart from the movielog's)

A record that is not the JSON the service writes goes to ``quarantine`` (stage ``served``) with
its reason, as does a row the expectations refuse (stage ``quality``); neither is lost.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa

from movierec import lake
from movierec.ingest import consume
from movierec.schemas import QUARANTINE, RAW, SERVED
from movierec.settings import Settings

log = logging.getLogger(__name__)

FEED = "served"
GROUP_ID = "movierec-served-ingest"
REQUIRED = ("request_id", "time", "status")


class ServedRecordError(ValueError):
    """A served record that is not what the service writes; the message is the quarantine reason."""


def parse_record(value: bytes) -> dict[str, Any]:
    """One record's value -> a row of ``SERVED`` (without its Kafka coordinates); pure."""
    try:
        record = json.loads(value)
    except (UnicodeDecodeError, ValueError):
        raise ServedRecordError("served_not_json") from None
    if not isinstance(record, dict):
        raise ServedRecordError("served_not_object")
    if any(record.get(key) is None for key in REQUIRED):
        raise ServedRecordError("served_missing_field")
    try:
        moment = datetime.fromisoformat(str(record["time"]))
        status = int(record["status"])
        user = record.get("user_id")
        row = {
            "request_id": str(record["request_id"]),
            "time": moment if moment.tzinfo else moment.replace(tzinfo=UTC),
            "user_id": None if user is None else int(user),
            "variant": _text(record.get("variant")),
            "model_version": _text(record.get("model_version")),
            "items": _text(record.get("items")),
            "fallback": bool(record.get("fallback", False)),
            "latency_ms": float(record.get("latency_ms") or 0.0),
            "status": status,
            "reason": _text(record.get("reason")),
            "client": _text(record.get("client")),
        }
    except (TypeError, ValueError):
        raise ServedRecordError("served_bad_value") from None
    if not -(2**15) <= status < 2**15:
        raise ServedRecordError("served_bad_value")
    return row


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def build_tables(records: list[consume.Record]) -> dict[str, pa.Table]:
    """Records -> this batch's ``served`` rows, its refused records as ``quarantine`` rows, and a raw
    view (not stored: the records are ours, their JSON is the served row) for quarantining rows."""
    rows: list[dict[str, Any]] = []
    bad: list[dict[str, Any]] = []
    raw: list[dict[str, Any]] = []
    for record in records:
        text = record.value.decode("utf-8", "backslashreplace")
        source = {"partition": record.partition, "offset": record.offset}
        raw.append(source | {"kafka_time": record.kafka_ms, "line": text, "raw_bytes": None})
        try:
            rows.append(parse_record(record.value) | source)
        except ServedRecordError as exc:
            bad.append(
                source
                | {
                    "kafka_time": record.kafka_ms,
                    "line": text,
                    "stage": FEED,
                    "reason": str(exc),
                    "detail": None,
                }
            )
    return {
        "served": pa.Table.from_pylist(rows, schema=SERVED),
        "quarantine": pa.Table.from_pylist(bad, schema=QUARANTINE),
        "raw": pa.Table.from_pylist(raw, schema=RAW),
    }


# --- Kafka and files ---------------------------------------------------------------------------


def feed_settings(settings: Settings) -> Settings:
    """The settings consume's Kafka helpers read the topic from, pointed at the served topic."""
    return replace(settings, topic=settings.served_topic)


def write_files(settings: Settings, batch_id: str, tables: dict[str, pa.Table]) -> dict[str, list[dict]]:
    """One file per (table, hour) named after the batch; served by answer time, quarantine by arrival."""
    written: dict[str, list[dict[str, Any]]] = {}
    for name, column in (("served", "time"), ("quarantine", "kafka_time")):
        for (day, hour), part in sorted(consume.split_by_hour(tables[name], column).items()):
            path = lake.hour_dir(settings, name, day, hour) / lake.batch_file_name(batch_id)
            lake.write_parquet_atomically(part, path)
            entry = {
                "path": lake.relative_path(settings, path),
                "rows": part.num_rows,
                "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
            }
            written.setdefault(name, []).append(entry)
    return written


def apply_quality(settings: Settings, batch_id: str, tables: dict[str, pa.Table]) -> dict[str, pa.Table]:
    """Rows the ``served`` suite refuses go to quarantine; too many fail the batch."""
    from movierec.ingest.quality import check_tables

    result = check_tables(settings, {"served": tables["served"]}, batch_id)
    result.raise_if_failed()
    mask = result.bad_rows.get("served")
    if mask is None or not mask.any():
        return tables
    refused = consume.quarantine_rows(tables["served"], mask, result.reasons["served"], tables["raw"])
    return tables | {
        "served": tables["served"].filter(pa.array(~mask)),
        "quarantine": pa.concat_tables([tables["quarantine"], refused]),
    }


# --- the batch ------------------------------------------------------------------------------


def ingest_served(settings: Settings) -> dict[str, Any]:
    """Ingest the next batch of served records (or finish an interrupted one); what was done."""
    feed = feed_settings(settings)
    consumer = consume.consumer_of(settings, GROUP_ID)
    try:
        pending = [m for m in lake.load_manifests(settings, FEED) if m.state != "committed"]
        if len(pending) > 1:
            raise RuntimeError(f"more than one unfinished served batch: {[m.batch_id for m in pending]}")
        manifest = pending[0] if pending else None
        if manifest is not None:
            committed = consume.committed_offsets(feed, consumer, [r.partition for r in manifest.ranges])
            done = all(committed.get(r.partition) == r.end for r in manifest.ranges)
            if done and manifest.state == "written":
                log.info("served batch %s was committed before a crash; marking it so", manifest.batch_id)
                manifest.state = "committed"
                lake.save_manifest(settings, manifest, FEED)
                manifest = None
            else:
                removed = consume.remove_batch_files(settings, manifest.batch_id)
                log.warning("redoing served batch %s (%d old files removed)", manifest.batch_id, removed)
        if manifest is None:
            ranges = consume.plan_ranges(feed, consumer)
            if not ranges:
                log.info("nothing new on %s", feed.topic)
                return {"batch_id": None, "records": 0}
            manifest = lake.Manifest(consume.batch_id_for(feed.topic, ranges), feed.topic, ranges)
            manifest.planned_at = datetime.now().isoformat(timespec="seconds")
            lake.save_manifest(settings, manifest, FEED)
        return _run(settings, feed, consumer, manifest)
    finally:
        consumer.close()


def _run(settings: Settings, feed: Settings, consumer: Any, manifest: lake.Manifest) -> dict[str, Any]:
    began = time.monotonic()
    log.info("served batch %s: %d records in %s", manifest.batch_id, manifest.lines, manifest.ranges)
    tables = build_tables(consume.read_ranges(feed, consumer, manifest.ranges))
    tables = apply_quality(settings, manifest.batch_id, tables)
    manifest.files = write_files(settings, manifest.batch_id, tables)
    manifest.counts = {name: tables[name].num_rows for name in ("served", "quarantine", "raw")}
    manifest.state = "written"
    lake.save_manifest(settings, manifest, FEED)
    consume.commit_offsets(feed, consumer, manifest.ranges)
    manifest.state = "committed"
    lake.save_manifest(settings, manifest, FEED)
    seconds = round(time.monotonic() - began, 3)
    log.info("served batch %s done: %s in %.1f s", manifest.batch_id, manifest.counts, seconds)
    return {"batch_id": manifest.batch_id, "records": manifest.counts["raw"], "counts": manifest.counts,
            "seconds": seconds}  # fmt: skip
