"""``movierec feedback report`` on a small hand-made lake: the figures per day, the files, the gauges.

Expected values are worked out by hand from the rows written here (catalog of 4 movies)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pytest

from movierec import lake, schemas
from movierec import settings as settings_module
from movierec.online import compute as online_compute

CLI = str(Path(sys.executable).parent / "movierec")
DAY1, DAY2 = "2026-11-20", "2026-11-21"
VERSION = "20261119T000000Z"


def table(schema: pa.Schema, rows: list[dict]) -> pa.Table:
    return pa.Table.from_pylist(rows, schema=schema)


def served_row(n: int, moment: datetime, items: str, status: int = 200) -> dict:
    return {
        "request_id": f"r{n}", "time": moment, "user_id": n, "variant": None, "model_version": VERSION,
        "items": items, "fallback": False, "latency_ms": 3.0, "status": status, "reason": None,
        "client": "127.0.0.1", "partition": 0, "offset": n,
    }  # fmt: skip


def session_row(user: int, movie: str, moment: datetime) -> dict:
    return {"user_id": user, "movie_id": movie, "first_time": moment, "last_time": moment,
            "max_minute": 10, "minutes_seen": 10}  # fmt: skip


def metrics_row(day: datetime, starts: int, list_starts: int) -> dict:
    zero = {name: 0 for name in ("answers", "users", "followed_answers", "list_minutes", "minutes",
                                 "personalised_answers", "personalised_known")}  # fmt: skip
    return {
        **zero, "granularity": "day", "period_start": day, "scope": "all", "model_version": None,
        "variant": None, "follow_rate": None, "mean_position": None, "list_minutes_per_answer": None,
        "minutes_per_answer": None, "personalised_share": None, "watch_starts": starts,
        "list_starts": list_starts, "list_start_share": None, "complete": True,
        "computed_at": datetime(2026, 11, 22, tzinfo=UTC),
    }  # fmt: skip


@pytest.fixture
def home(tmp_path: Path) -> Path:
    settings = settings_module.load({"MOVIEREC_HOME": str(tmp_path)})
    fetched = datetime(2026, 11, 19, tzinfo=UTC)
    movies = [
        {"id": movie, "title": movie, "genres": genres, "fetched_at": fetched}
        for movie, genres in (("a", ["Drama"]), ("b", ["Comedy"]), ("c", ["Drama", "Horror"]), ("d", []))
    ]
    lake.write_parquet_atomically(
        table(schemas.MOVIES, movies), lake.table_dir(settings, "movies") / "part-t.parquet"
    )
    t1, t2 = datetime(2026, 11, 20, 12, tzinfo=UTC), datetime(2026, 11, 21, 12, tzinfo=UTC)
    served = [served_row(1, t1, "a,b"), served_row(2, t1, "a,c"), served_row(3, t1, "x", status=500),
              served_row(4, t2, "a,b"), served_row(5, t2, "a,b")]  # fmt: skip
    for moment in (t1, t2):
        rows = [r for r in served if r["time"] == moment]
        path = lake.partition_dir(settings, "served", moment) / "part-t.parquet"
        lake.write_parquet_atomically(table(schemas.SERVED, rows), path)
    naive1, naive2 = t1.replace(tzinfo=None), t2.replace(tzinfo=None)
    sessions = {
        DAY1: [session_row(1, "a", naive1), session_row(1, "c", naive1), session_row(2, "b", naive1)],
        DAY2: [session_row(1, "a", naive2), session_row(2, "a", naive2), session_row(3, "a", naive2)],
    }
    for day, rows in sessions.items():
        path = lake.day_dir(settings, "watch_session", day) / lake.SESSIONS_FILE
        lake.write_parquet_atomically(table(schemas.WATCH_SESSION, rows), path)
    # online metrics for the first day only: the second day's list share is not known
    path = online_compute.metrics_table_path(settings, datetime(2026, 11, 20).date())
    lake.write_parquet_atomically(
        table(schemas.ONLINE_METRICS, [metrics_row(naive1.replace(hour=0), 3, 1)]), path
    )
    return tmp_path


def run(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "MOVIEREC_HOME": str(home)}
    return subprocess.run(
        [CLI, "feedback", "report", *args], env=env, capture_output=True, text=True, check=False
    )


def test_the_report_per_day_with_files_and_gauges(home: Path) -> None:
    result = run(home, "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert (report["first_day"], report["last_day"]) == (DAY1, DAY2)
    first, second = report["days"]
    # day 1: slots a, b, a, c (the 500 is no answer) -> counts a2 b1 c1 d0: Gini 0.375 (hand: 12/32)
    assert first["answers"] == 2 and first["slots"] == 4
    assert first["exposure_gini"] == pytest.approx(0.375)
    # watches a, c, b -> counts 1 1 1 0: Gini of [0, 1, 1, 1] = 2*(1+1+1)/(2*16*0.75) = 0.25
    assert first["watch_gini"] == pytest.approx(0.25)
    assert first["list_share"] == pytest.approx(1 / 3)
    # user 1: Drama (a), Drama + Horror (c) -> 2 genres, entropy of (2/3, 1/3); user 2: Comedy -> 1, 0
    assert first["genres_per_user"] == pytest.approx(1.5)
    assert first["genre_entropy"] == pytest.approx(0.918296 / 2, abs=1e-6)
    # day 2: every watch is "a" -> Gini of [0, 0, 0, 3] = 0.75; top-20 share 1 (catalog of 4)
    assert second["watch_gini"] == pytest.approx(0.75)
    assert second["watch_top20"] == 1.0
    assert second["list_share"] is None
    assert second["model_versions"] == [VERSION]
    folder = home / "reports" / "feedback"
    assert json.loads((folder / "feedback-loops.json").read_text()) == report
    assert (folder / "feedback-loops.png").read_bytes()[:4] == b"\x89PNG"
    gauges = (home / "metrics" / "feedback.prom").read_text()
    assert "movierec_feedback_watch_gini 0.75" in gauges
    assert "movierec_feedback_list_share" not in gauges  # unknown on the newest day: no gauge


def test_one_day_and_the_table(home: Path) -> None:
    result = run(home, "--days", "1", "--until", DAY1)
    assert result.returncode == 0, result.stderr
    assert f"| {DAY1} | 2 | 0.375 |" in result.stdout
    assert DAY2 not in result.stdout


def test_an_empty_lake_is_a_clear_error(tmp_path: Path) -> None:
    result = run(tmp_path)
    assert result.returncode == 2
    assert "no served answers" in result.stderr
