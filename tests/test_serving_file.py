"""The serving-file contract on its own: serving ids, the one line check, the validator's two depths,
and atomic writing (nothing partial is ever left, whatever fails).

Files are real SQLite, written by ``serving_file.write`` and then damaged behind its back.
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest

from movierec import serving_file
from movierec.files import atomic_write, write_text
from movierec.models.versions import VersionError
from movierec.serving_file import InvalidServingFile

VERSION = "20261130T120000Z"
CATALOG = frozenset(f"movie+{n}+{1990 + n % 30}" for n in range(60))
MOVIES = sorted(CATALOG)
USERS = list(range(10, 1010, 10))  # 100 users: the first, middle and last are 10, 500 (510 found), 1000


def line_of(user: int) -> str:
    return ",".join(MOVIES[(user // 10 + j) % len(MOVIES)] for j in range(20))


def meta_for(serving_id: str, **overrides: str) -> dict[str, str]:
    meta = {
        "model_version": serving_id,
        "created_at": "2026-11-30T12:00:00+00:00",
        "git_commit": "abc",
        "params": json.dumps({"rank": 8}),
        "data_manifest": json.dumps({"files": []}),
        "metrics": json.dumps({"recall_at_20": 0.2}),
        "fallback": ",".join(MOVIES[:20]),
    }
    return meta | overrides


def write_file(folder: Path, serving_id: str = VERSION, **meta: str) -> Path:
    path = serving_file.file_path(folder, serving_id)
    serving_file.write(path, [(USERS, [line_of(u) for u in USERS])], meta_for(serving_id, **meta))
    return path


def tamper(path: Path, *statements: str) -> None:
    """Change a written (read-only) serving file behind the contract's back."""
    path.chmod(0o644)
    connection = sqlite3.connect(path)
    for statement in statements:
        connection.execute(statement)
    connection.commit()
    connection.close()


# ---------------------------------------------------------------- serving ids


def test_a_serving_id_is_a_version_or_a_version_and_a_candidate() -> None:
    assert serving_file.split_serving_id(VERSION) == (VERSION, None)
    assert serving_file.split_serving_id(f"{VERSION}-als_r16_demo") == (VERSION, "als_r16_demo")
    assert serving_file.serving_id(VERSION) == VERSION
    assert serving_file.serving_id(VERSION, "popularity") == f"{VERSION}-popularity"
    assert serving_file.file_name(f"{VERSION}-als") == f"recs-{VERSION}-als.sqlite"


@pytest.mark.parametrize(
    "text",
    [
        "v1",
        "",
        "current",
        f"{VERSION}-",
        f"{VERSION}-ALS",
        f"{VERSION}-als-x",
        "20261330T120000Z",
        "../x",
        None,
    ],
)
def test_anything_else_is_not_a_serving_id(text: object) -> None:
    with pytest.raises(VersionError, match=r"not a serving id|not a version id"):
        serving_file.split_serving_id(text)
    if isinstance(text, str):
        with pytest.raises(ValueError):
            serving_file.file_name(text)  # it becomes part of a path: never built from a bad id


def test_a_candidate_name_is_checked_when_an_id_is_made() -> None:
    with pytest.raises(VersionError, match="candidate"):
        serving_file.serving_id(VERSION, "ALS r16")


def test_only_serving_files_are_listed_oldest_first(tmp_path: Path) -> None:
    later = "20261201T000000Z"
    for name in (
        f"recs-{later}.sqlite",
        f"recs-{VERSION}-als.sqlite",
        f"recs-{VERSION}.sqlite",
        "recs-v1.sqlite",
        f".recs-{VERSION}.sqlite.tmp-12",
        "recs-20261330T120000Z.sqlite",
        "registry.jsonl",
    ):
        (tmp_path / name).write_bytes(b"")
    assert serving_file.serving_ids(tmp_path) == [VERSION, f"{VERSION}-als", later]
    assert serving_file.serving_id_of(f"serving/recs-{VERSION}-als.sqlite") == f"{VERSION}-als"
    assert serving_file.serving_id_of("recs-v1.sqlite") is None


# ---------------------------------------------------------------- one line


