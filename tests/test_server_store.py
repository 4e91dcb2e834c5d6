"""Serving files as the service reads them: the check that admits or refuses a file, and the swap.

``write_serving_file`` builds small real SQLite files per DESIGN.md ("Serving
files"); the other server tests use it too.
"""

from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path

import pytest

from movierec import serving_file
from movierec.serving_file import CURRENT, InvalidServingFile
from server.store import CurrentModel, open_model

FALLBACK = "popular+one+2001,popular+two+2002"


def version_id(n: int) -> str:
    """The n-th model version of these tests: a serving id, as the contract names files."""
    return f"202611{10 + n}T040000Z"


V0, V1, V2, V3, V4, V9 = (version_id(n) for n in (0, 1, 2, 3, 4, 9))


def items_of(user_id: int, version: str) -> str:
    """A distinct, well-formed line per (user, version), so a test can tell which file answered."""
    return ",".join(f"movie+{version.lower()}+{user_id}+{n}+{1990 + n}" for n in range(20))


def write_serving_file(
    serving_dir: Path,
    version: str,
    users: range | list[int] = range(1, 101),
    *,
    meta: dict[str, str] | None = None,
    drop_meta: tuple[str, ...] = (),
    created_at: str = "2026-11-28T04:00:00+00:00",
) -> Path:
    """A serving file ``recs-<version>.sqlite`` with ``users`` (overrides of meta in ``meta``)."""
    serving_dir.mkdir(parents=True, exist_ok=True)
    path = serving_file.file_path(serving_dir, version)
    path.unlink(missing_ok=True)
    values = {
        "model_version": version,
        "created_at": created_at,
        "git_commit": f"commit-of-{version}",
        "params": json.dumps({"rank": 8, "regParam": 0.05, "version": version}),
        "data_manifest": json.dumps(
            {"files": [{"path": f"lake/watch/{version}.parquet", "sha256": "ab" * 32}], "offsets": [0, 99]}
        ),
        "metrics": json.dumps({"recall_at_20": 0.1}),
        "row_count": str(len(users)),
        "fallback": FALLBACK,
    }
    values |= meta or {}
    for key in drop_meta:
        values.pop(key)
    with sqlite3.connect(path) as connection:
        connection.execute("CREATE TABLE recs(user_id INTEGER PRIMARY KEY, items TEXT NOT NULL)")
        connection.execute("CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT)")
        connection.executemany("INSERT INTO recs VALUES (?, ?)", ((u, items_of(u, version)) for u in users))
        connection.executemany("INSERT INTO meta VALUES (?, ?)", values.items())
    connection.close()
    return path


def write_experiment(home: Path, treatment: str, *, name: str, salt: str) -> None:
    """The experiment config under ``home``: half the users follow current, half get ``treatment``."""
    variants = [
        {"name": "control", "model_version": "current", "share": 0.5},
        {"name": "treatment", "model_version": treatment, "share": 0.5},
    ]
    path = home / "experiments" / "current.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"name": name, "salt": salt, "variants": variants}))


def point_current(serving_dir: Path, version: str) -> None:
    """Re-point ``current`` atomically, as publishing does (a new link renamed over the old)."""
    staging = serving_dir / f".current-{version}"
    staging.unlink(missing_ok=True)
    staging.symlink_to(f"recs-{version}.sqlite")
    os.replace(staging, serving_dir / CURRENT)


def test_a_good_file_opens_and_answers_its_users(tmp_path: Path) -> None:
    model = open_model(write_serving_file(tmp_path, V1))
    assert model.version == V1
    assert model.row_count == 100
    assert model.lookup(7) == items_of(7, V1).encode()
    assert model.lookup(101) is None
    assert model.fallback == FALLBACK.encode()


def test_the_file_is_opened_read_only(tmp_path: Path) -> None:
    model = open_model(write_serving_file(tmp_path, V1))
    with pytest.raises(sqlite3.OperationalError, match="readonly"):
        model.connection.execute("DELETE FROM recs")


