"""The serving file (DESIGN.md, "Serving files"): its name, writing it, reading its meta, checking it.

    $MOVIEREC_HOME/serving/recs-<serving id>.sqlite    immutable once written (mode 0444)
        recs(user_id INTEGER PRIMARY KEY, items TEXT NOT NULL)   items: the exact response body
        meta(key TEXT PRIMARY KEY, value TEXT)                   at least REQUIRED_META

A serving id names what the file serves: a model version (``20261130T120000Z``, the
candidate that version chose) or a version and one of its candidates
(``20261130T120000Z-als_r16_demo``, so an experiment can serve a challenger). Meta
``model_version`` holds the serving id.

``validate`` is the one check, at two depths: ``full`` (before publishing: integrity,
schema, every list against the model's catalog) and ``sampled`` (when a server worker
opens a file: meta, row count, fallback and three lookups, in milliseconds).

Standard library only: every server worker imports this module at start-up, so it
must not pull in pyarrow, numpy or subprocess (a worker that starts in milliseconds
leaves a stop signal little to interrupt).
"""

from __future__ import annotations

import json
import logging
import re
import sqlite3
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Literal

from movierec.files import atomic_write
from movierec.models.versions import (
    CANDIDATE_PATTERN,
    VERSION_PATTERN,
    VersionError,
    check_candidate,
    check_version,
)

log = logging.getLogger(__name__)

SERVING_ID_RE = re.compile(rf"(?P<version>{VERSION_PATTERN})(?:-(?P<candidate>{CANDIDATE_PATTERN}))?")
FILE_RE = re.compile(rf"recs-(?P<serving_id>{SERVING_ID_RE.pattern})\.sqlite")
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
RECS_COLUMNS = [("user_id", "INTEGER", 0, 1), ("items", "TEXT", 1, 0)]  # name, type, notnull, pk
META_COLUMNS = [("key", "TEXT", 0, 1), ("value", "TEXT", 0, 0)]

Depth = Literal["full", "sampled"]


class InvalidServingFile(ValueError):
    """The file is missing, damaged or does not follow the serving-file contract; the message says why."""


# ---------------------------------------------------------------- serving ids, names and paths


def serving_id(version: str, candidate: str | None = None) -> str:
    """The serving id of ``version`` (its chosen candidate) or of one ``candidate`` of it."""
    check_version(version)
    return version if candidate is None else f"{version}-{check_candidate(candidate)}"


def split_serving_id(text: object) -> tuple[str, str | None]:
    """(version, candidate or None) of a serving id; VersionError (a ValueError) if it is not one."""
    match = SERVING_ID_RE.fullmatch(text) if isinstance(text, str) else None
    if not match:
        raise VersionError(
            f"{text!r} is not a serving id (a version like 20261128T101502Z, "
            "or a version and a candidate like 20261128T101502Z-als)"
        )
    return check_version(match["version"]), match["candidate"]


def check_serving_id(text: str) -> str:
    split_serving_id(text)
    return text


def file_name(serving_id: str) -> str:
    return f"recs-{check_serving_id(serving_id)}.sqlite"


def file_path(serving_dir: Path, serving_id: str) -> Path:
    return serving_dir / file_name(serving_id)


def serving_id_of(path: Path | str) -> str | None:
    """The serving id a serving file's name says, or None for any other name."""
    match = FILE_RE.fullmatch(Path(path).name)
    if not match:
        return None
    try:
        split_serving_id(match["serving_id"])
    except VersionError:
        return None  # the right shape, but no real time (month 13 and the like)
    return match["serving_id"]


def serving_ids(serving_dir: Path) -> list[str]:
    """Serving ids that have a file in ``serving_dir``, oldest version first."""
    if not serving_dir.exists():
        return []
    return sorted(found for path in serving_dir.iterdir() if (found := serving_id_of(path)))


# ---------------------------------------------------------------- reading


def open_readonly(path: Path, *, immutable: bool = False, **options: object) -> sqlite3.Connection:
    """A read-only connection; ``immutable`` also skips locks and journal lookups (published files)."""
    flags = "mode=ro&immutable=1" if immutable else "mode=ro"
    return sqlite3.connect(f"file:{path}?{flags}", uri=True, **options)  # type: ignore[arg-type]


