"""The serving-file contract (DESIGN.md, "Serving files"): names, meta keys, the response line.

Standard library only: every server worker imports this module at start-up, so
it must not pull in pyarrow, numpy or subprocess (a worker that starts in
milliseconds leaves a stop signal little to interrupt).
"""

from __future__ import annotations

import re
from pathlib import Path

FILE_RE = re.compile(r"recs-(?P<version>\d{8}T\d{6}Z)\.sqlite")
CURRENT = "current"  # the symlink that publishing re-points
MAX_ITEMS = 20
REQUIRED_META = (
    "model_version",
    "created_at",
    "git_commit",
    "params",
    "data_manifest",
    "metrics",
    "row_count",
    "fallback",
)
JSON_META = ("params", "data_manifest", "metrics")


def file_name(version: str) -> str:
    return f"recs-{version}.sqlite"


def version_of(path: Path) -> str | None:
    """The version a serving file's name says, or None for any other name."""
    match = FILE_RE.fullmatch(path.name)
    return match["version"] if match else None
