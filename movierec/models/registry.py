"""The serving registry: which file is ``current``, the gate, publish and rollback, keeping the last N.

    $MOVIEREC_HOME/serving/current          symlink -> recs-<version>.sqlite, replaced atomically
    $MOVIEREC_HOME/serving/registry.jsonl   one line per publish / rollback / online evidence

The files themselves (their names, writing and checking them) belong to
``movierec.serving_file``. A file is made ``current`` only after it passed the full
``serving_file.validate`` against its model folder (and, on publish, the Recall@20
gate); a refused file raises ``PublishRefused`` (or ``InvalidServingFile``) and leaves
``current`` untouched. Rollback goes back to a version that was current before
(recorded in ``registry.jsonl``), re-checked on the way. Publishing prunes versions
beyond the newest ``keep_versions``: their serving files and their model folders.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import shutil
import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from movierec import serving_file
from movierec.files import atomic_write
from movierec.models.versions import (
    check_version,
    list_model_folders,
    model_catalog,
    model_dir,
    model_user_count,
)
from movierec.serving_file import CURRENT, InvalidServingFile, Validation
from movierec.settings import Settings

log = logging.getLogger(__name__)

LOG_NAME = "registry.jsonl"


class PublishRefused(RuntimeError):
    """A serving file may not become current; the message says why."""


class GateRefused(PublishRefused):
    """The model is valid but worse than the current one beyond the margin."""


def current_version(settings: Settings) -> str | None:
    """The serving id ``serving/current`` points at, or None if there is no link."""
    link = settings.serving_dir / CURRENT
    if not link.is_symlink():
        return None
    return serving_file.serving_id_of(os.readlink(link))


def validate_version(settings: Settings, serving_id: str, *, require_model: bool = True) -> Validation:
    """The full ``serving_file.validate`` of a serving file against its model folder (catalog, users)."""
    path = serving_file.file_path(settings.serving_dir, serving_id)
    version, _ = serving_file.split_serving_id(serving_id)
    folder = model_dir(settings, version)
    if not folder.exists() and not require_model:
        log.warning("model folder %s is gone: ids not checked against its catalog", folder)
        return serving_file.validate(path, depth="full")
    return serving_file.validate(
        path, depth="full", catalog=model_catalog(folder), expected_users=model_user_count(folder)
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
        recall = _gate_recall(validate_version(settings, version))
        previous = current_version(settings)
        previous_recall = _current_recall(settings, previous)
        outcome = Outcome("publish", version, previous, recall, previous_recall, forced=force)
        refusal = gate(recall, previous_recall, settings.gate_margin)
        if refusal and not force:
            log.warning("not publishing %s: %s; %s stays current", version, refusal, previous)
            raise GateRefused(f"{version} refused: {refusal}; {previous} stays current (--force to publish)")
        if refusal:
            outcome.gate = f"overridden (--force): {refusal}"
        _make_current(settings, outcome)
    log.info("%s", outcome.describe())
    return outcome


def promote(settings: Settings, serving_id: str, reason: str) -> Outcome:
    """Make ``serving_id``'s file current because it won an experiment (``reason``): validated as for
    publish, against its model folder when one exists; the offline gate does not apply."""
    with _registry_lock(settings):
        checked = validate_version(settings, serving_id, require_model=False)
        previous = current_version(settings)
        outcome = Outcome(
            "publish", serving_id, previous, _gate_recall(checked), _current_recall(settings, previous),
            gate=f"not applied: {reason}",
        )  # fmt: skip
        _make_current(settings, outcome)
    log.info("%s", outcome.describe())
    return outcome


def rollback(settings: Settings, version: str | None = None) -> Outcome:
    """Make the previous published version (or ``version``, if it was published before) current again."""
    with _registry_lock(settings):
        current = current_version(settings)
        published = [
            v
            for v in published_versions(settings)
            if serving_file.file_path(settings.serving_dir, v).exists()
        ]
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
        recall = _gate_recall(validate_version(settings, version, require_model=False))
        outcome = Outcome("rollback", version, current, recall, _current_recall(settings, current))
        if version != current:
            _point_current(settings.serving_dir, version)
        _append_log(settings, outcome)
    log.info("%s", outcome.describe())
    return outcome


def _make_current(settings: Settings, outcome: Outcome) -> None:
    """Point ``current`` at the outcome's version (unless it already serves), log it, prune."""
    if outcome.previous != outcome.version:
        _point_current(settings.serving_dir, outcome.version)
    _append_log(settings, outcome)
    outcome.removed = prune(settings)


def _gate_recall(checked: Validation) -> float:
    recall = checked.recall_at_20
    if recall is None:  # a full validation refuses such a file; this only guards the type
        raise InvalidServingFile(f"{checked.path.name}: meta metrics has no numeric recall_at_20")
    return recall


