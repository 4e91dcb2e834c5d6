"""The data manifest of a model: which lake files were read, their checksums, and the Kafka offsets.

The ingest manifests (``lake/_manifests/<batch>.json``) record for every batch its offset
ranges and the files it wrote with sha256; a model's manifest reuses them: for every file read,
its path (relative to the lake), rows and sha256, and for the derived ``watch_session`` day
files the batches whose watch rows they were computed from; plus, per partition, the offset
range of all committed batches.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from movierec import lake
from movierec.files import sha256_of
from movierec.settings import Settings

# The lake tables learning reads (shilling_flags: the accounts it leaves out).
LEARNING_TABLES = ("watch_session", "rate", "reco", "users", "movies", "shilling_flags")


def lake_files(settings: Settings) -> dict[str, list[Path]]:
    """Every Parquet file of the tables learning reads, sorted (a snapshot of the lake)."""
    return {table: lake.table_files(settings, table) for table in LEARNING_TABLES}


def build_manifest(settings: Settings, files: dict[str, list[Path]]) -> dict[str, Any]:
    """The manifest of ``files`` (checksums reused from the ingest manifests where they match)."""
    root = lake.lake_dir(settings)
    batches = [m for m in lake.load_manifests(settings) if m.state == "committed"]
    known = {entry["path"]: entry for m in batches for entries in m.files.values() for entry in entries}
    batches_by_watch_day: dict[str, set[str]] = {}
    for m in batches:
        for entry in m.files.get("watch", []):
            batches_by_watch_day.setdefault(lake.day_of(entry["path"]), set()).add(m.batch_id)
    tables: dict[str, list[dict[str, Any]]] = {}
    for table, paths in files.items():
        entries = []
        for path in paths:
            relative = lake.relative_path(settings, path)
            entry = dict(known.get(relative) or {"path": relative})
            entry["sha256"] = sha256_of(path)  # recomputed: what we read, even if ingest wrote it
            entry.setdefault("rows", pq.ParquetFile(path).metadata.num_rows)
            if table == "watch_session":
                entry["from_batches"] = sorted(batches_by_watch_day.get(lake.day_of(path), set()))
            entries.append(entry)
        tables[table] = entries
    offsets: dict[str, dict[str, int]] = {}
    for m in batches:
        for r in m.ranges:
            span = offsets.setdefault(str(r.partition), {"start": r.start, "end": r.end})
            span["start"], span["end"] = min(span["start"], r.start), max(span["end"], r.end)
    return {
        "lake": str(root),
        "topic": settings.topic,
        "files": tables,
        "kafka_offsets": offsets,  # per partition: [start, end) covered by committed batches
        "batches": sorted(m.batch_id for m in batches),
    }


def changed_files(manifest: dict[str, Any], settings: Settings) -> list[str]:
    """Files of ``manifest`` whose content changed since (e.g. a day's sessions recomputed meanwhile)."""
    root = lake.lake_dir(settings)
    changed = []
    for entries in manifest["files"].values():
        for entry in entries:
            path = root / entry["path"]
            if not path.exists() or sha256_of(path) != entry["sha256"]:
                changed.append(entry["path"])
    return changed