@pytest.mark.parametrize(
    ("kwargs", "reason"),
    [
        ({"drop_meta": ("git_commit",)}, "'git_commit' missing"),
        ({"drop_meta": ("fallback",)}, "'fallback' missing"),
        ({"meta": {"row_count": "99"}}, "recs has 100 rows, meta row_count says 99"),
        ({"meta": {"row_count": "many"}}, "is not a count"),
        ({"meta": {"params": "{rank"}}, "'params' is not JSON"),
        ({"meta": {"created_at": "yesterday"}}, "not ISO 8601"),
        ({"meta": {"model_version": V2}}, f"file name says version '{V1}', meta says '{V2}'"),
        ({"meta": {"fallback": "a,\nb"}}, "fallback: more than one line"),
        ({"meta": {"fallback": ",".join(f"x+{2000 + n}" for n in range(21))}}, "fallback: 21 ids"),
        ({"meta": {"fallback": "x+2000,x+2000"}}, "fallback: repeated id 'x\\+2000'"),
    ],
)
def test_a_file_with_bad_meta_is_refused_with_the_reason(
    tmp_path: Path, kwargs: dict[str, object], reason: str
) -> None:
    with pytest.raises(InvalidServingFile, match=reason.replace("(", r"\(").replace(")", r"\)")):
        open_model(write_serving_file(tmp_path, V1, **kwargs))  # type: ignore[arg-type]


def test_a_file_whose_rows_are_not_response_lines_is_refused(tmp_path: Path) -> None:
    path = write_serving_file(tmp_path, V1)
    with sqlite3.connect(path) as connection:
        connection.execute("UPDATE recs SET items = 'a,,b' WHERE user_id = 100")
    connection.close()
    with pytest.raises(InvalidServingFile, match="user 100: an empty or padded id"):
        open_model(path)


def test_garbage_and_truncated_files_are_refused(tmp_path: Path) -> None:
    garbage = serving_file.file_path(tmp_path, V9)
    garbage.write_bytes(b"this is not a database" * 100)
    with pytest.raises(InvalidServingFile, match="not a readable serving file"):
        open_model(garbage)
    truncated = write_serving_file(tmp_path, V3, range(1, 5001))
    whole = truncated.read_bytes()
    truncated.write_bytes(whole[: len(whole) // 2])
    with pytest.raises(InvalidServingFile):
        open_model(truncated)


def test_a_file_not_named_by_a_serving_id_is_refused(tmp_path: Path) -> None:
    good = write_serving_file(tmp_path, V1)
    renamed = good.rename(tmp_path / "recs-v1.sqlite")
    with pytest.raises(InvalidServingFile, match="not a serving file name"):
        open_model(renamed)


def test_current_swaps_when_repointed_and_refuses_a_bad_file(tmp_path: Path) -> None:
    swaps: list[tuple[str | None, str]] = []
    refused: list[str] = []
    current = CurrentModel(
        tmp_path,
        on_swap=lambda old, new: swaps.append((old and old.version, new.version)),
        on_refuse=refused.append,
    )
    current.poll()
    assert current.model is None and "does not exist" in current.problem

    write_serving_file(tmp_path, V1)
    point_current(tmp_path, V1)
    current.poll()
    assert current.model is not None and current.model.version == V1
    first = current.model

    current.poll()  # nothing changed: no reopening
    assert current.model is first and swaps == [(None, V1)]

    write_serving_file(tmp_path, V2, meta={"row_count": "5"})  # lies about its size
    point_current(tmp_path, V2)
    current.poll()
    assert current.model is first, "a refused file must not replace the one serving"
    assert len(refused) == 1 and "row_count says 5" in refused[0]
    current.poll()
    assert len(refused) == 1, "a refused file is not re-checked until the link changes again"

    write_serving_file(tmp_path, V3)
    point_current(tmp_path, V3)
    current.poll()
    assert current.model.version == V3
    assert first.lookup(1) == items_of(1, V1).encode(), "the old file stays usable until retired"
    assert swaps == [(None, V1), (V1, V3)]
    current.close()


def test_without_any_valid_file_the_problem_names_the_reason(tmp_path: Path) -> None:
    write_serving_file(tmp_path, V1, drop_meta=("params",))
    point_current(tmp_path, V1)
    current = CurrentModel(tmp_path)
    current.poll()
    assert current.model is None
    assert "no valid serving file" in current.problem and "'params' missing" in current.problem
