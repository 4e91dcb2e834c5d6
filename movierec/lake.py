"""The lake's layout: where each table's Parquet files live, and how to read them back.

    $MOVIEREC_HOME/lake/<table>/date=YYYY-MM-DD/hour=HH/part-<batch_id>.parquet
    $MOVIEREC_HOME/lake/_manifests/<batch_id>.json
    $MOVIEREC_HOME/lake/_manifests/<feed>/<batch_id>.json   (other topics: served)

Partitions are Hive-style, by event date and hour (``raw`` and ``quarantine``
by the Kafka append time, since a malformed line may have no event time). A
batch writes at most one file per (table, partition), named after the batch,
so re-running a batch replaces its files instead of adding to them.
"""

from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from movierec.schemas import TABLES
from movierec.settings import Settings


def lake_dir(settings: Settings) -> Path:
    return settings.home / "lake"


def table_dir(settings: Settings, table: str) -> Path:
    if table not in TABLES:
        raise KeyError(f"no lake table {table!r} (known: {', '.join(TABLES)})")
    return lake_dir(settings) / table


def manifests_dir(settings: Settings) -> Path:
    return lake_dir(settings) / "_manifests"


def feed_manifests_dir(settings: Settings, feed: str) -> Path:
    """Manifests of a topic other than the movielog (e.g. ``served``): apart from the movielog's,
    whose folder learning reads as the history of the movielog topic."""
    return manifests_dir(settings) / feed


def partition_dir(settings: Settings, table: str, moment: datetime) -> Path:
    return table_dir(settings, table) / f"date={moment:%Y-%m-%d}" / f"hour={moment:%H}"


def batch_file_name(batch_id: str) -> str:
    return f"part-{batch_id}.parquet"


def write_parquet_atomically(table: pa.Table, path: Path) -> None:
    """Write beside and rename, with fsync: a reader never sees half a file, a crash leaves none."""
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = path.with_name(f".{path.name}.tmp")
    pq.write_table(table, staging, compression="zstd")
    with open(staging, "rb") as handle:
        os.fsync(handle.fileno())
    os.replace(staging, path)
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def write_text_atomically(text: str, path: Path) -> None:
    """Write beside and rename: a reader (a scraper, a service) never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(staging, "w") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(staging, path)


def read_table(settings: Settings, table: str, columns: list[str] | None = None) -> pa.Table:
    """The whole table (all partitions), with its declared schema; empty if nothing was written yet."""
    schema = TABLES[table]
    folder = table_dir(settings, table)
    files = sorted(str(path) for path in folder.rglob("part-*.parquet")) if folder.exists() else []
    if not files:
        empty = schema.empty_table()
        return empty.select(columns) if columns else empty
    dataset = ds.dataset(files, schema=schema, format="parquet")
    return dataset.to_table(columns=columns)
