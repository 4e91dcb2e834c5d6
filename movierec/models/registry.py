"""Serving files: write them, validate them, publish one behind a quality gate, roll back, keep the last N.

    $MOVIEREC_HOME/serving/recs-<version>.sqlite   immutable once written (mode 0444)
    $MOVIEREC_HOME/serving/current                 symlink -> recs-<version>.sqlite, replaced atomically
    $MOVIEREC_HOME/serving/registry.jsonl          a line per publish, rollback, online evidence

A file is made ``current`` only after it passed ``validate`` (and, on publish,
the Recall@20 gate); a refused file raises ``PublishRefused`` and leaves
``current`` untouched. Rollback goes back to a version that was current before
(recorded in ``registry.jsonl``), re-checked on the way.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import sqlite3
import subprocess
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pyarrow.parquet as pq

from movierec.models.versions import check_version, model_dir
from movierec.serving_file import CURRENT, FILE_RE, JSON_META, MAX_ITEMS, REQUIRED_META, file_name
from movierec.settings import REPO_ROOT, Settings

log = logging.getLogger(__name__)

LOG_NAME = "registry.jsonl"
RECS_COLUMNS = [("user_id", "INTEGER", 0, 1), ("items", "TEXT", 1, 0)]  # name, type, notnull, pk
META_COLUMNS = [("key", "TEXT", 0, 1), ("value", "TEXT", 0, 0)]
MODEL_FILES = ("users.parquet", "movies.parquet", "fallback.json", "params.json", "data_manifest.json")
MODEL_JSON = ("params.json", "data_manifest.json", "metrics.json", "model.json")


class PublishRefused(RuntimeError):
    """A serving file may not become current; the message says why."""


class InvalidServingFile(PublishRefused):
    """The file is damaged or does not follow the serving-file contract."""


class GateRefused(PublishRefused):
    """The model is valid but worse than the current one beyond the margin."""


# ---------------------------------------------------------------- names and paths


def serving_path(settings: Settings, version: str) -> Path:
    return settings.serving_dir / f"recs-{check_version(version)}.sqlite"


def serving_versions(serving_dir: Path) -> list[str]:
    """Versions that have a serving file, oldest first (version ids sort by time)."""
    if not serving_dir.exists():
        return []
    found = (FILE_RE.fullmatch(path.name) for path in serving_dir.iterdir())
    return sorted(match["version"] for match in found if match)


def current_version(settings: Settings) -> str | None:
    """The version ``serving/current`` points at, or None if there is no link."""
    link = settings.serving_dir / CURRENT
    if not link.is_symlink():
        return None
    match = FILE_RE.fullmatch(Path(os.readlink(link)).name)
    return match["version"] if match else None


def pipeline_commit(repo: Path = REPO_ROOT) -> str:
    """``git rev-parse HEAD`` of the pipeline's repository, ``-dirty`` if tracked files changed."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=repo,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"  # not a checkout (an installed copy): provenance still has the model folder
    return f"{head}-dirty" if dirty else head


# ---------------------------------------------------------------- the model folder and meta


def read_model_folder(folder: Path) -> dict[str, object]:
    """The JSON files of a model folder, parsed; a missing required file is a clear error."""
    if not folder.is_dir():
        raise FileNotFoundError(f"no model folder {folder}")
    missing = [name for name in MODEL_FILES if not (folder / name).exists()]
    if missing:
        raise FileNotFoundError(f"model folder {folder} lacks {', '.join(missing)}")
    parsed: dict[str, object] = {}
    for name in (*MODEL_JSON, "fallback.json"):
        path = folder / name
        if path.exists():
            try:
                parsed[name] = json.loads(path.read_text())
            except ValueError as exc:
                raise ValueError(f"{path} is not valid JSON: {exc}") from None
    return parsed


def fallback_line(fallback: object) -> str:
    """The response line for unknown users from ``fallback.json`` ({"items": [slugs]})."""
    items = fallback.get("items") if isinstance(fallback, dict) else None
    if not isinstance(items, list) or not items or not all(isinstance(item, str) for item in items):
        raise ValueError('fallback.json must be {"items": [1..20 movie ids]}')
    problem = check_items(",".join(items), None)
    if problem:
        raise ValueError(f"fallback.json: {problem}")
    return ",".join(items)


