"""Serving files in a worker: open one read-only, check it, look users up; follow the ``current`` symlink.

A serving file (``movierec.serving_file``: its name, meta and the check) is immutable
once published, so each worker opens it with ``mode=ro&immutable=1``: SQLite then
takes no locks and never looks for a journal, and a lookup is a primary-key read
from the page cache.

``CurrentModel`` watches ``serving/current``: a cheap ``stat`` of the link and its
target on every ``poll``; when they change it opens and checks the new file
(off the event loop) and swaps one reference. A lookup reads that reference once
and never awaits, so a request that started on the old file finishes on it. A
file that fails the check is refused, logged and counted; the old one keeps serving.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from movierec import serving_file
from movierec.serving_file import CURRENT, InvalidServingFile

log = logging.getLogger(__name__)


@dataclass
class Model:
    """One open, checked serving file."""

    path: Path
    meta: dict[str, str]
    fallback: bytes
    row_count: int
    connection: sqlite3.Connection = field(repr=False)
    # one cursor for every lookup: a lookup never awaits, so none overlaps another in a worker
    cursor: sqlite3.Cursor = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.cursor = self.connection.cursor()

    @property
    def version(self) -> str:
        return self.meta["model_version"]

    @property
    def created_at(self) -> str:
        return self.meta["created_at"]

    def lookup(self, user_id: int) -> bytes | None:
        """The stored response line of ``user_id``, or None for an unknown user."""
        row = self.cursor.execute("SELECT items FROM recs WHERE user_id = ?", (user_id,)).fetchone()
        return None if row is None else row[0]

    def close(self) -> None:
        self.cursor.close()
        self.connection.close()


def open_model(path: Path) -> Model:
    """Open ``path`` read-only, give it the sampled check; InvalidServingFile if it must not serve."""
    try:
        connection = serving_file.open_readonly(
            path, immutable=True, check_same_thread=False, cached_statements=8
        )
    except sqlite3.Error as exc:
        raise InvalidServingFile(f"{path.name}: cannot open: {exc}") from None
    try:
        checked = serving_file.check(connection, path, depth="sampled")
    except InvalidServingFile:
        connection.close()
        raise
    connection.text_factory = bytes  # the stored line is the response body: no decode/encode
    meta = checked.meta
    return Model(path, meta, meta["fallback"].encode(), checked.row_count, connection)


def _identity(path: Path) -> tuple[object, ...] | None:
    """What changes when ``path`` (a symlink) is re-pointed or its target replaced; None if absent."""
    try:
        target = os.readlink(path) if path.is_symlink() else str(path)
        info = os.stat(path)
    except OSError:
        return None
    return (target, info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns)


class CurrentModel:
    """The model behind ``serving/current`` in this worker, swapped when the link is re-pointed."""

    def __init__(
        self,
        serving_dir: Path,
        on_swap: Callable[[Model | None, Model], None] = lambda old, new: None,
        on_refuse: Callable[[str], None] = lambda reason: None,
    ) -> None:
        self.link = serving_dir / CURRENT
        self.model: Model | None = None
        self.problem = f"no serving file yet ({self.link} does not exist)"
        self._on_swap = on_swap
        self._on_refuse = on_refuse
        self._seen: tuple[object, ...] | None = None
        self._retired: list[Model] = []

    def changed(self) -> tuple[object, ...] | None:
        """The link's new identity if it differs from the last one looked at, else None (cheap)."""
        identity = _identity(self.link)
        if identity == self._seen:
            return None
        if identity is None:
            self._seen = None
            if self.model is None:
                self.problem = f"no serving file ({self.link} does not exist)"
            else:  # keep serving what we have; publishing is re-pointing the link, never removing it
                log.warning("%s is gone; still serving %s", self.link, self.model.version)
            return None
        return identity

    def poll(self) -> None:
        """Check the link now and swap if it points at a new, valid file (blocking: for start-up)."""
        identity = self.changed()
        if identity is not None:
            self._adopt(identity, self._open())

    async def poll_async(self) -> None:
        """``poll`` with the file check in a thread, so requests keep flowing while a file is checked."""
        self._close_retired()
        identity = self.changed()
        if identity is not None:
            self._adopt(identity, await asyncio.to_thread(self._open))

    def _open(self) -> Model | str:
        try:
            return open_model(self.link.resolve())
        except InvalidServingFile as exc:
            return str(exc)
        except OSError as exc:
            return f"{self.link}: {exc}"

    def _adopt(self, identity: tuple[object, ...], opened: Model | str) -> None:
        self._seen = identity  # a refused file is not retried until the link changes again
        if isinstance(opened, str):
            log.error("refused serving file: %s (still serving %s)", opened, self.serving)
            if self.model is None:
                self.problem = f"no valid serving file: {opened}"
            self._on_refuse(opened)
            return
        old, self.model = self.model, opened  # one reference: a lookup sees the old or the new file
        self.problem = ""
        if old is not None:
            self._retired.append(old)  # closed at the next poll, after requests in flight are done
        log.info("serving %s (%s, %d users)", opened.version, opened.path.name, opened.row_count)
        self._on_swap(old, opened)

    @property
    def serving(self) -> str:
        return self.model.version if self.model else "nothing"

    def _close_retired(self) -> None:
        while self._retired:
            self._retired.pop().close()

    def close(self) -> None:
        self._close_retired()
        if self.model is not None:
            self.model.close()
            self.model = None
