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

import gc
import hashlib
import json
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from contextlib import closing, contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple, TypeVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from movierec import lake
from movierec.files import sha256_of
from movierec.lake import Manifest, PartitionRange
from movierec.movielog import parse_batch
from movierec.schemas import EVENT_TABLES, QUARANTINE, RAW, TABLES
from movierec.settings import Settings

if TYPE_CHECKING:
    from movierec.ingest.quality import QualityResult

log = logging.getLogger(__name__)

GROUP_ID = "movierec-ingest"
READ_CHUNK = 100_000  # messages per poll, and per parse while the next poll is read
READ_AHEAD = 2  # polls read ahead of the parse at most (memory stays bounded)
WRITE_THREADS = 4  # files written at once: encoding and fsync overlap (bench_ingest)
T = TypeVar("T")


class Record(NamedTuple):
    """One Kafka message of the movielog topic."""

    partition: int
    offset: int
    kafka_ms: int
    value: bytes


@dataclass(frozen=True)
class RecordColumns:
    """A batch of messages as columns (what ingest reads: no object per message to keep)."""

    partition: np.ndarray  # int32
    offset: np.ndarray  # int64
    kafka_ms: np.ndarray  # int64
    value: list[bytes]

    def __len__(self) -> int:
        return len(self.value)

    @classmethod
    def of(cls, records: Iterable[Record]) -> RecordColumns:
        records = list(records)
        return cls(
            np.fromiter((r.partition for r in records), np.int32, len(records)),
            np.fromiter((r.offset for r in records), np.int64, len(records)),
            np.fromiter((r.kafka_ms for r in records), np.int64, len(records)),
            [r.value for r in records],
        )

    @classmethod
    def concat(cls, chunks: Sequence[RecordColumns]) -> RecordColumns:
        return cls(
            np.concatenate([c.partition for c in chunks] or [np.zeros(0, np.int32)]),
            np.concatenate([c.offset for c in chunks] or [np.zeros(0, np.int64)]),
            np.concatenate([c.kafka_ms for c in chunks] or [np.zeros(0, np.int64)]),
            [v for c in chunks for v in c.value],
        )

    def records(self) -> list[Record]:
        columns = (self.partition.tolist(), self.offset.tolist(), self.kafka_ms.tolist(), self.value)
        return [Record(*fields) for fields in zip(*columns, strict=True)]


