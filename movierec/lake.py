"""The lake's layout: where every table's Parquet files live, how to find and read them, and the manifests.

    lake/<table>/date=YYYY-MM-DD/hour=HH/part-<batch_id>.parquet   raw, watch, rate, reco, quarantine
    lake/watch_session/date=YYYY-MM-DD/part-sessions.parquet      one file a day, recomputed
    lake/drift/date=YYYY-MM-DD/part-<batch_id>.parquet            one file a batch
    lake/shilling_flags/date=YYYY-MM-DD/part-flags.parquet        one file a day, recomputed
    lake/<table>/part-<run>.parquet                               users, movies, catalog_unknown
    lake/_manifests/<batch_id>.json                               one per ingest batch
    lake/_manifests/<feed>/<batch_id>.json                        other topics (served)

``lake`` is ``$MOVIEREC_HOME/lake``; every table has its schema in ``movierec.schemas.TABLES``.
Partitions are Hive-style, by event date and hour (``raw`` and ``quarantine`` by the
Kafka append time, since a malformed line may have no event time). A batch writes at
most one file per (table, partition), named after the batch, so re-running a batch
replaces its files instead of adding to them. Every file is written whole or not at
all (``movierec.files``). Nothing else spells these paths: parts ask this module.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from movierec.files import atomic_write, write_text
from movierec.schemas import TABLES
from movierec.settings import Settings

PART_GLOB = "part-*.parquet"
DAY_PREFIX = "date="
SESSIONS_FILE = "part-sessions.parquet"  # watch_session's one file per day
FLAGS_FILE = "part-flags.parquet"  # shilling_flags' one file per day


# ---------------------------------------------------------------- paths


def lake_dir(settings: Settings) -> Path:
    """The lake's root (the one place it is named)."""
    return settings.home / "lake"


def table_dir(settings: Settings, table: str) -> Path:
    if table not in TABLES:
        raise KeyError(f"no lake table {table!r} (known: {', '.join(TABLES)})")
    return lake_dir(settings) / table


def manifests_dir(settings: Settings) -> Path:
    return lake_dir(settings) / "_manifests"


def day_dir(settings: Settings, table: str, day: str) -> Path:
    """The ``date=`` partition of ``day`` (YYYY-MM-DD)."""
    return table_dir(settings, table) / f"{DAY_PREFIX}{day}"


def hour_dir(settings: Settings, table: str, day: str, hour: str) -> Path:
    return day_dir(settings, table, day) / f"hour={hour}"


def partition_dir(settings: Settings, table: str, moment: datetime) -> Path:
    """The ``date=/hour=`` partition ``moment`` falls in."""
    return hour_dir(settings, table, f"{moment:%Y-%m-%d}", f"{moment:%H}")


def shilling_flags_path(settings: Settings, day: str) -> Path:
    """The rating-spam detector's flagged accounts of ``day`` (YYYY-MM-DD): what training leaves out."""
    return day_dir(settings, "shilling_flags", day) / FLAGS_FILE


def batch_file_name(batch_id: str) -> str:
    return f"part-{batch_id}.parquet"


def day_of(path: Path | str) -> str:
    """The YYYY-MM-DD of the ``date=`` partition a lake path lies in (absolute or lake-relative)."""
    for part in Path(path).parts:
        if part.startswith(DAY_PREFIX):
            return part.removeprefix(DAY_PREFIX)
    raise ValueError(f"{path} is not in a date= partition")


def relative_path(settings: Settings, path: Path) -> str:
    """How manifests name a lake file: relative to the lake's root."""
    return str(path.relative_to(lake_dir(settings)))


# ---------------------------------------------------------------- finding files


def _parts(folder: Path) -> list[Path]:
    return sorted(folder.rglob(PART_GLOB)) if folder.exists() else []


def table_files(settings: Settings, table: str) -> list[Path]:
    """Every Parquet file of ``table``, sorted."""
    return _parts(table_dir(settings, table))


def day_files(settings: Settings, table: str, day: str) -> list[Path]:
    """The Parquet files of ``table``'s partition of ``day``, sorted."""
    return _parts(day_dir(settings, table, day))


def files_between(
    settings: Settings, table: str, first_day: str, last_day: str, *, skip_name: str | None = None
) -> list[Path]:
    """The Parquet files of the ``date=`` partitions from ``first_day`` to ``last_day`` (inclusive)."""
    folder = table_dir(settings, table)
    if not folder.exists():
        return []
    found = []
    for day in sorted(folder.glob(f"{DAY_PREFIX}*")):
        if first_day <= day.name.removeprefix(DAY_PREFIX) <= last_day:
            found += [path for path in _parts(day) if path.name != skip_name]
    return found


