"""The injection log: what the scenarios injected and when, as JSON lines for evaluation.

One JSON object per line, appended to ``<home>/world/ground_truth.jsonl`` (or a
path given), each with an ``event`` and the ``run_id`` of its run:

- ``run``: mode, origin, base follow knob, and every scenario with what it
  resolved to (held-back movies, the spam ring and its target, ...);
- ``start`` / ``end``: a scenario switched on or off (``time`` = when);
- ``inject``: one broken line (malformed or format_drift): time, user_id,
  scenario, variant, intended ``reason``, ``source`` (the real line it was made
  from) and the line itself (see ``line_fields``);
- ``summary``: the run's counts, written when it ends.

Nothing in a backfill record depends on the wall clock, so the same seed and
scenarios write the same log.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from movierec.settings import Settings

FILE_NAME = "ground_truth.jsonl"
MAX_STORED_CHARS = 1_000  # longer injected lines (too_long) are stored as a head, a length and a hash

Record = Callable[[dict[str, Any]], None]


def default_path(settings: Settings) -> Path:
    return settings.home / "world" / FILE_NAME


def line_fields(line: str | bytes) -> dict[str, Any]:
    """How an injected line is stored: as text; bytes also in base64; very long ones by hash."""
    if isinstance(line, bytes):
        return {
            "line": line.decode("utf-8", "backslashreplace"),
            "line_base64": base64.b64encode(line).decode(),
        }
    if len(line) > MAX_STORED_CHARS:
        return {
            "line_head": line[:200],
            "length": len(line),
            "sha256": hashlib.sha256(line.encode()).hexdigest(),
        }
    return {"line": line}


def is_line(record: dict[str, Any], line: str | bytes) -> bool:
    """Whether ``line`` (as read from the stream) is the injected line ``record`` describes."""
    if "line_base64" in record:
        raw = line if isinstance(line, bytes) else line.encode()
        return base64.b64decode(record["line_base64"]) == raw
    try:
        text = line.decode("utf-8") if isinstance(line, bytes) else line
    except UnicodeDecodeError:
        return False  # the record is of a line that was valid UTF-8
    if "sha256" in record:
        return len(text) == record["length"] and hashlib.sha256(text.encode()).hexdigest() == record["sha256"]
    return text == record["line"]


@contextmanager
def open_log(path: Path) -> Iterator[Record]:
    """Append records to ``path`` (line-buffered, so a live run's log is readable while it runs)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8", buffering=1) as out:

        def record(entry: dict[str, Any]) -> None:
            out.write(json.dumps(entry, ensure_ascii=False, separators=(",", ":")) + "\n")

        yield record


def read_log(path: Path, run_id: str | None = None) -> list[dict[str, Any]]:
    """The records of ``path`` (of one run if ``run_id`` is given)."""
    with path.open(encoding="utf-8") as lines:
        records = [json.loads(line) for line in lines if line.strip()]
    return [r for r in records if run_id is None or r.get("run_id") == run_id]