def read_meta(path: Path) -> dict[str, str]:
    """A serving file's meta table as it is stored (no checks)."""
    if not path.is_file():
        raise InvalidServingFile(f"{path}: no such file")
    connection = open_readonly(path, immutable=True)
    try:
        return dict(connection.execute("SELECT key, value FROM meta"))
    finally:
        connection.close()


def recall_at_20(meta: dict[str, str]) -> float | None:
    """The offline Recall@20 in meta ``metrics`` (what the publish gate compares), None if absent."""
    try:
        value = json.loads(meta["metrics"]).get("recall_at_20")
    except (ValueError, AttributeError, KeyError, TypeError):
        return None
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


# ---------------------------------------------------------------- checks of one line and of meta


def check_line(line: object, catalog: frozenset[str] | set[str] | None = None) -> str | None:
    """What is wrong with one response line (None if nothing): one line of at most 20 ids,
    none empty, padded or repeated, and each in ``catalog`` when one is given."""
    if not isinstance(line, str):
        return f"items is {type(line).__name__}, not text"
    if "\n" in line or "\r" in line:
        return "more than one line"
    ids = line.split(",") if line else []
    if len(ids) > MAX_ITEMS:
        return f"{len(ids)} ids, at most {MAX_ITEMS}"
    if catalog is None and any(not item or item != item.strip() for item in ids):
        return "an empty or padded id"
    if len(set(ids)) != len(ids):
        repeated = sorted({item for item in ids if ids.count(item) > 1})
        return f"repeated id {repeated[0]!r}"
    if catalog is not None:
        unknown = [item for item in ids if item not in catalog]  # also catches empty and padded ids
        if unknown:
            return f"id {unknown[0][:60]!r} is not in the model's catalog"
    return None


def check_meta(meta: dict[str, str], serving_id: str, catalog: frozenset[str] | None = None) -> list[str]:
    """What is wrong with a meta table read from the file of ``serving_id`` (empty when nothing is)."""
    problems = [f"meta key {key!r} missing" for key in REQUIRED_META if meta.get(key) in (None, "")]
    if problems:
        return problems
    if meta["model_version"] != serving_id:
        problems.append(f"file name says version {serving_id!r}, meta says {meta['model_version']!r}")
    for key in JSON_META:
        try:
            json.loads(meta[key])
        except ValueError:
            problems.append(f"meta {key!r} is not JSON")
    if not str(meta["row_count"]).isdigit():
        problems.append(f"meta row_count {str(meta['row_count'])[:40]!r} is not a count")
    try:
        datetime.fromisoformat(meta["created_at"])
    except (TypeError, ValueError):
        problems.append(f"meta created_at {str(meta['created_at'])[:40]!r} is not ISO 8601")
    fallback_problem = check_line(meta["fallback"], catalog)
    if fallback_problem:
        problems.append(f"fallback: {fallback_problem}")
    return problems


# ---------------------------------------------------------------- the validator, at two depths


@dataclass(frozen=True)
class Validation:
    serving_id: str
    path: Path
    depth: Depth
    meta: dict[str, str]
    row_count: int
    seconds: float

    @property
    def recall_at_20(self) -> float | None:
        return recall_at_20(self.meta)  # never None after a full check: it refuses a file without it


def validate(
    path: Path,
    *,
    depth: Depth = "full",
    catalog: frozenset[str] | None = None,
    expected_users: int | None = None,
    samples: int = 200,
    progress_every: float = 5.0,
) -> Validation:
    """Check the serving file at ``path``; InvalidServingFile says what is wrong.

    Both depths: the name (``recs-<serving id>.sqlite``), the meta keys and formats, meta
    ``model_version`` = the name's serving id, the fallback line, ``row_count`` = the rows.

    ``full`` (before publishing; seconds per million users) adds: ``integrity_check``, the
    schema of both tables, a numeric ``recall_at_20`` for the gate, the rows = the model's
    ``expected_users``, every list (and the fallback) against ``catalog``, and ``samples``
    primary-key lookups returning what the scan read.

    ``sampled`` (a server worker opening a file; milliseconds) adds: the first, middle and
    last users looked up as a request would, their lines well formed.
    """
    if not path.is_file():
        raise InvalidServingFile(f"{path}: no such file")
    try:
        connection = open_readonly(path)
    except sqlite3.Error as exc:
        raise InvalidServingFile(f"{path.name}: cannot open: {exc}") from None
    try:
        return check(
            connection,
            path,
            depth=depth,
            catalog=catalog,
            expected_users=expected_users,
            samples=samples,
            progress_every=progress_every,
        )
    finally:
        connection.close()