@contextmanager
def gc_paused() -> Iterator[None]:
    """No cyclic garbage collection meanwhile: a batch allocates millions of objects without cycles
    (messages, bytes), and the collections they trigger find nothing (bench_ingest: ~1.5x on the read)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def batch_id_for(topic: str, ranges: Sequence[PartitionRange]) -> str:
    """Deterministic in the ranges: a redone batch has the same id, so it replaces its own files."""
    key = json.dumps(
        [topic, [(r.partition, r.start, r.end) for r in sorted(ranges, key=lambda r: r.partition)]]
    )
    first = min(r.start for r in ranges)
    return f"{first:012d}-{hashlib.sha256(key.encode()).hexdigest()[:12]}"


# --- parsing: pure ----------------------------------------------------------------


def build_tables(records: Iterable[Record] | RecordColumns) -> dict[str, pa.Table]:
    """Records -> the lake tables of this batch (raw, watch, rate, reco, quarantine).

    The grammar's batch parser does the lines at once (vectorised, with parse_line for
    whatever it cannot decide); here they only get their Kafka coordinates.
    """
    columns = records if isinstance(records, RecordColumns) else RecordColumns.of(records)
    values = columns.value
    parsed = parse_batch(values)
    partition = pa.array(columns.partition, pa.int32())
    offset = pa.array(columns.offset, pa.int64())
    kafka_ms = pa.array(columns.kafka_ms, pa.int64())
    kafka_time = kafka_ms.cast(RAW.field("kafka_time").type)
    # the original bytes of the lines that are not UTF-8, null for the others
    undecodable = np.flatnonzero(parsed.undecodable)
    originals = pa.array([values[i] for i in undecodable], pa.binary())
    which = np.cumsum(parsed.undecodable) - 1
    raw_bytes = originals.take(pa.array(which, pa.int64(), mask=~parsed.undecodable))
    tables = {"raw": pa.table([partition, offset, kafka_time, parsed.lines, raw_bytes], schema=RAW)}
    for name, schema in EVENT_TABLES.items():
        events = parsed.events[name]
        rows = events["row"]
        coordinates = {"partition": partition.take(rows), "offset": offset.take(rows)}
        tables[name] = pa.table(
            [coordinates[f] if f in coordinates else events[f] for f in schema.names], schema=schema
        )
    bad_rows = pa.array([row for row, _ in parsed.malformed], pa.int64())
    tables["quarantine"] = pa.table(
        [
            partition.take(bad_rows),
            offset.take(bad_rows),
            kafka_time.take(bad_rows),
            parsed.lines.take(bad_rows),
            pa.array(["parse"] * len(bad_rows), pa.string()),
            pa.array([m.reason.value for _, m in parsed.malformed], pa.string()),
            pa.array([m.detail or None for _, m in parsed.malformed], pa.string()),
        ],
        schema=QUARANTINE,
    )
    return tables


def quarantine_rows(
    table: pa.Table, mask: Sequence[bool], reasons: Sequence[str | None], raw: pa.Table
) -> pa.Table:
    """Rows of a typed table that failed quality, as quarantine rows (their raw line looked up by offset)."""
    picked = table.filter(pa.array(mask, pa.bool_()))
    if picked.num_rows == 0:
        return QUARANTINE.empty_table()
    # found by (partition, offset) with a sort and a binary search, not a dict of every raw row
    raw_keys = _row_keys(raw)
    order = np.argsort(raw_keys, kind="stable")
    wanted = _row_keys(picked)
    found = np.searchsorted(raw_keys, wanted, sorter=order).clip(0, len(order) - 1)
    rows = order[found]
    if not np.array_equal(raw_keys[rows], wanted):
        raise KeyError("a row failing quality has no raw line in this batch")
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


def _row_keys(table: pa.Table) -> np.ndarray:
    """(partition, offset) as one int64 per row: offsets stay far below 2**40."""
    partition = table["partition"].to_numpy().astype(np.int64)
    return (partition << 40) | table["offset"].to_numpy().astype(np.int64)


def split_by_hour(table: pa.Table, time_column: str) -> dict[tuple[str, str], pa.Table]:
    """The rows of ``table`` grouped by the (date, hour) of ``time_column``, in their order.

    One stable sort by the hour and one take, then a slice per hour (filtering the whole
    table once per hour costs hours x rows).
    """
    if table.num_rows == 0:
        return {}
    hours = pc.floor_temporal(table[time_column], unit="hour")
    order = pc.sort_indices(hours)  # stable: rows keep their order within an hour
    table, hours = table.take(order), hours.take(order)
    changes = np.flatnonzero(np.diff(hours.cast(pa.int64()).to_numpy()) != 0) + 1
    starts = [0, *changes.tolist()]
    ends = [*changes.tolist(), table.num_rows]
    keys = pc.strftime(hours.take(pa.array(starts)), format="%Y-%m-%d %H").to_pylist()
    return {
        tuple(key.split(" ")): table.slice(begin, end - begin)  # type: ignore[misc]
        for key, begin, end in zip(keys, starts, ends, strict=True)
    }


PARTITION_TIME = {
    "raw": "kafka_time",
    "quarantine": "kafka_time",
    "watch": "time",
    "rate": "time",
    "reco": "time",
}


# --- Kafka edges --------------------------------------------------------------------


def consumer_of(settings: Settings, group_id: str = GROUP_ID):  # type: ignore[no-untyped-def]
    """A manually committing consumer of ``group_id`` (ingest of another topic has its own group)."""
    from confluent_kafka import Consumer

    return Consumer(
        {
            "bootstrap.servers": settings.kafka_bootstrap,
            "group.id": group_id,
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
    """Exactly the messages in ``ranges`` (none before, none after), one Record each."""
    return read_columns(settings, consumer, ranges).records()


def read_columns(settings: Settings, consumer: Any, ranges: Sequence[PartitionRange]) -> RecordColumns:
    """Exactly the messages in ``ranges`` (none before, none after), as columns."""
    with gc_paused():
        return RecordColumns.concat(list(read_chunks(settings, consumer, ranges)))


def read_chunks(
    settings: Settings, consumer: Any, ranges: Sequence[PartitionRange]
) -> Iterator[RecordColumns]:
    """The messages in ``ranges`` (none before, none after), one ``RecordColumns`` per poll.

    Each poll's messages are taken apart a field at a time (one list comprehension per field,
    no object per message kept), and what lies past a range's end is cut with numpy.
    """
    from confluent_kafka import TopicPartition

    if not ranges:
        return
    end_of = np.zeros(max(r.partition for r in ranges) + 1, np.int64)  # unassigned partitions: end 0
    for r in ranges:
        end_of[r.partition] = r.end
    consumer.assign([TopicPartition(settings.topic, r.partition, r.start) for r in ranges])
    pending = {r.partition for r in ranges}
    idle_since = time.monotonic()
    try:
        while pending:
            messages = consumer.consume(num_messages=READ_CHUNK, timeout=0.5)
            if not messages:
                positions = consumer.position([TopicPartition(settings.topic, p) for p in pending])
                pending -= {tp.partition for tp in positions if tp.offset >= end_of[tp.partition]}
                if pending and time.monotonic() - idle_since > 60:
                    raise RuntimeError(f"no progress reading partitions {sorted(pending)} for 60 s")
                continue
            idle_since = time.monotonic()
            errors = [m.error() for m in messages if m.error() is not None]
            if errors:
                raise RuntimeError(f"Kafka error while reading: {errors[0]}")
            partition = np.array([m.partition() for m in messages], np.int32)
            offset = np.array([m.offset() for m in messages], np.int64)
            inside = offset < end_of[partition]
            pending -= set(np.unique(partition[~inside]).tolist())  # past the end: that one is done
            pending -= set(np.unique(partition[inside & (offset == end_of[partition] - 1)]).tolist())
            if not inside.all():
                messages = [m for m, keep in zip(messages, inside.tolist(), strict=True) if keep]
                partition, offset = partition[inside], offset[inside]
            if messages:
                yield RecordColumns(
                    partition,
                    offset,
                    np.array([m.timestamp()[1] for m in messages], np.int64),
                    [m.value() or b"" for m in messages],
                )
    finally:
        consumer.unassign()


def read_and_build(settings: Settings, ranges: Sequence[PartitionRange]) -> dict[str, pa.Table]:
    """Read and parse ``ranges`` into the batch's tables, with a consumer of its own.

    A reader thread polls Kafka and takes the messages apart while this one parses the previous
    poll: librdkafka's waits and pyarrow's kernels release the GIL, so the two overlap. The
    grammar works line by line, so parsing a poll at a time gives the same rows as parsing all.
    """
    consumer = consumer_of(settings)
    chunks: queue.Queue[RecordColumns | BaseException | None] = queue.Queue(maxsize=READ_AHEAD)
    stop = threading.Event()

    def hand_over(item: RecordColumns | BaseException | None) -> bool:
        """Queue ``item`` unless the parsing thread has stopped (then nobody would take it)."""
        while not stop.is_set():
            try:
                chunks.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def reader() -> None:
        try:
            # closed here, not by the garbage collector: it unassigns before the consumer closes
            with closing(read_chunks(settings, consumer, ranges)) as polls:
                for chunk in polls:
                    if not hand_over(chunk):
                        return
            hand_over(None)
        except BaseException as exc:  # handed to the parsing thread, which raises it
            hand_over(exc)

    parts: list[dict[str, pa.Table]] = []
    with gc_paused():
        thread = threading.Thread(target=reader, name="ingest-reader", daemon=True)
        thread.start()
        try:
            while (chunk := chunks.get()) is not None:
                if isinstance(chunk, BaseException):
                    raise chunk
                parts.append(build_tables(chunk))
        finally:
            stop.set()
            thread.join()
            consumer.close()
        if not parts:
            return build_tables(RecordColumns.concat([]))
        return {name: pa.concat_tables([p[name] for p in parts]) for name in parts[0]}


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
    """One file per (table, hour), written by a few threads (Parquet encoding and fsync release the GIL)."""
    jobs = [
        (name, lake.hour_dir(settings, name, date, hour) / lake.batch_file_name(batch_id), part)
        for name, table in tables.items()
        for (date, hour), part in sorted(split_by_hour(table, PARTITION_TIME[name]).items())
    ]

    def write(path: Path, part: pa.Table) -> dict[str, Any]:
        lake.write_parquet_atomically(part, path)
        return {"path": lake.relative_path(settings, path), "rows": part.num_rows, "sha256": sha256_of(path)}

    with ThreadPoolExecutor(max_workers=WRITE_THREADS) as pool:
        entries = list(pool.map(write, [path for _, path, _ in jobs], [part for _, _, part in jobs]))
    written: dict[str, list[dict[str, Any]]] = {}
    for (name, _, _), entry in zip(jobs, entries, strict=True):
        written.setdefault(name, []).append(entry)
    return written


# --- the batch ----------------------------------------------------------------------


def apply_quality(settings: Settings, batch_id: str, tables: dict[str, pa.Table]) -> dict[str, pa.Table]:
    """Quarantine the rows that fail expectations; raise if too many do (data docs rendered too)."""
    from movierec.ingest.quality import check_tables

    return quarantine_failed(tables, check_tables(settings, _typed(tables), batch_id))


def _typed(tables: dict[str, pa.Table]) -> dict[str, pa.Table]:
    return {name: tables[name] for name in EVENT_TABLES}


def quarantine_failed(tables: dict[str, pa.Table], result: QualityResult) -> dict[str, pa.Table]:
    """The batch's tables with the rows ``result`` marks moved to quarantine; raise if the batch failed."""
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
    consumer = consumer_of(settings)
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
    from movierec.ingest import quality

    began = time.monotonic()
    log.info("batch %s: %d lines in %s", manifest.batch_id, manifest.lines, manifest.ranges)
    with ThreadPoolExecutor(max_workers=1) as pool, ThreadPoolExecutor(max_workers=1) as raw_pool:
        # GX's import and project load (seconds, once per process: each Airflow task is a new one)
        # overlap the read, which mostly waits on the broker and in pyarrow with the GIL released
        gx_ready = pool.submit(quality.context, settings)
        tables = read_and_build(settings, manifest.ranges)
        lines = tables["raw"].num_rows
        if lines != manifest.lines:  # e.g. compacted or expired offsets inside the range
            log.warning("batch %s: planned %d lines, read %d", manifest.batch_id, manifest.lines, lines)
        parse_done = time.monotonic()
        # quality never changes the raw table: its files (the largest) are encoded and written
        # while GX checks the typed tables (Parquet encoding releases the GIL, GX mostly holds it)
        raw_files = raw_pool.submit(write_batch_files, settings, manifest.batch_id, {"raw": tables["raw"]})
        try:
            gx_ready.result()
            gx_wait = time.monotonic() - parse_done
            result = quality.check_tables(settings, _typed(tables), manifest.batch_id, data_docs=False)
            tables = quarantine_failed(tables, result)
        except BaseException:
            wait([raw_files])
            remove_batch_files(settings, manifest.batch_id)  # a failed batch leaves no file behind
            raise
        quality_done = time.monotonic()
        # rendering the data docs (GX, Python) overlaps the Parquet writes (which release the GIL)
        docs = pool.submit(quality.build_batch_docs, settings, result, manifest.batch_id)
        rest = {name: table for name, table in tables.items() if name != "raw"}
        rest_files = write_batch_files(settings, manifest.batch_id, rest)
        manifest.files = {**raw_files.result(), **rest_files}
        files_done = time.monotonic()
        docs.result()
        docs_wait = time.monotonic() - files_done
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
        "write": write_done - quality_done,  # with the wait for GX's data docs
        "commit": time.monotonic() - write_done,
    }
    # GX beyond the quality stage: waiting for its context after the read, for its docs after the write
    waits = {"gx_context": gx_wait, "gx_docs": docs_wait}
    total = sum(seconds.values())
    log.info(
        "batch %s done: %s in %.1f s (%.0f lines/s); %s; waited %s",
        manifest.batch_id,
        manifest.counts,
        total,
        lines / max(total, 1e-9),
        {k: round(v, 2) for k, v in seconds.items()},
        {k: round(v, 2) for k, v in waits.items()},
    )
    return {
        "batch_id": manifest.batch_id,
        "lines": lines,
        "counts": manifest.counts,
        "seconds": seconds,
        "waited": waits,
        # GX's own seconds per table (checkpoint run, result stored); the rest of "quality" is
        # the wait for its context and the quarantine of failing rows
        "quality_tables": {name: part.get("seconds", 0.0) for name, part in result.summary.items()},
    }
