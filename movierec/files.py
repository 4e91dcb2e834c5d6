"""Files written whole or not at all: ``atomic_write`` (write beside, fsync, rename), and checksums.

One policy for every file the project writes in place of another (lake parts,
manifests, serving files, the ``current`` link, reports, Prometheus text files):
the content goes to a staging name beside the target, is fsynced, renamed over the
target with ``os.replace`` and the folder is fsynced. A reader sees the old file or
the new one, never half of one; a crash or an exception leaves no staging file.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from matplotlib.figure import Figure


@contextmanager
def atomic_write(path: Path, *, mode: int | None = None) -> Iterator[Path]:
    """Yield a staging path beside ``path`` to write (any way: a file, a database, a symlink).

    On a normal exit the staging file is fsynced, given ``mode`` (if set), renamed over
    ``path`` and the folder fsynced; on an exception it is removed and ``path`` is untouched.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = path.with_name(f".{path.name}.tmp-{os.getpid()}")  # the pid: two writers never share it
    staging.unlink(missing_ok=True)
    try:
        yield staging
        if not staging.is_symlink():  # a symlink's target is its content: nothing to flush
            with open(staging, "rb") as handle:
                os.fsync(handle.fileno())
            if mode is not None:
                staging.chmod(mode)
        os.replace(staging, path)
        fsync_dir(path.parent)
    except BaseException:
        staging.unlink(missing_ok=True)
        raise


def write_text(path: Path, text: str) -> None:
    """``text`` into ``path`` atomically (see ``atomic_write``)."""
    with atomic_write(path) as staging:
        staging.write_text(text)


def save_figure(figure: Figure, path: Path, *, dpi: int = 100) -> None:
    """A matplotlib ``figure`` laid out and saved as a PNG at ``path`` atomically, then closed.

    Closed because pyplot keeps every figure it made alive until then (a long report leaks).
    """
    from matplotlib import pyplot  # here: most importers of this module never draw

    figure.tight_layout()
    with atomic_write(path) as staging:
        figure.savefig(staging, dpi=dpi, format="png")  # the staging name has no .png suffix
    pyplot.close(figure)


def fsync_dir(folder: Path) -> None:
    """Make a rename in ``folder`` durable."""
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
