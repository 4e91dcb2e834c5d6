"""The fairness report over a small hand-made lake: the command, its JSON, figure and gauges, and
the reports DAG's task. Expected values are worked out by hand from the rows written here."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from movierec import lake, schemas
from movierec import settings as settings_module
from movierec.fairness import report
from movierec.online import compute
from movierec.settings import Settings

DAY = date(2026, 11, 30)
NOON = datetime(2026, 11, 30, 12)
FAIR, NARROW = "20261201T000000Z", "20261202T000000Z"  # lists with tail movies / without
USERS = 100  # 0-39 female, 40-99 male
# choices: a 50, b 30, c 10, d 5, e 5 -> the head (80% of choices) is a, b; the tail c, d, e
CHOSEN = ["a"] * 50 + ["b"] * 30 + ["c"] * 10 + ["d"] * 5 + ["e"] * 5
RELEASED = {
    "a": date(2020, 1, 1),
    "b": date(1980, 1, 1),
    "c": date(2015, 1, 1),
    "d": None,
    "e": date(1999, 5, 1),
}


def write_lake(settings: Settings) -> None:
    fetched = datetime(2026, 11, 29, tzinfo=UTC)
    users = [
        {
            "user_id": u,
            "age": 30,
            "occupation": "writer",
            "gender": "F" if u < 40 else "M",
            "fetched_at": fetched,
        }
        for u in range(USERS)
    ]
    lake.write_parquet_atomically(
        pa.Table.from_pylist(users, schema=schemas.USERS),
        lake.table_dir(settings, "users") / "part-t.parquet",
    )
    movies = [
        {"id": m, "title": m, "genres": [], "original_language": "en", "release_date": RELEASED[m],
         "fetched_at": fetched}
        for m in RELEASED
    ]  # fmt: skip
    lake.write_parquet_atomically(
        pa.Table.from_pylist(movies, schema=schemas.MOVIES),
        lake.table_dir(settings, "movies") / "part-t.parquet",
    )
    sessions = [
        {
            "user_id": u,
            "movie_id": m,
            "first_time": NOON,
            "last_time": NOON,
            "max_minute": 10,
            "minutes_seen": 10,
        }
        for u, m in enumerate(CHOSEN)
    ]
    lake.write_parquet_atomically(
        pa.Table.from_pylist(sessions, schema=schemas.WATCH_SESSION),
        lake.day_dir(settings, "watch_session", f"{DAY}") / lake.SESSIONS_FILE,
    )
    served = []
    for u in range(USERS):  # each user: one answer of each version
        for n, (version, items) in enumerate(((FAIR, "a,b,c,d"), (NARROW, "a,b"))):
            served.append(
                {"request_id": f"{u}-{n}", "time": NOON.replace(tzinfo=UTC), "user_id": u, "variant": None,
                 "model_version": version, "items": items, "fallback": False, "latency_ms": 1.0,
                 "status": 200}
            )  # fmt: skip
    served.append(  # a 400 has no list: no slots
        {"request_id": "bad", "time": NOON.replace(tzinfo=UTC), "user_id": None, "variant": None,
         "model_version": FAIR, "items": None, "fallback": False, "latency_ms": 1.0, "status": 400}
    )  # fmt: skip
    served = [row | {"partition": 0, "offset": n} for n, row in enumerate(served)]  # the Kafka source
    lake.write_parquet_atomically(
        pa.Table.from_pylist(served, schema=schemas.SERVED),
        lake.partition_dir(settings, "served", NOON) / lake.batch_file_name("t"),
    )
    outcomes = []
    for u in range(USERS):  # FAIR only: women watch 0 or 10 minutes of the list, men 10 or 30
        minutes = (0, 10)[u % 2] if u < 40 else (10, 30)[u % 2]
        outcomes.append(
            {"time": NOON, "user_id": u, "items_count": 4, "request_id": f"{u}-0", "model_version": FAIR,
             "variant": None, "personalised": True, "starts": 1, "minutes": minutes, "list_starts": 1,
             "list_minutes": minutes, "complete": True}
        )  # fmt: skip
    outcomes.append(  # an answer whose window is still open is left out
        {"time": NOON, "user_id": 0, "items_count": 4, "request_id": "open", "model_version": FAIR,
         "variant": None, "personalised": True, "starts": 1, "minutes": 500, "list_starts": 1,
         "list_minutes": 500, "complete": False}
    )  # fmt: skip
    outcomes = [row | {"partition": 0, "offset": n} for n, row in enumerate(outcomes)]  # of the reco line
    lake.write_parquet_atomically(
        pa.Table.from_pylist(outcomes, schema=schemas.ANSWER_OUTCOME), compute.outcome_path(settings, DAY)
    )


@pytest.fixture
def home(tmp_path: Path) -> Settings:
    settings = settings_module.load({"MOVIEREC_HOME": str(tmp_path / "home")})
    write_lake(settings)
    return settings


def gauges(path: Path) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    from prometheus_client.parser import text_string_to_metric_families

    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(path.read_text())
        for sample in family.samples
    }


def test_the_report_measures_each_version_from_the_lake(home: Settings) -> None:
    found = report.write_report(home)
    assert found["window"] == [str(DAY - timedelta(days=6)), str(DAY)]
    fair, narrow = found["versions"][FAIR], found["versions"][NARROW]
    # quality: women 5 minutes per answer, men 20 -> 0.25 of the rest; men 4 x the rest
    assert fair["answers"] == USERS
    gender = {g["group"]: g for g in fair["quality_online"]["attributes"]["gender"]["groups"]}
    assert gender["F"]["estimate"]["value"] == pytest.approx(5.0)
    assert gender["F"]["ratio"]["value"] == pytest.approx(0.25)
    assert gender["M"]["ratio"]["value"] == pytest.approx(4.0)
    assert fair["breached"]["quality_online"] is True
    # exposure: FAIR's lists are half tail (c, d of a, b, c, d), choices 20% tail -> 2.5
    tail = fair["exposure"]["segments"]["long_tail"]
    assert tail["slot_share"]["value"] == pytest.approx(0.5)
    assert tail["choice_share"]["value"] == pytest.approx(0.2)
    assert tail["ratio"]["value"] == pytest.approx(2.5)
    assert fair["exposure"]["slots"] == 4 * USERS  # the 400 gave no slot
    # older (released before 2006-11-30): b and e; 1 of 4 slots (b), 35 of 100 choices
    older = fair["exposure"]["segments"]["older"]
    assert older["slot_share"]["value"] == pytest.approx(0.25)
    assert older["ratio"]["value"] == pytest.approx(0.25 / 0.35)
    assert fair["breached"]["exposure"] is False
    # NARROW lists no tail movie at all: breached; it has no outcomes, so no online quality
    assert narrow["exposure"]["segments"]["long_tail"]["slot_share"]["value"] == 0.0
    assert narrow["breached"] == {"quality_online": None, "quality_offline": None, "exposure": True}

    folder = report.out_dir(home)
    assert json.loads((folder / report.REPORT_FILE).read_text())["versions"][FAIR]["answers"] == USERS
    assert (folder / report.FIGURE_FILE).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    values = gauges(home.home / "metrics" / report.TEXTFILE)
    breach = "movierec_fairness_requirement_breached"
    assert values[(breach, (("model_version", NARROW), ("requirement", "exposure")))] == 1.0
    assert values[(breach, (("model_version", FAIR), ("requirement", "exposure")))] == 0.0
    assert values[(breach, (("model_version", FAIR), ("requirement", "quality_online")))] == 1.0
    assert (breach, (("model_version", NARROW), ("requirement", "quality_online"))) not in values
    ratio = "movierec_fairness_exposure_ratio"
    assert values[(ratio, (("model_version", FAIR), ("segment", "long_tail")))] == pytest.approx(2.5)
    smallest = "movierec_fairness_quality_ratio_min"
    assert values[(smallest, (("attribute", "gender"), ("model_version", FAIR)))] == pytest.approx(0.25)


def test_one_version_and_a_rerun_replaces_the_report(home: Settings, tmp_path: Path) -> None:
    out = tmp_path / "out"
    report.write_report(home, out=out)
    only = report.write_report(home, version=NARROW, out=out)
    assert list(only["versions"]) == [NARROW]
    assert list(json.loads((out / report.REPORT_FILE).read_text())["versions"]) == [NARROW]
    with pytest.raises(report.FairnessError, match="no served answers of model version 20991231T000000Z"):
        report.write_report(home, version="20991231T000000Z", out=out)


def run_cli(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MOVIEREC_")} | {
        "MOVIEREC_HOME": str(home)
    }
    return subprocess.run(
        [sys.executable, "-m", "movierec.cli", "fairness", "report", *args],
        env=env, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip


def test_the_command_prints_writes_and_is_strict_on_request(home: Settings, tmp_path: Path) -> None:
    result = run_cli(home.home, "--out", str(tmp_path / "cli"))
    assert result.returncode == 0, result.stderr
    assert f"{NARROW}: 0 answers" in result.stdout
    assert "exposure BREACHED" in result.stdout
    assert (tmp_path / "cli" / report.FIGURE_FILE).exists()
    strict = run_cli(home.home, "--strict", "--json", "--out", str(tmp_path / "cli"))
    assert strict.returncode == 1
    assert json.loads(strict.stdout)["versions"][NARROW]["breached"]["exposure"] is True


def test_an_empty_lake_is_a_clear_error_and_writes_nothing(tmp_path: Path) -> None:
    result = run_cli(tmp_path / "empty")
    assert result.returncode == 2
    assert "no served answers" in result.stderr
    assert not (tmp_path / "empty" / "metrics").exists()
    bad = run_cli(tmp_path / "empty", "--days", "0")
    assert bad.returncode == 2


def test_the_reports_dag_task_writes_the_report(
    dagbag: Any, home: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    dag = dagbag.dags["reports"]
    assert dag.timetable.expression == "30 2 * * *" and dag.catchup is False
    task = dag.get_task("fairness_report")
    monkeypatch.setenv("MOVIEREC_HOME", str(home.home))
    summary: dict[str, Any] = task.python_callable()
    assert summary["breached"][NARROW]["exposure"] is True
    assert (report.out_dir(home) / report.REPORT_FILE).exists()
    monkeypatch.setenv("MOVIEREC_HOME", str(home.home.parent / "nothing-yet"))
    assert "skipped" in task.python_callable()  # nothing served yet: not a failure