@pytest.mark.parametrize(
    ("line", "catalog", "problem"),
    [
        ("", None, None),
        ("a+2000,b+2001", None, None),
        ("a+2000,\nb+2001", None, "more than one line"),
        ("a+2000\r", None, "more than one line"),
        ("a,,b", None, "an empty or padded id"),
        ("a, b", None, "an empty or padded id"),
        (",".join(f"m+{n}" for n in range(21)), None, "21 ids, at most 20"),
        ("a+1,b+2,a+1", None, "repeated id 'a+1'"),
        ("movie+1+1991,no+such+1999", CATALOG, "id 'no+such+1999' is not in the model's catalog"),
        ("movie+1+1991,", CATALOG, "id '' is not in the model's catalog"),
        (b"movie+1+1991", None, "items is bytes, not text"),
        (None, None, "items is NoneType, not text"),
    ],
)
def test_check_line(line: object, catalog: frozenset[str] | None, problem: str | None) -> None:
    assert serving_file.check_line(line, catalog) == problem


# ---------------------------------------------------------------- the validator at two depths


def test_a_good_file_passes_both_depths_and_reports_what_it_read(tmp_path: Path) -> None:
    path = write_file(tmp_path)
    full = serving_file.validate(path, depth="full", catalog=CATALOG, expected_users=len(USERS))
    sampled = serving_file.validate(path, depth="sampled")
    for checked in (full, sampled):
        assert checked.serving_id == VERSION and checked.row_count == len(USERS)
        assert checked.meta["row_count"] == str(len(USERS))
    assert full.recall_at_20 == pytest.approx(0.2)
    candidate = write_file(tmp_path, f"{VERSION}-als_r16")
    assert serving_file.validate(candidate, depth="sampled").serving_id == f"{VERSION}-als_r16"


Spoil = Callable[[Path], Path]


def sql(*statements: str) -> Spoil:
    def spoil(path: Path) -> Path:
        tamper(path, *statements)
        return path

    return spoil


def rename_to(name: str) -> Spoil:
    return lambda path: path.rename(path.with_name(name))


def garbage(path: Path) -> Path:
    path.chmod(0o644)
    path.write_bytes(b"not a database" * 500)
    return path


def meta_set(key: str, value: str) -> Spoil:
    return sql(f"UPDATE meta SET value = '{value}' WHERE key = '{key}'")


def line_set(user: int, line: str) -> Spoil:
    return sql(f"UPDATE recs SET items = '{line}' WHERE user_id = {user}")


# What both depths must refuse: what a worker would otherwise serve wrongly.
BOTH: dict[str, tuple[Spoil, str]] = {
    "meta key missing": (sql("DELETE FROM meta WHERE key = 'git_commit'"), "'git_commit' missing"),
    "meta not JSON": (meta_set("params", "{x"), "'params' is not JSON"),
    "created_at": (meta_set("created_at", "soon"), "not ISO 8601"),
    "row_count": (meta_set("row_count", "99"), "meta row_count says 99"),
    "name vs meta": (rename_to("recs-20261201T000000Z.sqlite"), "file name says version '20261201T000000Z'"),
    "not a serving name": (rename_to("recs-v1.sqlite"), "not a serving file name"),
    "fallback": (meta_set("fallback", "a,\nb"), "fallback: more than one line"),
    "last line": (line_set(1000, "a,,b"), "user 1000: an empty or padded id"),
    "first line": (line_set(10, "x,x"), "user 10: repeated id"),
    "not SQLite": (garbage, "not a readable serving file"),
}

# What only the full depth (before publishing) catches: the rest of the file, its structure, the gate's needs.
FULL_ONLY: dict[str, tuple[Spoil, str]] = {
    "a middle line repeats": (line_set(130, f"{MOVIES[1]},{MOVIES[1]}"), "user 130: repeated id"),
    "an id outside the catalog": (
        line_set(20, "zz+1999"),
        r"user 20: id 'zz\+1999' is not in the model's catalog",
    ),
    "fallback outside the catalog": (meta_set("fallback", "zz+1999"), r"fallback: id 'zz\+1999'"),
    "no recall for the gate": (meta_set("metrics", "{}"), "no numeric recall_at_20"),
    "schema": (sql("ALTER TABLE recs ADD COLUMN score REAL"), "table recs has columns"),
    "fewer users than the model": (
        sql("DELETE FROM recs WHERE user_id = 20", "UPDATE meta SET value = '99' WHERE key = 'row_count'"),
        "the model knows 100 users",
    ),
}