def _current_recall(settings: Settings, serving_id: str | None) -> float | None:
    if serving_id is None:
        return None
    try:
        return serving_file.recall_at_20(
            serving_file.read_meta(serving_file.file_path(settings.serving_dir, serving_id))
        )
    except (OSError, sqlite3.Error, ValueError) as exc:
        # The gate compares against what serves; if that cannot be read, there is nothing to compare.
        log.warning("current %s unreadable (%s): publishing without a gate baseline", serving_id, exc)
        return None


def _point_current(serving_dir: Path, serving_id: str) -> None:
    """Re-point ``current`` atomically: a new symlink beside it, renamed over it."""
    with atomic_write(serving_dir / CURRENT) as staging:
        os.symlink(serving_file.file_name(serving_id), staging)  # relative: the folder can move


def _append_log(settings: Settings, outcome: Outcome) -> None:
    record = {"at": datetime.now(UTC).isoformat(timespec="seconds"), **asdict(outcome)}
    record.pop("removed")
    _append_record(settings, record)


def _append_record(settings: Settings, record: dict[str, object]) -> None:
    settings.serving_dir.mkdir(parents=True, exist_ok=True)
    with open(settings.serving_dir / LOG_NAME, "a") as handle:
        handle.write(json.dumps(record, default=str) + "\n")
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
    with _registry_lock(settings):
        _append_record(settings, record)
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


def experiment_serving_ids(experiment_path: Path) -> set[str] | None:
    """Serving ids an A/B experiment config serves (not "current"); None if the config is unreadable."""
    if not experiment_path.exists():
        return set()
    try:
        variants = json.loads(experiment_path.read_text()).get("variants", [])
        named = {str(variant["model_version"]) for variant in variants}
    except (ValueError, AttributeError, KeyError, TypeError) as exc:
        log.warning("experiment config %s unreadable (%s)", experiment_path, exc)
        return None
    return {text for text in named if serving_file.SERVING_ID_RE.fullmatch(text)}


def version_of(serving_id: str) -> str:
    return serving_file.split_serving_id(serving_id)[0]


def versions_to_remove(versions: Sequence[str], keep: int, protected: set[str]) -> list[str]:
    """Versions beyond the newest ``keep`` that nothing protects (current, experiments)."""
    newest = set(sorted(versions)[-keep:]) if keep > 0 else set()
    return [version for version in sorted(versions) if version not in newest | protected]


def prune(settings: Settings) -> list[str]:
    """Delete versions beyond the newest ``keep_versions`` (their serving files and model folders);
    never the current one's or one an experiment serves."""
    referenced = experiment_serving_ids(settings.experiment_path)
    if referenced is None:
        log.warning("keeping every version: the experiment config cannot tell which are in use")
        return []
    current = current_version(settings)
    protected = {version_of(serving_id) for serving_id in referenced | ({current} if current else set())}
    files: dict[str, list[str]] = {}
    for serving_id in serving_file.serving_ids(settings.serving_dir):
        files.setdefault(version_of(serving_id), []).append(serving_id)
    versions = sorted(set(files) | set(list_model_folders(settings)))
    removed = versions_to_remove(versions, settings.keep_versions, protected)
    for version in removed:
        for serving_id in files.get(version, []):
            serving_file.file_path(settings.serving_dir, serving_id).unlink(missing_ok=True)
            log.info("removed old serving file %s", serving_file.file_name(serving_id))
        folder = model_dir(settings, version)
        if folder.exists():
            # renamed first: a half-deleted folder never looks like a version
            doomed = folder.with_name(f".{version}.removing")
            shutil.rmtree(doomed, ignore_errors=True)
            os.replace(folder, doomed)
            shutil.rmtree(doomed)
            log.info("removed old model folder %s", folder)
    return removed


@dataclass(frozen=True)
class ServingFileInfo:
    serving_id: str
    current: bool
    published: bool
    in_experiment: bool
    bytes: int
    row_count: int | None
    recall_at_20: float | None
    created_at: str | None


def list_serving_files(settings: Settings) -> list[ServingFileInfo]:
    """Every serving file, oldest first, with what its meta says (None where it cannot be read)."""
    current = current_version(settings)
    published = set(published_versions(settings))
    in_experiment = experiment_serving_ids(settings.experiment_path) or set()
    infos = []
    for serving_id in serving_file.serving_ids(settings.serving_dir):
        path = serving_file.file_path(settings.serving_dir, serving_id)
        try:
            meta = serving_file.read_meta(path)
        except (sqlite3.Error, InvalidServingFile):
            meta = {}
        row_count = meta.get("row_count")
        infos.append(
            ServingFileInfo(
                serving_id=serving_id,
                current=serving_id == current,
                published=serving_id in published,
                in_experiment=serving_id in in_experiment,
                bytes=path.stat().st_size,
                row_count=int(row_count) if isinstance(row_count, str) and row_count.isdigit() else None,
                recall_at_20=serving_file.recall_at_20(meta),
                created_at=meta.get("created_at"),
            )
        )
    return infos
