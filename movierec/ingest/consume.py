"""Ingest one batch of the movielog topic into the lake: nothing lost, nothing twice.

A batch is the offset range from the group's committed offsets to the
high-water marks seen when the batch is planned. Its life, each step durable
before the next:

1. plan     the ranges go into a manifest (``state: planned``); the batch id is
            derived from the ranges, so the same ranges always give the same id;
2. read     exactly those ranges (the topic may grow meanwhile: not our batch);
3. parse    with the movielog grammar into raw, watch, rate, reco, quarantine;
4. check    data quality (Great Expectations); failing rows are quarantined,
            too many fail the batch (nothing is committed, the task is red);
5. write    one Parquet file per (table, partition) named after the batch,
            then the manifest with checksums (``state: written``);
6. commit   the end offsets to the consumer group (``state: committed``).

A crash anywhere is healed by the next run: an unfinished manifest is redone
with its own ranges (its files are replaced, never added to), unless the
group's offsets show it was committed, in which case it is only marked so.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from typing import Any, NamedTuple, TypeVar

import pyarrow as pa
import pyarrow.compute as pc

from movierec import lake
from movierec.files import sha256_of
from movierec.lake import Manifest, PartitionRange
from movierec.movielog import Malformed, RateEvent, RecoEvent, WatchEvent, parse_line
from movierec.schemas import EVENT_TABLES, QUARANTINE, RAW, TABLES
from movierec.settings import Settings

log = logging.getLogger(__name__)

GROUP_ID = "movierec-ingest"
T = TypeVar("T")


class Record(NamedTuple):
    """One Kafka message of the movielog topic."""

    partition: int
    offset: int
    kafka_ms: int
    value: bytes


def batch_id_for(topic: str, ranges: Sequence[PartitionRange]) -> str:
    """Deterministic in the ranges: a redone batch has the same id, so it replaces its own files."""
    key = json.dumps(
        [topic, [(r.partition, r.start, r.end) for r in sorted(ranges, key=lambda r: r.partition)]]
    )
    first = min(r.start for r in ranges)
    return f"{first:012d}-{hashlib.sha256(key.encode()).hexdigest()[:12]}"


# --- parsing: pure ----------------------------------------------------------------


def build_tables(records: Iterable[Record]) -> dict[str, pa.Table]:
    """Records -> the lake tables of this batch (raw, watch, rate, reco, quarantine)."""
    raw: dict[str, list[Any]] = defaultdict(list)
    typed: dict[str, dict[str, list[Any]]] = {name: defaultdict(list) for name in EVENT_TABLES}
    bad: dict[str, list[Any]] = defaultdict(list)
    for record in records:
        parsed = parse_line(record.value)
        try:
            text = record.value.decode("utf-8")
            original = None
        except UnicodeDecodeError:
            text = record.value.decode("utf-8", "backslashreplace")
            original = record.value
        raw["partition"].append(record.partition)
        raw["offset"].append(record.offset)
        raw["kafka_time"].append(record.kafka_ms)
        raw["line"].append(text)
        raw["raw_bytes"].append(original)
        if isinstance(parsed, Malformed):
            for column, value in (
                ("partition", record.partition),
                ("offset", record.offset),
                ("kafka_time", record.kafka_ms),
                ("line", text),
                ("stage", "parse"),
                ("reason", parsed.reason.value),
                ("detail", parsed.detail or None),
            ):
                bad[column].append(value)
            continue
        columns = typed[parsed.kind]
        columns["time"].append(parsed.time)
        columns["user_id"].append(parsed.user_id)
        if isinstance(parsed, WatchEvent):
            columns["movie_id"].append(parsed.movie_id)
            columns["minute"].append(parsed.minute)
        elif isinstance(parsed, RateEvent):
            columns["movie_id"].append(parsed.movie_id)
            columns["rating"].append(parsed.rating)
        elif isinstance(parsed, RecoEvent):
            columns["server"].append(parsed.server)
            columns["status"].append(parsed.status)
            columns["items"].append(list(parsed.items))
            columns["error"].append(parsed.error)
            columns["latency_ms"].append(parsed.latency_ms)
        columns["partition"].append(record.partition)
        columns["offset"].append(record.offset)
    tables = {"raw": _table(raw, RAW), "quarantine": _table(bad, QUARANTINE)}
    for name, schema in EVENT_TABLES.items():
        tables[name] = _table(typed[name], schema)
    return tables


def _table(columns: dict[str, list[Any]], schema: pa.Schema) -> pa.Table:
    if not columns:
        return schema.empty_table()
    return pa.Table.from_pydict({name: columns[name] for name in schema.names}, schema=schema)


def quarantine_rows(
    table: pa.Table, mask: Sequence[bool], reasons: Sequence[str | None], raw: pa.Table
) -> pa.Table:
    """Rows of a typed table that failed quality, as quarantine rows (their raw line looked up by offset)."""
    picked = table.filter(pa.array(mask, pa.bool_()))
    if picked.num_rows == 0:
        return QUARANTINE.empty_table()
    raw_keys = zip(raw["partition"].to_pylist(), raw["offset"].to_pylist(), strict=True)
    raw_index = {key: i for i, key in enumerate(raw_keys)}
    picked_keys = zip(picked["partition"].to_pylist(), picked["offset"].to_pylist(), strict=True)
    rows = [raw_index[key] for key in picked_keys]
    source = raw.take(pa.array(rows, pa.int64()))
    why = [reason for reason, bad in zip(reasons, mask, strict=True) if bad]
    return pa.table(
        {
            "partition": source["partition"],
            "offset": source["offset"],
            "kafka_time": source["kafka_time"],
            "line": source["line"],
            "stage": pa.array(["quality"] * picked.num_rows, pa.string()),
            "reason": pa.array([r or "quality" for r in why], pa.string()),
            "detail": pa.nulls(picked.num_rows, pa.string()),
        },
        schema=QUARANTINE,
    )


def split_by_hour(table: pa.Table, time_column: str) -> dict[tuple[str, str], pa.Table]:
    """The rows of ``table`` grouped by the (date, hour) of ``time_column``."""
    if table.num_rows == 0:
        return {}
    times = table[time_column]
    keys = pc.strftime(times, format="%Y-%m-%d %H")
    out = {}
    for key in pc.unique(keys).to_pylist():
        date, hour = key.split(" ")
        out[(date, hour)] = table.filter(pc.equal(keys, key))
    return out


PARTITION_TIME = {
    "raw": "kafka_time",
    "quarantine": "kafka_time",
    "watch": "time",
    "rate": "time",
    "reco": "time",
}


# --- Kafka edges --------------------------------------------------------------------


def kafka_consumer(settings: Settings):  # type: ignore[no-untyped-def]
    """A consumer of the ingest group (offsets committed by hand, after the files are written)."""
    from confluent_kafka import Consumer

    return Consumer(
        {
            "bootstrap.servers": settings.kafka_bootstrap,
            "group.id": GROUP_ID,
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "enable.partition.eof": False,
            "fetch.max.bytes": 64 * 1024 * 1024,
        },
        logger=log,
    )


def _retrying(call: Callable[[], T], what: str, attempts: int = 20) -> T:
    """Retry Kafka's retriable errors (a group coordinator still loading, a leader moving)."""
    from confluent_kafka import KafkaError, KafkaException

    transient = {
        KafkaError.NOT_COORDINATOR,
        KafkaError.COORDINATOR_LOAD_IN_PROGRESS,
        KafkaError.COORDINATOR_NOT_AVAILABLE,
        KafkaError._TIMED_OUT,
    }
    for attempt in range(attempts):
        try:
            return call()
        except KafkaException as exc:
            error = exc.args[0]
            if attempt == attempts - 1 or not (error.retriable() or error.code() in transient):
                raise
            log.info("%s: %s; retrying", what, error.str())
            time.sleep(min(0.2 * 2**attempt, 3.0))
    raise AssertionError("unreachable")