@pytest.mark.parametrize("damage", list(BOTH))
def test_both_depths_refuse(tmp_path: Path, damage: str) -> None:
    spoil, message = BOTH[damage]
    path = spoil(write_file(tmp_path))
    for depth in ("sampled", "full"):
        with pytest.raises(InvalidServingFile, match=message):
            serving_file.validate(path, depth=depth, catalog=None, expected_users=len(USERS))


@pytest.mark.parametrize("damage", list(FULL_ONLY))
def test_only_the_full_depth_refuses(tmp_path: Path, damage: str) -> None:
    spoil, message = FULL_ONLY[damage]
    path = spoil(write_file(tmp_path))
    assert serving_file.validate(path, depth="sampled").row_count in (len(USERS), len(USERS) - 1)
    with pytest.raises(InvalidServingFile, match=message):
        serving_file.validate(path, depth="full", catalog=CATALOG, expected_users=len(USERS))


def test_a_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(InvalidServingFile, match="no such file"):
        serving_file.validate(serving_file.file_path(tmp_path, VERSION))


def test_read_meta_and_recall(tmp_path: Path) -> None:
    meta = serving_file.read_meta(write_file(tmp_path))
    assert meta["model_version"] == VERSION and meta["row_count"] == str(len(USERS))
    assert serving_file.recall_at_20(meta) == pytest.approx(0.2)
    assert serving_file.recall_at_20({"metrics": '{"recall_at_20": true}'}) is None
    assert serving_file.recall_at_20({}) is None


# ---------------------------------------------------------------- writing, atomically


def test_the_writer_leaves_a_read_only_file_and_nothing_beside_it(tmp_path: Path) -> None:
    path = write_file(tmp_path)
    assert os.stat(path).st_mode & 0o777 == 0o444
    assert [p.name for p in tmp_path.iterdir()] == [path.name]
    connection = sqlite3.connect(path)
    assert connection.execute("SELECT items FROM recs WHERE user_id = 500").fetchone() == (line_of(500),)
    connection.close()


def test_a_writer_that_fails_leaves_no_file_and_the_old_one_intact(tmp_path: Path) -> None:
    target = tmp_path / "report.json"

    def failing_batches():
        yield [1, 2], ["a+1", "b+2"]
        raise RuntimeError("scoring died")

    path = serving_file.file_path(tmp_path, VERSION)
    with pytest.raises(RuntimeError, match="scoring died"):
        serving_file.write(path, failing_batches(), meta_for(VERSION))
    assert list(tmp_path.iterdir()) == []

    write_text(target, "old\n")
    with pytest.raises(OSError), atomic_write(target) as staging:
        staging.write_text("half of the new")
        raise OSError("disk full")
    assert target.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["report.json"]


def test_atomic_write_replaces_and_can_write_a_symlink(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "out.txt"
    write_text(target, "one")
    write_text(target, "two")
    assert target.read_text() == "two"
    link = tmp_path / "current"
    for name in ("a", "b"):
        with atomic_write(link) as staging:
            os.symlink(name, staging)
        assert os.readlink(link) == name
    assert sorted(p.name for p in tmp_path.iterdir()) == ["current", "sub"]


def test_build_meta_takes_the_model_folder_json(tmp_path: Path) -> None:
    model = {
        "params.json": {"rank": 8},
        "data_manifest.json": {"files": []},
        "metrics.json": {"recall_at_20": 0.3},
        "fallback.json": {"items": MOVIES[:3]},
    }
    meta = serving_file.build_meta(
        f"{VERSION}-als", model, git_commit="c0ffee", created_at=datetime(2026, 12, 1, tzinfo=UTC)
    )
    assert meta["model_version"] == f"{VERSION}-als"
    assert meta["fallback"] == ",".join(MOVIES[:3])
    assert json.loads(meta["metrics"]) == {"recall_at_20": 0.3}
    assert meta["created_at"] == "2026-12-01T00:00:00+00:00"
    with pytest.raises(ValueError, match=r"fallback\.json"):
        serving_file.build_meta(
            VERSION, {**model, "fallback.json": {"items": []}}, git_commit="c", created_at=datetime.now(UTC)
        )
