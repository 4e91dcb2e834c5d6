"""Serving files on real SQLite: validation refuses damaged files, the gate, rollback, keeping the last N.

The files here are written by ``serving_file.write`` from small hand-made lists (no Spark: the
Spark path that produces them is tests/test_precompute.py); model folders hold only what publishing
reads (movies.parquet, users.parquet and the JSON files).
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from movierec import serving_file
from movierec import settings as settings_module
from movierec.cli import main
from movierec.models import registry, versions
from movierec.models.registry import GateRefused, PublishRefused
from movierec.serving_file import InvalidServingFile
from tests.test_serving_file import tamper

MOVIES = [f"movie+{i}+{1990 + i % 30}" for i in range(40)]
USERS = [3, 5, 8, 13, 21, 34, 55, 89, 144, 233]


def version(n: int) -> str:
    return f"2026120{n}T000000Z"


def make_settings(tmp_path: Path, **env: str) -> settings_module.Settings:
    return settings_module.load({"MOVIEREC_HOME": str(tmp_path), **env})


def make_model_folder(settings: settings_module.Settings, v: str, recall: float) -> Path:
    folder = settings.models_dir / v
    folder.mkdir(parents=True)
    pq.write_table(
        pa.table({"movie_id": MOVIES, "iidx": pa.array(range(len(MOVIES)), pa.int32())}),
        folder / "movies.parquet",
    )
    pq.write_table(
        pa.table({"user_id": pa.array(USERS, pa.int64()), "uidx": pa.array(range(len(USERS)), pa.int32())}),
        folder / "users.parquet",
    )
    files = {
        "fallback.json": {"items": MOVIES[:20]},
        "params.json": {"rank": 8, "regParam": 0.05},
        "data_manifest.json": {"files": [{"path": "lake/watch/x.parquet", "sha256": "ab"}], "offsets": {}},
        "metrics.json": {"recall_at_20": recall},
        "model.json": {"version": v, "model": "als"},
    }
    for name, content in files.items():
        (folder / name).write_text(json.dumps(content))
    return folder


def lists_for(users: list[int]) -> list[str]:
    return [",".join(MOVIES[(user + j) % len(MOVIES)] for j in range(20)) for user in users]


def write_version(
    settings: settings_module.Settings,
    v: str,
    recall: float = 0.30,
    *,
    drop_meta: str | None = None,
    lines: list[str] | None = None,
) -> Path:
    folder = make_model_folder(settings, v, recall)
    meta = serving_file.build_meta(
        v,
        versions.read_model_folder(folder),
        git_commit="abc123",
        created_at=datetime(2026, 12, 1, tzinfo=UTC),
    )
    if drop_meta:
        del meta[drop_meta]
    path = serving_file.file_path(settings.serving_dir, v)
    batches = [(USERS[:4], (lines or lists_for(USERS))[:4]), (USERS[4:], (lines or lists_for(USERS))[4:])]
    serving_file.write(path, batches, meta)
    return path


def write_candidate_file(settings: settings_module.Settings, v: str, candidate: str) -> Path:
    """A serving file of one candidate of version ``v`` (its model folder exists already)."""
    serving_id = serving_file.serving_id(v, candidate)
    meta = serving_file.build_meta(
        serving_id,
        versions.read_model_folder(settings.models_dir / v),
        git_commit="abc123",
        created_at=datetime(2026, 12, 1, tzinfo=UTC),
    )
    path = serving_file.file_path(settings.serving_dir, serving_id)
    serving_file.write(path, [(USERS, lists_for(USERS))], meta)
    return path


def truncate(path: Path) -> None:
    path.chmod(0o644)
    size = path.stat().st_size
    with open(path, "r+b") as handle:
        handle.truncate(size // 2)


def test_written_file_follows_the_contract_and_publishing_points_current_at_it(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    path = write_version(settings, version(1))
    assert not os.access(path, os.W_OK) or os.geteuid() == 0  # read-only once written
    assert not list(settings.serving_dir.glob(".*tmp*"))  # nothing left beside it

    connection = sqlite3.connect(path)
    rows = connection.execute("SELECT user_id, items FROM recs ORDER BY user_id").fetchall()
    meta = dict(connection.execute("SELECT key, value FROM meta"))
    connection.close()
    assert rows == list(zip(USERS, lists_for(USERS), strict=True))
    assert meta["row_count"] == str(len(USERS))
    assert meta["fallback"] == ",".join(MOVIES[:20])
    assert json.loads(meta["metrics"]) == {"recall_at_20": 0.30}
    assert set(serving_file.REQUIRED_META) <= set(meta)

    outcome = registry.publish(settings, version(1))
    link = settings.serving_dir / "current"
    assert os.readlink(link) == f"recs-{version(1)}.sqlite"  # relative: the folder can move
    assert registry.current_version(settings) == version(1)
    assert outcome.previous is None and outcome.recall_at_20 == pytest.approx(0.30)
    assert registry.published_versions(settings) == [version(1)]


def test_rows_out_of_order_are_refused_and_leave_no_file(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    path = serving_file.file_path(settings.serving_dir, version(1))
    meta = {"model_version": version(1)}
    with pytest.raises(ValueError, match="sorted by user_id"):
        serving_file.write(path, [([5, 8], ["a", "b"]), ([7], ["c"])], meta)
    assert not path.exists()
    assert not list(settings.serving_dir.iterdir())


DAMAGE: dict[str, tuple[Callable[[Path], None] | None, dict, str]] = {
    "truncated bytes": (truncate, {}, "integrity_check|not a readable SQLite|malformed"),
    "missing meta": (None, {"drop_meta": "data_manifest"}, "meta key 'data_manifest' missing"),
    "wrong row_count": (
        lambda p: tamper(p, "UPDATE meta SET value = '11' WHERE key = 'row_count'"),
        {},
        "recs has 10 rows, meta row_count says 11",
    ),
    "fewer users than the model": (
        lambda p: tamper(
            p, "DELETE FROM recs WHERE user_id = 233", "UPDATE meta SET value='9' WHERE key='row_count'"
        ),
        {},
        "the model knows 10 users",
    ),
    "a repeat": (
        lambda p: tamper(
            p, f"UPDATE recs SET items = '{MOVIES[1]},{MOVIES[2]},{MOVIES[1]}' WHERE user_id = 89"
        ),
        {},
        "user 89: repeated id 'movie\\+1\\+1991'",
    ),
    "an unknown id": (
        lambda p: tamper(p, f"UPDATE recs SET items = '{MOVIES[1]},no+such+movie+1999' WHERE user_id = 13"),
        {},
        "user 13: id 'no\\+such\\+movie\\+1999' is not in the model's catalog",
    ),
    "21 ids": (None, {"lines": [",".join(MOVIES[:21])] * len(USERS)}, "21 ids, at most 20"),
    "unknown id in the fallback": (
        lambda p: tamper(p, "UPDATE meta SET value = 'nope+2001' WHERE key = 'fallback'"),
        {},
        "fallback: id 'nope\\+2001'",
    ),
    "wrong schema": (
        lambda p: tamper(p, "ALTER TABLE recs RENAME TO old", "CREATE TABLE recs (user_id, items)"),
        {},
        "table recs has columns",
    ),
    "no metrics to gate on": (
        lambda p: tamper(p, "UPDATE meta SET value = '{}' WHERE key = 'metrics'"),
        {},
        "no numeric recall_at_20",
    ),
}


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_validation_refuses_a_damaged_file_and_current_stays(tmp_path: Path, damage: str) -> None:
    settings = make_settings(tmp_path)
    write_version(settings, version(1))
    registry.publish(settings, version(1))
    log_before = registry.registry_log(settings)

    spoil, write_options, message = DAMAGE[damage]
    path = write_version(settings, version(2), recall=0.9, **write_options)
    if spoil:
        spoil(path)

    with pytest.raises(InvalidServingFile, match=message):
        registry.publish(settings, version(2), force=True)  # force skips the gate, never validation
    assert registry.current_version(settings) == version(1)
    assert registry.registry_log(settings) == log_before
    assert path.exists()  # refused, not deleted: someone will want to look at it


def test_publishing_a_missing_file_or_a_bad_version_id_is_a_clear_error(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    make_model_folder(settings, version(1), 0.3)
    with pytest.raises(InvalidServingFile, match="no such file"):
        registry.publish(settings, version(1))
    with pytest.raises(ValueError, match="not a version id"):
        registry.publish(settings, "latest")
    assert registry.current_version(settings) is None


def test_gate_refuses_a_worse_model_unless_forced(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, MOVIEREC_GATE_MARGIN="0.02")
    write_version(settings, version(1), recall=0.30)
    registry.publish(settings, version(1))

    write_version(settings, version(2), recall=0.25)  # 0.05 worse: beyond the margin
    with pytest.raises(GateRefused, match=r"0\.2500 is worse than the current model's 0\.3000"):
        registry.publish(settings, version(2))
    assert registry.current_version(settings) == version(1)

    write_version(settings, version(3), recall=0.285)  # 0.015 worse: within the margin
    assert registry.publish(settings, version(3)).gate == "passed"
    assert registry.current_version(settings) == version(3)

    forced = registry.publish(settings, version(2), force=True)  # gate against version 3 now
    assert registry.current_version(settings) == version(2)
    assert forced.forced and forced.gate.startswith("overridden")
    assert registry.registry_log(settings)[-1]["forced"] is True


def test_rollback_goes_back_through_published_versions_only(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    with pytest.raises(PublishRefused, match="nothing is current"):
        registry.rollback(settings)
    for n, recall in ((1, 0.30), (2, 0.31), (3, 0.32)):
        write_version(settings, version(n), recall)
        registry.publish(settings, version(n))
    write_version(settings, version(4), recall=0.10)
    with pytest.raises(GateRefused):
        registry.publish(settings, version(4))

    assert registry.rollback(settings).version == version(2)
    assert registry.current_version(settings) == version(2)
    assert registry.rollback(settings).version == version(1)
    with pytest.raises(PublishRefused, match="no earlier published version"):
        registry.rollback(settings)
    assert registry.current_version(settings) == version(1)

    assert registry.rollback(settings, version(3)).version == version(3)  # forward again, by name
    with pytest.raises(PublishRefused, match="never published"):
        registry.rollback(settings, version(4))  # refused by the gate: not a rollback target
    assert registry.current_version(settings) == version(3)

    truncate(serving_file.file_path(settings.serving_dir, version(2)))  # damaged since it was published
    with pytest.raises(InvalidServingFile):
        registry.rollback(settings)
    assert registry.current_version(settings) == version(3)


def test_only_the_newest_versions_remain_and_current_and_experiment_ones_are_never_deleted(
    tmp_path: Path,
) -> None:
    experiment = tmp_path / "experiment.json"
    settings = make_settings(tmp_path, MOVIEREC_KEEP_VERSIONS="2", MOVIEREC_EXPERIMENT_FILE=str(experiment))
    experiment.write_text(
        json.dumps({"variants": [{"model_version": version(1)}, {"model_version": "current"}]})
    )
    for n in (1, 2, 3):
        write_version(settings, version(n), 0.3)
        registry.publish(settings, version(n))
    assert serving_file.serving_ids(settings.serving_dir) == [version(1), version(2), version(3)]

    registry.rollback(settings, version(2))
    write_version(settings, version(4), 0.3)
    write_version(settings, version(5), 0.3)
    challenger = write_candidate_file(settings, version(3), "als_r16")  # goes with its version
    experiment.write_text(json.dumps({"variants": [{"model_version": "current"}]}))
    assert registry.prune(settings) == [version(1), version(3)]
    # version 2 is beyond the newest two but current
    assert serving_file.serving_ids(settings.serving_dir) == [version(2), version(4), version(5)]
    assert versions.list_model_folders(settings) == [version(2), version(4), version(5)]
    assert not challenger.exists()
    assert not [p.name for p in settings.models_dir.iterdir() if p.name.startswith(".")], (
        "no half-removed folder"
    )
    assert (settings.serving_dir / "current").resolve().exists()

    experiment.write_text("{not json")  # cannot tell what an experiment uses: delete nothing
    write_version(settings, version(6), 0.3)
    assert registry.prune(settings) == []


def test_an_experiment_serving_a_candidate_keeps_its_version(tmp_path: Path) -> None:
    experiment = tmp_path / "experiment.json"
    settings = make_settings(tmp_path, MOVIEREC_KEEP_VERSIONS="1", MOVIEREC_EXPERIMENT_FILE=str(experiment))
    for n in (1, 2, 3):
        write_version(settings, version(n), 0.3)
    challenger = write_candidate_file(settings, version(1), "als_r16")
    experiment.write_text(
        json.dumps({"variants": [{"model_version": "current"}, {"model_version": f"{version(1)}-als_r16"}]})
    )
    registry.publish(settings, version(3))  # publishing prunes
    assert versions.list_model_folders(settings) == [version(1), version(3)]
    assert challenger.exists() and serving_file.file_path(settings.serving_dir, version(1)).exists()
    assert not serving_file.file_path(settings.serving_dir, version(2)).exists()


def test_a_model_folder_without_a_serving_file_is_pruned_too(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, MOVIEREC_KEEP_VERSIONS="1")
    make_model_folder(settings, version(1), 0.3)  # a retrain that never reached precompute
    write_version(settings, version(2), 0.3)
    assert registry.publish(settings, version(2)).removed == [version(1)]
    assert versions.list_model_folders(settings) == [version(2)]


def test_versions_to_remove_is_the_rule_on_its_own() -> None:
    versions = [version(n) for n in range(1, 7)]
    assert registry.versions_to_remove(versions, 3, set()) == versions[:3]
    assert registry.versions_to_remove(versions, 3, {version(1)}) == versions[1:3]
    assert registry.versions_to_remove(versions, 10, set()) == []


def test_cli_publish_models_rollback(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    monkeypatch.setenv("MOVIEREC_HOME", str(tmp_path))
    settings = make_settings(tmp_path)
    write_version(settings, version(1), 0.30)
    write_version(settings, version(2), 0.20)

    assert main(["publish", version(1)]) == 0
    assert f"current is {version(1)}" in capsys.readouterr().out
    assert main(["publish", version(2)]) == 2
    assert "refused" in capsys.readouterr().err
    assert main(["publish", version(2), "--force"]) == 0
    capsys.readouterr()

    assert main(["models"]) == 0
    listing = capsys.readouterr().out.splitlines()
    assert listing[0].startswith(f"  {version(1)}") and "0.3000" in listing[0]
    assert listing[1].startswith(f"* {version(2)}") and "published" in listing[1]

    assert main(["rollback"]) == 0
    assert registry.current_version(settings) == version(1)
    assert main(["rollback", "yesterday"]) == 2
    assert "not a version id" in capsys.readouterr().err


def test_a_copy_of_the_folder_still_resolves_current(tmp_path: Path) -> None:
    settings = make_settings(tmp_path / "a")
    write_version(settings, version(1))
    registry.publish(settings, version(1))
    moved = tmp_path / "b"
    shutil.copytree(tmp_path / "a", moved, symlinks=True)
    assert (moved / "serving" / "current").resolve() == moved / "serving" / f"recs-{version(1)}.sqlite"
