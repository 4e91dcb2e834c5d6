"""Writing a job's outputs: single Parquet files from Spark, JSON written atomically, checksums."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pyspark.sql import DataFrame


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def write_json(path: Path, data: Any) -> None:
    """Write beside and rename: a reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = path.with_name(f".{path.name}.tmp")
    staging.write_text(json.dumps(data, indent=1, sort_keys=True, default=str) + "\n")
    os.replace(staging, path)


def read_json(path: Path) -> Any:
    return json.loads(path.read_text())


def write_single_parquet(df: DataFrame, path: Path) -> None:
    """``df`` as ONE Parquet file at ``path`` (the model folder's contract: a file any reader opens).

    Spark writes a folder of parts; with one partition that is one part, moved into place.
    """
    staging = path.with_name(f".{path.name}.spark")
    shutil.rmtree(staging, ignore_errors=True)
    df.coalesce(1).write.mode("overwrite").parquet(str(staging))
    (part,) = sorted(staging.glob("part-*.parquet"))
    os.replace(part, path)
    shutil.rmtree(staging, ignore_errors=True)


def folder_bytes(path: Path) -> int:
    """Bytes of a file, or of every file under a folder."""
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