def plan_ranges(settings: Settings, consumer: Any) -> list[PartitionRange]:
    """From the group's committed offsets (or the log start) to the high-water marks, now."""
    from confluent_kafka import TopicPartition

    metadata = consumer.list_topics(settings.topic, timeout=15)
    topic = metadata.topics.get(settings.topic)
    if topic is None or topic.error is not None:
        raise RuntimeError(f"topic {settings.topic} is not available: {topic.error if topic else 'missing'}")
    partitions = sorted(topic.partitions)
    wanted = [TopicPartition(settings.topic, p) for p in partitions]
    committed = _retrying(lambda: consumer.committed(wanted, timeout=15), "reading committed offsets")
    ranges = []
    for tp in committed:
        low, high = consumer.get_watermark_offsets(TopicPartition(settings.topic, tp.partition), timeout=15)
        start = tp.offset if tp.offset >= 0 else low
        start = max(start, low)  # retention may have deleted what was never ingested: counted in the log
        if tp.offset >= 0 and tp.offset < low:
            log.error("partition %d: offsets %d..%d expired before ingest", tp.partition, tp.offset, low)
        if high > start:
            ranges.append(PartitionRange(tp.partition, start, high))
    return cap_ranges(ranges, settings.ingest_max_lines)


def cap_ranges(ranges: list[PartitionRange], max_lines: int) -> list[PartitionRange]:
    """At most ``max_lines`` lines in all, shared fairly among partitions (a batch is held in
    memory whole; after a backfill the rest waits for the next runs). Pure."""
    if sum(r.end - r.start for r in ranges) <= max_lines:
        return ranges
    capped, budget, left = [], max_lines, len(ranges)
    for r in sorted(ranges, key=lambda r: r.end - r.start):  # small ones first: their unused share moves on
        take = min(r.end - r.start, budget // left)
        if take > 0:
            capped.append(PartitionRange(r.partition, r.start, r.start + take))
        budget -= take
        left -= 1
    return sorted(capped, key=lambda r: r.partition)


def read_ranges(settings: Settings, consumer: Any, ranges: Sequence[PartitionRange]) -> list[Record]:
    """Exactly the messages in ``ranges`` (none before, none after)."""
    from confluent_kafka import TopicPartition

    if not ranges:
        return []
    end_of = {r.partition: r.end for r in ranges}
    consumer.assign([TopicPartition(settings.topic, r.partition, r.start) for r in ranges])
    records: list[Record] = []
    pending = set(end_of)
    idle_since = time.monotonic()
    try:
        while pending:
            messages = consumer.consume(num_messages=20_000, timeout=0.5)
            if not messages:
                positions = consumer.position([TopicPartition(settings.topic, p) for p in pending])
                pending -= {tp.partition for tp in positions if tp.offset >= end_of[tp.partition]}
                if pending and time.monotonic() - idle_since > 60:
                    raise RuntimeError(f"no progress reading partitions {sorted(pending)} for 60 s")
                continue
            idle_since = time.monotonic()
            for message in messages:
                if message.error() is not None:
                    raise RuntimeError(f"Kafka error while reading: {message.error()}")
                partition, offset = message.partition(), message.offset()
                if offset >= end_of[partition]:
                    pending.discard(partition)
                    continue
                records.append(Record(partition, offset, message.timestamp()[1], message.value() or b""))
                if offset == end_of[partition] - 1:
                    pending.discard(partition)
    finally:
        consumer.unassign()
    return records


def read_and_build(settings: Settings, ranges: Sequence[PartitionRange]) -> dict[str, pa.Table]:
    """Read and parse ``ranges`` into the batch's tables, with a consumer of its own."""
    consumer = kafka_consumer(settings)
    try:
        return build_tables(read_ranges(settings, consumer, ranges))
    finally:
        consumer.close()


def commit_offsets(settings: Settings, consumer: Any, ranges: Sequence[PartitionRange]) -> None:
    from confluent_kafka import TopicPartition

    offsets = [TopicPartition(settings.topic, r.partition, r.end) for r in ranges]
    _retrying(lambda: consumer.commit(offsets=offsets, asynchronous=False), "committing offsets")


def committed_offsets(settings: Settings, consumer: Any, partitions: Iterable[int]) -> dict[int, int]:
    from confluent_kafka import TopicPartition

    wanted = [TopicPartition(settings.topic, p) for p in partitions]
    result = _retrying(lambda: consumer.committed(wanted, timeout=15), "reading committed offsets")
    return {tp.partition: tp.offset for tp in result}


# --- a batch's files -----------------------------------------------------------------


def unfinished_manifest(settings: Settings) -> Manifest | None:
    pending = [
        m for m in lake.load_manifests(settings) if m.topic == settings.topic and m.state != "committed"
    ]
    if len(pending) > 1:
        raise RuntimeError(f"more than one unfinished ingest batch: {[m.batch_id for m in pending]}")
    return pending[0] if pending else None


def remove_batch_files(settings: Settings, batch_id: str) -> int:
    """Delete every lake file of ``batch_id`` (a redo writes them anew)."""
    removed = 0
    for table in TABLES:
        for path in lake.batch_files(settings, table, batch_id):
            path.unlink()
            removed += 1
    return removed


def write_batch_files(
    settings: Settings, batch_id: str, tables: dict[str, pa.Table]
) -> dict[str, list[dict[str, Any]]]:
    written: dict[str, list[dict[str, Any]]] = {}
    for name, table in tables.items():
        for (date, hour), part in sorted(split_by_hour(table, PARTITION_TIME[name]).items()):
            path = lake.hour_dir(settings, name, date, hour) / lake.batch_file_name(batch_id)
            lake.write_parquet_atomically(part, path)
            entry = {
                "path": lake.relative_path(settings, path),
                "rows": part.num_rows,
                "sha256": sha256_of(path),
            }
            written.setdefault(name, []).append(entry)
    return written


# --- the batch ----------------------------------------------------------------------


def apply_quality(settings: Settings, batch_id: str, tables: dict[str, pa.Table]) -> dict[str, pa.Table]:
    """Quarantine the rows that fail expectations; raise if too many do."""
    from movierec.ingest.quality import check_tables

    typed = {name: tables[name] for name in EVENT_TABLES}
    result = check_tables(settings, typed, batch_id)
    result.raise_if_failed()
    out = dict(tables)
    extra = [out["quarantine"]]
    for name in EVENT_TABLES:
        mask = result.bad_rows.get(name)
        if mask is None or not mask.any():
            continue
        extra.append(quarantine_rows(tables[name], mask, result.reasons[name], tables["raw"]))
        out[name] = tables[name].filter(pa.array(~mask))
    out["quarantine"] = pa.concat_tables(extra)
    return out


def ingest_batch(settings: Settings) -> dict[str, Any]:
    """Ingest the next batch (or finish an interrupted one); returns what was done."""
    consumer = kafka_consumer(settings)
    try:
        manifest = unfinished_manifest(settings)
        if manifest is not None:
            committed = committed_offsets(settings, consumer, [r.partition for r in manifest.ranges])
            if (
                all(committed.get(r.partition) == r.end for r in manifest.ranges)
                and manifest.state == "written"
            ):
                log.info("batch %s was committed before a crash; marking it so", manifest.batch_id)
                manifest.state = "committed"
                lake.save_manifest(settings, manifest)
                manifest = None
            else:
                removed = remove_batch_files(settings, manifest.batch_id)
                log.warning("redoing unfinished batch %s (%d old files removed)", manifest.batch_id, removed)
        if manifest is None:
            ranges = plan_ranges(settings, consumer)
            if not ranges:
                log.info("nothing new on %s", settings.topic)
                return {"batch_id": None, "lines": 0}
            manifest = Manifest(batch_id_for(settings.topic, ranges), settings.topic, ranges)
            manifest.planned_at = datetime.now().isoformat(timespec="seconds")
            lake.save_manifest(settings, manifest)
        return _run(settings, consumer, manifest)
    finally:
        consumer.close()


def _run(settings: Settings, consumer: Any, manifest: Manifest) -> dict[str, Any]:
    began = time.monotonic()
    log.info("batch %s: %d lines in %s", manifest.batch_id, manifest.lines, manifest.ranges)
    tables = read_and_build(settings, manifest.ranges)
    lines = tables["raw"].num_rows
    if lines != manifest.lines:  # e.g. compacted or expired offsets inside the range
        log.warning("batch %s: planned %d lines, read %d", manifest.batch_id, manifest.lines, lines)
    parse_done = time.monotonic()
    tables = apply_quality(settings, manifest.batch_id, tables)
    quality_done = time.monotonic()
    manifest.files = write_batch_files(settings, manifest.batch_id, tables)
    manifest.counts = {name: table.num_rows for name, table in tables.items()}
    manifest.state = "written"
    lake.save_manifest(settings, manifest)
    write_done = time.monotonic()
    commit_offsets(settings, consumer, manifest.ranges)
    manifest.state = "committed"
    lake.save_manifest(settings, manifest)
    seconds = {
        "read+parse": parse_done - began,
        "quality": quality_done - parse_done,
        "write": write_done - quality_done,
        "commit": time.monotonic() - write_done,
    }
    total = sum(seconds.values())
    log.info(
        "batch %s done: %s in %.1f s (%.0f lines/s); %s",
        manifest.batch_id,
        manifest.counts,
        total,
        lines / max(total, 1e-9),
        {k: round(v, 2) for k, v in seconds.items()},
    )
    return {
        "batch_id": manifest.batch_id,
        "lines": lines,
        "counts": manifest.counts,
        "seconds": seconds,
    }