def build_meta(
    version: str,
    model: dict[str, object],
    *,
    git_commit: str,
    created_at: datetime,
    extra: dict | None = None,
) -> dict[str, str]:
    """The meta table (without ``row_count``, which the writer adds) from a parsed model folder."""
    meta = {
        "model_version": check_version(version),
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


# ---------------------------------------------------------------- writing


def write_serving_file(
    path: Path,
    batches: Iterable[tuple[Sequence[int], Sequence[str]]],
    meta: dict[str, str],
    *,
    total: int | None = None,
    progress_every: float = 5.0,
) -> int:
    """Write ``recs`` from (user_ids, lines) batches sorted by user id, then ``meta``; returns the rows.

    Built under a temporary name with journaling and syncing off (a crash leaves
    only the temporary file, so the journal buys nothing), rows appended in key
    order so the primary-key B-tree is filled left to right, then fsynced,
    made read-only and renamed into place.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    staging.unlink(missing_ok=True)
    began = time.monotonic()
    next_report = began + progress_every
    rows = 0
    last_user: int | None = None
    try:
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
        with open(staging, "rb") as handle:
            os.fsync(handle.fileno())
        staging.chmod(0o444)
        os.replace(staging, path)
        _fsync_dir(path.parent)
    except BaseException:
        staging.unlink(missing_ok=True)
        raise
    _log_progress("wrote", path.name, rows, total, began)
    return rows


def _log_progress(what: str, name: str, rows: int, total: int | None, began: float) -> None:
    seconds = max(time.monotonic() - began, 1e-9)
    share = f" / {total:,} ({100 * rows / total:.0f}%)" if total else ""
    log.info("%s %s: %s users%s, %.0f users/s", what, name, f"{rows:,}", share, rows / seconds)


def _fsync_dir(folder: Path) -> None:
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


# ---------------------------------------------------------------- validation


@dataclass(frozen=True)
class Validation:
    version: str
    path: Path
    row_count: int
    recall_at_20: float
    seconds: float


def check_items(line: str, catalog: frozenset[str] | set[str] | None) -> str | None:
    """What is wrong with one stored list (None if nothing): <= 20 ids, no repeats, all in the catalog."""
    if not isinstance(line, str):
        return f"items is {type(line).__name__}, not text"
    ids = line.split(",") if line else []
    if len(ids) > MAX_ITEMS:
        return f"{len(ids)} ids, at most {MAX_ITEMS}"
    if len(set(ids)) != len(ids):
        repeated = sorted({item for item in ids if ids.count(item) > 1})
        return f"repeated id {repeated[0]!r}"
    if catalog is not None:
        unknown = [item for item in ids if item not in catalog]
        if unknown:
            return f"id {unknown[0][:60]!r} is not in the model's catalog"
    elif any(not item or item != item.strip() for item in ids):
        return "an empty or padded id"
    return None


def validate(
    path: Path,
    *,
    catalog: frozenset[str] | None,
    expected_users: int | None = None,
    samples: int = 200,
    progress_every: float = 5.0,
) -> Validation:
    """Check a serving file completely; raise InvalidServingFile listing what is wrong.

    integrity_check, the schema of both tables, the meta keys and their formats,
    row_count (meta = rows = the model's users), every list (<= 20 ids, no
    repeats, each in ``catalog``), the fallback line, and sampled primary-key
    lookups returning what the scan read.
    """
    began = time.monotonic()
    match = FILE_RE.fullmatch(path.name)
    if not match:
        raise InvalidServingFile(f"{path.name}: not a serving file name (recs-<version>.sqlite)")
    if not path.is_file():
        raise InvalidServingFile(f"{path}: no such file")
    try:
        connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    except sqlite3.Error as exc:
        raise InvalidServingFile(f"{path.name}: cannot open: {exc}") from None
    try:
        meta, rows = _check_structure(connection, path.name, match["version"], catalog, expected_users)
        _check_lists(connection, path.name, catalog, rows, samples, progress_every)
    except sqlite3.Error as exc:
        raise InvalidServingFile(f"{path.name}: not a readable SQLite file: {exc}") from None
    finally:
        connection.close()
    result = Validation(match["version"], path, rows, _recall(meta), time.monotonic() - began)
    log.info(
        "validated %s: %s users, Recall@20 %.4f (%.1f s)",
        path.name,
        f"{rows:,}",
        result.recall_at_20,
        result.seconds,
    )
    return result


def _check_structure(
    connection: sqlite3.Connection,
    name: str,
    version: str,
    catalog: frozenset[str] | None,
    expected_users: int | None,
) -> tuple[dict[str, str], int]:
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
    meta = dict(connection.execute("SELECT key, value FROM meta"))
    problems = check_meta(meta, version, catalog)
    if problems:
        raise InvalidServingFile(f"{name}: {'; '.join(problems)}")
    rows = connection.execute("SELECT count(*) FROM recs").fetchone()[0]
    if rows != int(meta["row_count"]):
        raise InvalidServingFile(f"{name}: recs has {rows} rows, meta row_count says {meta['row_count']}")
    if expected_users is not None and rows != expected_users:
        raise InvalidServingFile(f"{name}: recs has {rows} rows, the model knows {expected_users} users")
    return meta, rows


def check_meta(meta: dict[str, str], version: str, catalog: frozenset[str] | None) -> list[str]:
    """What is wrong with a meta table (empty list when nothing is)."""
    problems = [f"meta key {key!r} missing" for key in REQUIRED_META if meta.get(key) in (None, "")]
    if problems:
        return problems
    if meta["model_version"] != version:
        problems.append(f"file name says version {version}, meta says {meta['model_version']!r}")
    for key in JSON_META:
        try:
            json.loads(meta[key])
        except ValueError:
            problems.append(f"meta {key!r} is not JSON")
    if not problems and _recall(meta) is None:
        problems.append("meta metrics has no numeric recall_at_20 (the gate needs it)")
    if not str(meta["row_count"]).isdigit():
        problems.append(f"meta row_count {str(meta['row_count'])[:40]!r} is not a count")
    try:
        datetime.fromisoformat(meta["created_at"])
    except (TypeError, ValueError):
        problems.append(f"meta created_at {str(meta['created_at'])[:40]!r} is not ISO 8601")
    fallback_problem = check_items(meta["fallback"], catalog)
    if fallback_problem:
        problems.append(f"fallback: {fallback_problem}")
    return problems


def _recall(meta: dict[str, str]) -> float | None:
    try:
        value = json.loads(meta["metrics"]).get("recall_at_20")
    except (ValueError, AttributeError, KeyError):
        return None
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _check_lists(
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
        problem = check_items(line, catalog)
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


def model_catalog(folder: Path) -> frozenset[str]:
    """Every movie id the model knows (movies.parquet)."""
    path = folder / "movies.parquet"
    if not path.exists():
        raise InvalidServingFile(f"cannot check ids: {path} is missing")
    return frozenset(pq.read_table(path, columns=["movie_id"]).column("movie_id").to_pylist())


def model_user_count(folder: Path) -> int | None:
    path = folder / "users.parquet"
    return pq.ParquetFile(path).metadata.num_rows if path.exists() else None


def validate_version(settings: Settings, version: str, *, require_model: bool = True) -> Validation:
    """``validate`` a version's serving file against its model folder (catalog and user count)."""
    folder = model_dir(settings, version)
    if not folder.exists() and not require_model:
        log.warning("model folder %s is gone: ids not checked against its catalog", folder)
        return validate(serving_path(settings, version), catalog=None)
    return validate(
        serving_path(settings, version),
        catalog=model_catalog(folder),
        expected_users=model_user_count(folder),
    )


# ---------------------------------------------------------------- publish, rollback, keep N


@dataclass
class Outcome:
    """What publish / rollback did."""

    action: str
    version: str
    previous: str | None
    recall_at_20: float
    previous_recall_at_20: float | None = None
    gate: str = "passed"
    forced: bool = False
    removed: list[str] = field(default_factory=list)

    def describe(self) -> str:
        before = f" (was {self.previous}" + (
            f", Recall@20 {self.previous_recall_at_20:.4f})"
            if self.previous_recall_at_20 is not None
            else ")"
        )
        text = f"{self.action}: current is {self.version}, Recall@20 {self.recall_at_20:.4f}"
        text += before if self.previous else " (nothing was current)"
        if self.gate != "passed":
            text += f"; gate {self.gate}"
        if self.removed:
            text += f"; removed {', '.join(self.removed)}"
        return text


def gate(new_recall: float, current_recall: float | None, margin: float) -> str | None:
    """Why the new model is refused (None: it may serve): not worse than current - margin on Recall@20."""
    if current_recall is None or new_recall >= current_recall - margin:
        return None
    return (
        f"Recall@20 {new_recall:.4f} is worse than the current model's {current_recall:.4f} "
        f"by more than the margin {margin:g}"
    )


def publish(settings: Settings, version: str, *, force: bool = False) -> Outcome:
    """Validate ``version``'s serving file, apply the gate (unless ``force``), make it current, prune."""
    check_version(version)
    with _registry_lock(settings):
        checked = validate_version(settings, version)
        previous = current_version(settings)
        previous_recall = _current_recall(settings, previous)
        outcome = Outcome("publish", version, previous, checked.recall_at_20, previous_recall, forced=force)
        refusal = gate(checked.recall_at_20, previous_recall, settings.gate_margin)
        if refusal and not force:
            log.warning("not publishing %s: %s; %s stays current", version, refusal, previous)
            raise GateRefused(f"{version} refused: {refusal}; {previous} stays current (--force to publish)")
        if refusal:
            outcome.gate = f"overridden (--force): {refusal}"
        if previous != version:
            _point_current(settings.serving_dir, version)
        _append_log(settings, outcome)
        outcome.removed = prune(settings)
    log.info("%s", outcome.describe())
    return outcome


def promote(settings: Settings, serving_id: str, reason: str) -> Outcome:
    """Make ``serving_id``'s file current because it won an experiment (``reason``): validated as for
    publish, against its model folder when one exists; the offline gate does not apply."""
    with _registry_lock(settings):
        path = settings.serving_dir / file_name(serving_id)
        folder = settings.models_dir / serving_id
        if folder.is_dir():
            checked = validate(path, catalog=model_catalog(folder), expected_users=model_user_count(folder))
        else:
            checked = validate(path, catalog=None)
        previous = current_version(settings)
        outcome = Outcome(
            "publish", serving_id, previous, checked.recall_at_20, _current_recall(settings, previous),
            gate=f"not applied: {reason}",
        )  # fmt: skip
        if previous != serving_id:
            _point_current(settings.serving_dir, serving_id)
        _append_log(settings, outcome)
        outcome.removed = prune(settings)
    log.info("%s", outcome.describe())
    return outcome


def rollback(settings: Settings, version: str | None = None) -> Outcome:
    """Make the previous published version (or ``version``, if it was published before) current again."""
    with _registry_lock(settings):
        current = current_version(settings)
        published = [v for v in published_versions(settings) if serving_path(settings, v).exists()]
        if version is None:
            if current is None:
                raise PublishRefused("nothing is current: publish a version first")
            earlier = [v for v in published if v < current]
            if not earlier:
                raise PublishRefused(f"no earlier published version to roll back to from {current}")
            version = earlier[-1]
        elif check_version(version) not in published:
            choices = ", ".join(published) or "none"
            raise PublishRefused(f"{version} was never published (rollback targets: {choices}); publish it")
        checked = validate_version(settings, version, require_model=False)
        outcome = Outcome(
            "rollback", version, current, checked.recall_at_20, _current_recall(settings, current)
        )
        if version != current:
            _point_current(settings.serving_dir, version)
        _append_log(settings, outcome)
    log.info("%s", outcome.describe())
    return outcome


def _current_recall(settings: Settings, version: str | None) -> float | None:
    if version is None:
        return None
    try:
        return read_meta(serving_path(settings, version)).get("recall_at_20")  # type: ignore[return-value]
    except (OSError, sqlite3.Error, InvalidServingFile) as exc:
        # The gate compares against what serves; if that cannot be read, there is nothing to compare.
        log.warning("current %s unreadable (%s): publishing without a gate baseline", version, exc)
        return None


def read_meta(path: Path) -> dict[str, object]:
    """A serving file's meta table, with ``recall_at_20`` pulled out of metrics (None if absent)."""
    if not path.is_file():
        raise InvalidServingFile(f"{path}: no such file")
    connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        meta: dict[str, object] = dict(connection.execute("SELECT key, value FROM meta"))
    finally:
        connection.close()
    meta["recall_at_20"] = _recall(meta) if "metrics" in meta else None  # type: ignore[arg-type]
    return meta


def _point_current(serving_dir: Path, version: str) -> None:
    """Re-point ``current`` atomically: a new symlink beside it, renamed over it."""
    staging = serving_dir / f".{CURRENT}.tmp-{os.getpid()}"
    staging.unlink(missing_ok=True)
    os.symlink(f"recs-{version}.sqlite", staging)  # relative: the folder can move
    os.replace(staging, serving_dir / CURRENT)
    _fsync_dir(serving_dir)


def _append_log(settings: Settings, outcome: Outcome) -> None:
    record = {"at": datetime.now(UTC).isoformat(timespec="seconds"), **asdict(outcome)}
    record.pop("removed")
    with open(settings.serving_dir / LOG_NAME, "a") as handle:
        handle.write(json.dumps(record) + "\n")
        handle.flush()
        os.fsync(handle.fileno())


def registry_log(settings: Settings) -> list[dict[str, object]]:
    path = settings.serving_dir / LOG_NAME
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def published_versions(settings: Settings) -> list[str]:
    """Versions that were current at some point (so passed validation), oldest first."""
    made_current = {"publish", "rollback"}  # not the evidence entries (append_evidence)
    return sorted(
        {str(record["version"]) for record in registry_log(settings) if record.get("action") in made_current}
    )


EVIDENCE = "online_evidence"


def append_evidence(settings: Settings, version: str, evidence: dict[str, object]) -> dict[str, object]:
    """One ``online_evidence`` line in the registry's log next to ``version`` (a serving id): the
    experiment's verdict on it and the numbers behind it (effect, interval, p-value, SRM check)."""
    record = {"at": datetime.now(UTC).isoformat(timespec="seconds"), "action": EVIDENCE, "version": version}
    record |= evidence
    settings.serving_dir.mkdir(parents=True, exist_ok=True)
    with _registry_lock(settings), open(settings.serving_dir / LOG_NAME, "a") as handle:
        handle.write(json.dumps(record, default=str) + "\n")
        handle.flush()
        os.fsync(handle.fileno())
    return record


@contextmanager
def _registry_lock(settings: Settings) -> Iterator[None]:
    """One publisher at a time (the retrain DAG and a person at the CLI may meet)."""
    settings.serving_dir.mkdir(parents=True, exist_ok=True)
    with open(settings.serving_dir / ".registry.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def experiment_versions(experiment_path: Path) -> set[str] | None:
    """Versions an A/B experiment config references; None if the config exists but cannot be read."""
    if not experiment_path.exists():
        return set()
    try:
        variants = json.loads(experiment_path.read_text()).get("variants", [])
        return {str(variant["model_version"]) for variant in variants}
    except (ValueError, AttributeError, KeyError, TypeError) as exc:
        log.warning("experiment config %s unreadable (%s)", experiment_path, exc)
        return None


def files_to_remove(versions: Sequence[str], keep: int, protected: set[str]) -> list[str]:
    """Versions beyond the newest ``keep`` that nothing protects (current, experiments)."""
    newest = set(sorted(versions)[-keep:]) if keep > 0 else set()
    return [version for version in sorted(versions) if version not in newest | protected]


def prune(settings: Settings) -> list[str]:
    """Delete serving files beyond the newest ``keep_versions``; never current or an experiment's."""
    referenced = experiment_versions(settings.experiment_path)
    if referenced is None:
        log.warning("keeping every serving file: the experiment config cannot tell which are in use")
        return []
    protected = referenced | {current_version(settings) or ""}
    removed = files_to_remove(serving_versions(settings.serving_dir), settings.keep_versions, protected)
    for version in removed:
        serving_path(settings, version).unlink(missing_ok=True)
        log.info("removed old serving file recs-%s.sqlite", version)
    return removed


@dataclass(frozen=True)
class VersionInfo:
    version: str
    current: bool
    published: bool
    in_experiment: bool
    bytes: int
    row_count: int | None
    recall_at_20: float | None
    created_at: str | None


def list_versions(settings: Settings) -> list[VersionInfo]:
    """Every serving file, oldest first, with what its meta says (None where it cannot be read)."""
    current = current_version(settings)
    published = set(published_versions(settings))
    in_experiment = experiment_versions(settings.experiment_path) or set()
    infos = []
    for version in serving_versions(settings.serving_dir):
        path = serving_path(settings, version)
        try:
            meta = read_meta(path)
        except (sqlite3.Error, InvalidServingFile):
            meta = {}
        row_count = meta.get("row_count")
        infos.append(
            VersionInfo(
                version=version,
                current=version == current,
                published=version in published,
                in_experiment=version in in_experiment,
                bytes=path.stat().st_size,
                row_count=int(row_count) if isinstance(row_count, str) and row_count.isdigit() else None,
                recall_at_20=meta.get("recall_at_20"),  # type: ignore[arg-type]
                created_at=meta.get("created_at"),  # type: ignore[arg-type]
            )
        )
    return infos
