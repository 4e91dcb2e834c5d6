"""Writing a job's outputs: single Parquet files from Spark, JSON written atomically."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

from movierec.files import atomic_write, write_text

if TYPE_CHECKING:
    from pyspark.sql import DataFrame


def write_json(path: Path, data: Any) -> None:
    """A job's JSON output, written whole or not at all (``movierec.files.atomic_write``)."""
    write_text(path, json.dumps(data, indent=1, sort_keys=True, default=str) + "\n")


def read_json(path: Path) -> Any:
    return json.loads(path.read_text())


def write_single_parquet(df: DataFrame, path: Path) -> None:
    """``df`` as ONE Parquet file at ``path`` (the model folder's contract: a file any reader opens).

    Spark writes a folder of parts; with one partition that is one part, moved into place.
    """
    folder = path.with_name(f".{path.name}.spark")
    shutil.rmtree(folder, ignore_errors=True)
    df.coalesce(1).write.mode("overwrite").parquet(str(folder))
    (part,) = sorted(folder.glob("part-*.parquet"))
    with atomic_write(path) as staging:  # the same durability as every other file we write
        os.replace(part, staging)
    shutil.rmtree(folder, ignore_errors=True)


def folder_bytes(path: Path) -> int:
    """Bytes of a file, or of every file under a folder."""
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