def check(
    connection: sqlite3.Connection,
    path: Path,
    *,
    depth: Depth,
    catalog: frozenset[str] | None = None,
    expected_users: int | None = None,
    samples: int = 200,
    progress_every: float = 5.0,
) -> Validation:
    """``validate`` through a connection the caller opened (and keeps: the server serves from it)."""
    began = time.monotonic()
    name = path.name
    serving_id = serving_id_of(name)
    if serving_id is None:
        raise InvalidServingFile(f"{name}: not a serving file name (recs-<serving id>.sqlite)")
    try:
        if depth == "full":
            _check_structure(connection, name)
        meta = dict(connection.execute("SELECT key, value FROM meta"))
        problems = check_meta(meta, serving_id, catalog)
        if depth == "full" and not problems and recall_at_20(meta) is None:
            problems.append("meta metrics has no numeric recall_at_20 (the gate needs it)")
        if problems:
            raise InvalidServingFile(f"{name}: {'; '.join(problems)}")
        rows = connection.execute("SELECT count(*) FROM recs").fetchone()[0]
        if rows != int(meta["row_count"]):
            raise InvalidServingFile(f"{name}: recs has {rows} rows, meta row_count says {meta['row_count']}")
        if depth == "full":
            if expected_users is not None and rows != expected_users:
                raise InvalidServingFile(
                    f"{name}: recs has {rows} rows, the model knows {expected_users} users"
                )
            _check_every_list(connection, name, catalog, rows, samples, progress_every)
        else:
            _check_first_middle_last(connection, name)
    except sqlite3.Error as exc:
        raise InvalidServingFile(f"{name}: not a readable serving file: {exc}") from None
    result = Validation(serving_id, path, depth, meta, rows, time.monotonic() - began)
    if depth == "full":
        log.info(
            "validated %s: %s users, Recall@20 %.4f (%.1f s)",
            name,
            f"{rows:,}",
            result.recall_at_20 or 0.0,
            result.seconds,
        )
    return result


def _check_structure(connection: sqlite3.Connection, name: str) -> None:
    integrity = [row[0] for row in connection.execute("PRAGMA integrity_check(5)")]
    if integrity != ["ok"]:
        raise InvalidServingFile(f"{name}: integrity_check failed: {'; '.join(map(str, integrity))}")
    for table, expected in (("recs", RECS_COLUMNS), ("meta", META_COLUMNS)):
        columns = [
            (row[1], row[2].upper(), row[3], row[5])
            for row in connection.execute(f"PRAGMA table_info({table})")
        ]
        if columns != expected:
            raise InvalidServingFile(
                f"{name}: table {table} has columns {columns or 'none'}, expected {expected}"
            )