def days(settings: Settings, table: str) -> list[str]:
    """The days (YYYY-MM-DD) ``table`` has a ``date=`` partition for, sorted."""
    folder = table_dir(settings, table)
    if not folder.exists():
        return []
    return sorted(day.name.removeprefix(DAY_PREFIX) for day in folder.glob(f"{DAY_PREFIX}*"))


def hour_files(settings: Settings, table: str, first: datetime, last: datetime) -> list[Path]:
    """The Parquet files of ``table``'s ``date=/hour=`` partitions from ``first``'s hour to ``last``."""
    first = first.replace(minute=0, second=0, microsecond=0)
    found = []
    for day in days(settings, table):
        if not f"{first:%Y-%m-%d}" <= day <= f"{last:%Y-%m-%d}":
            continue
        for hour in sorted(day_dir(settings, table, day).glob("hour=*")):
            moment = datetime.strptime(f"{day} {hour.name.removeprefix('hour=')}", "%Y-%m-%d %H")
            if first <= moment <= last:
                found += _parts(hour)
    return found


def batch_files(settings: Settings, table: str, batch_id: str) -> list[Path]:
    """The files ``batch_id`` wrote into ``table`` (in any partition)."""
    folder = table_dir(settings, table)
    return sorted(folder.rglob(batch_file_name(batch_id))) if folder.exists() else []


# ---------------------------------------------------------------- reading and writing


def dataset(settings: Settings, table: str, files: list[Path] | None = None) -> ds.Dataset:
    """``table`` (or only ``files`` of it) as a dataset with its declared schema."""
    paths = table_files(settings, table) if files is None else files
    return ds.dataset([str(path) for path in paths], schema=TABLES[table], format="parquet")


def read_table(settings: Settings, table: str, columns: list[str] | None = None) -> pa.Table:
    """The whole table (all partitions), with its declared schema; empty if nothing was written yet."""
    return dataset(settings, table).to_table(columns=columns)


def read_files(settings: Settings, table: str, relative: list[str]) -> pa.Table:
    """The rows of the files a manifest names (lake-relative paths) of ``table``."""
    root = lake_dir(settings)
    return dataset(settings, table, [root / path for path in relative]).to_table()


def write_parquet_atomically(table: pa.Table, path: Path) -> None:
    """One lake file, written whole or not at all."""
    with atomic_write(path) as staging:
        pq.write_table(table, staging, compression="zstd")


# ---------------------------------------------------------------- ingest manifests


@dataclass(frozen=True)
class PartitionRange:
    partition: int
    start: int  # first offset of the batch
    end: int  # one past the last offset (the high-water mark when planned)


@dataclass
class Manifest:
    """What one ingest batch read (Kafka offset ranges) and wrote (files with checksums)."""

    batch_id: str
    topic: str
    ranges: list[PartitionRange]
    state: str = "planned"  # planned -> written -> committed
    planned_at: str = ""
    files: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # table -> [{path, rows, sha256}]
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def lines(self) -> int:
        return sum(r.end - r.start for r in self.ranges)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Manifest:
        data = json.loads(text)
        data["ranges"] = [PartitionRange(**r) for r in data["ranges"]]
        return cls(**data)


def manifests_of(settings: Settings, feed: str | None = None) -> Path:
    """The movielog's manifests (``feed`` None) or another topic's (e.g. ``served``), in a folder of
    its own: learning reads the movielog's folder as the history of the movielog topic."""
    return manifests_dir(settings) if feed is None else manifests_dir(settings) / feed


def manifest_path(settings: Settings, batch_id: str, feed: str | None = None) -> Path:
    return manifests_of(settings, feed) / f"{batch_id}.json"


def save_manifest(settings: Settings, manifest: Manifest, feed: str | None = None) -> None:
    write_text(manifest_path(settings, manifest.batch_id, feed), manifest.to_json())


def load_manifest(settings: Settings, batch_id: str, feed: str | None = None) -> Manifest | None:
    """The manifest of ``batch_id``, None if there is none."""
    path = manifest_path(settings, batch_id, feed)
    return Manifest.from_json(path.read_text()) if path.exists() else None


def load_manifests(settings: Settings, feed: str | None = None) -> list[Manifest]:
    """Every manifest of the feed, in batch id order."""
    folder = manifests_of(settings, feed)
    if not folder.exists():
        return []
    return [Manifest.from_json(path.read_text()) for path in sorted(folder.glob("*.json"))]


def has_manifests(settings: Settings) -> bool:
    """Whether any movielog batch was ever ingested."""
    folder = manifests_dir(settings)
    return folder.exists() and any(folder.glob("*.json"))
