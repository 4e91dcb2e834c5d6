"""Replay an archived movielog file into the topic: backfilling from real logs.

One line per event, exactly as the site writes them (plain or gzip). Lines are
sent byte for byte, malformed ones included (ingest quarantines them, as it
would have live), keyed by their user id field like the site's own lines.
"""

from __future__ import annotations

import gzip
import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from movierec.ingest.stream import TopicWriter
from movierec.settings import Settings

log = logging.getLogger(__name__)


def user_key(line: bytes) -> bytes | None:
    """The user id field of a line (whatever it holds), so one user's lines share a partition."""
    fields = line.split(b",", 2)
    return fields[1] if len(fields) >= 2 and fields[1] else None


def archive_lines(handle: BinaryIO) -> Iterator[bytes]:
    """The archive's lines without their line endings (an empty line is an empty event)."""
    for raw in handle:
        yield raw.removesuffix(b"\n").removesuffix(b"\r")


def _open(path: Path) -> BinaryIO:
    with open(path, "rb") as probe:
        gzipped = probe.read(2) == b"\x1f\x8b"
    return gzip.open(path, "rb") if gzipped else open(path, "rb")  # type: ignore[return-value]


def replay(settings: Settings, path: Path, *, topic: str | None = None, progress_every: float = 5.0) -> int:
    """Send every line of ``path`` to the topic; returns the number of lines sent."""
    total_bytes = path.stat().st_size
    began = time.monotonic()
    next_report = began + progress_every
    with _open(path) as handle, TopicWriter(settings, topic) as writer:
        raw_handle = getattr(handle, "fileobj", None) or handle  # progress by compressed bytes read
        for line in archive_lines(handle):
            writer.write(line, user_key(line))
            if writer.sent % 50_000 == 0 and time.monotonic() >= next_report:
                done = raw_handle.tell() / max(total_bytes, 1)
                log.info("replay %5.1f%%  %d lines  %.0f lines/s", 100 * done, writer.sent, writer.rate)
                next_report = time.monotonic() + progress_every
    seconds = time.monotonic() - began
    log.info("replayed %d lines from %s into %s in %.1f s", writer.sent, path, writer.topic, seconds)
    return writer.sent