def _check_every_list(
    connection: sqlite3.Connection,
    name: str,
    catalog: frozenset[str] | None,
    rows: int,
    samples: int,
    progress_every: float,
) -> None:
    """Scan every list in key order, then look sampled users up by primary key as the server does."""
    began = time.monotonic()
    next_report = began + progress_every
    every = max(rows // max(samples, 1), 1)
    sampled: dict[int, str] = {}
    for done, (user_id, line) in enumerate(connection.execute("SELECT user_id, items FROM recs"), start=1):
        problem = check_line(line, catalog)
        if problem:
            raise InvalidServingFile(f"{name}: user {user_id}: {problem}")
        if done % every == 0 or done == rows:
            sampled[user_id] = line
            if time.monotonic() >= next_report:
                _log_progress("checking", name, done, rows, began)
                next_report = time.monotonic() + progress_every
    for user_id, line in sampled.items():
        found = connection.execute("SELECT items FROM recs WHERE user_id = ?", (user_id,)).fetchone()
        if found is None or found[0] != line:
            raise InvalidServingFile(f"{name}: lookup of user {user_id} does not return its stored list")


def _check_first_middle_last(connection: sqlite3.Connection, name: str) -> None:
    """Look up the first, middle and last users as a request would; their lines must be well formed."""
    low, high = connection.execute("SELECT min(user_id), max(user_id) FROM recs").fetchone()
    if low is None:
        return  # an empty table is legal: everybody gets the fallback
    for user_id in sorted({low, (low + high) // 2, high}):
        row = connection.execute("SELECT items FROM recs WHERE user_id >= ? LIMIT 1", (user_id,)).fetchone()
        problem = check_line(row[0] if row else None)
        if problem:
            raise InvalidServingFile(f"{name}: user {user_id}: {problem}")


# ---------------------------------------------------------------- writing


def fallback_line(fallback: object) -> str:
    """The response line for unknown users from a model's ``fallback.json`` ({"items": [slugs]})."""
    items = fallback.get("items") if isinstance(fallback, dict) else None
    if not isinstance(items, list) or not items or not all(isinstance(item, str) for item in items):
        raise ValueError('fallback.json must be {"items": [1..20 movie ids]}')
    problem = check_line(",".join(items))
    if problem:
        raise ValueError(f"fallback.json: {problem}")
    return ",".join(items)


def build_meta(
    serving_id: str,
    model: dict[str, object],
    *,
    git_commit: str,
    created_at: datetime,
    extra: dict | None = None,
) -> dict[str, str]:
    """The meta table (without ``row_count``, which ``write`` adds) from a parsed model folder
    (``movierec.models.versions.read_model_folder``)."""
    meta = {
        "model_version": check_serving_id(serving_id),
        "created_at": created_at.isoformat(timespec="seconds"),
        "git_commit": git_commit,
        "params": json.dumps(model.get("params.json", {}), sort_keys=True),
        "data_manifest": json.dumps(model.get("data_manifest.json", {}), sort_keys=True),
        "metrics": json.dumps(model.get("metrics.json", {}), sort_keys=True),
        "fallback": fallback_line(model.get("fallback.json")),
    }
    if "model.json" in model:
        meta["model"] = json.dumps(model["model.json"], sort_keys=True)  # trainer's commit, split time
    for key, value in (extra or {}).items():
        meta[key] = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
    return meta


def write(
    path: Path,
    batches: Iterable[tuple[Sequence[int], Sequence[str]]],
    meta: dict[str, str],
    *,
    total: int | None = None,
    progress_every: float = 5.0,
) -> int:
    """Write ``recs`` from (user_ids, lines) batches sorted by user id, then ``meta``; returns the rows.

    Built under a staging name (``movierec.files.atomic_write``) with journaling and
    syncing off (a crash leaves only the staging file, so the journal buys nothing), rows
    appended in key order so the primary-key B-tree is filled left to right, then fsynced,
    made read-only and renamed into place.
    """
    began = time.monotonic()
    next_report = began + progress_every
    rows = 0
    last_user: int | None = None
    with atomic_write(path, mode=0o444) as staging:
        connection = sqlite3.connect(staging, isolation_level=None)
        try:
            connection.execute("PRAGMA journal_mode=OFF")
            connection.execute("PRAGMA synchronous=OFF")
            connection.execute("CREATE TABLE recs (user_id INTEGER PRIMARY KEY, items TEXT NOT NULL)")
            connection.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT)")
            for user_ids, lines in batches:
                if len(user_ids) == 0:
                    continue
                if last_user is not None and user_ids[0] <= last_user:
                    raise ValueError(f"rows must come sorted by user_id: {user_ids[0]} after {last_user}")
                connection.execute("BEGIN")
                connection.executemany("INSERT INTO recs VALUES (?, ?)", zip(user_ids, lines, strict=True))
                connection.execute("COMMIT")
                rows += len(user_ids)
                last_user = int(user_ids[-1])
                if time.monotonic() >= next_report:
                    _log_progress("writing", path.name, rows, total, began)
                    next_report = time.monotonic() + progress_every
            connection.execute("BEGIN")
            connection.executemany(
                "INSERT INTO meta VALUES (?, ?)", sorted({**meta, "row_count": str(rows)}.items())
            )
            connection.execute("COMMIT")
        finally:
            connection.close()
    _log_progress("wrote", path.name, rows, total, began)
    return rows


def _log_progress(what: str, name: str, rows: int, total: int | None, began: float) -> None:
    seconds = max(time.monotonic() - began, 1e-9)
    share = f" / {total:,} ({100 * rows / total:.0f}%)" if total else ""
    log.info("%s %s: %s users%s, %.0f users/s", what, name, f"{rows:,}", share, rows / seconds)
