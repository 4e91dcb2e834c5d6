"""The ``retrain`` DAG: schedule, task order, the trigger form's parameters, what each task calls,
and whole runs with ``dag.test()`` on a small lake (real Spark under spark-submit, real SQLite):
a first attempt is cleared and run again for the same logical date, which replaces its version
instead of leaving a second one, and publishes a serving file that holds every user of the model.
(test_dags.py has the import and call checks shared by every DAG.)"""

from __future__ import annotations

import inspect
import itertools
import json
import sqlite3
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from experiments import control
from movierec.models import registry, versions
from movierec.ops import airflow_ops
from simulator import truth_evaluation
from tests.learning_data import build_small_lake, learning_settings
from tests.test_dags import movierec_calls


@pytest.fixture(scope="module")
def dag(dagbag: Any) -> Any:
    assert dagbag.import_errors == {}
    return dagbag.dags["retrain"]


def test_retrain_runs_every_three_days_once_at_a_time(dag: Any) -> None:
    from datetime import timedelta

    assert dag.timetable.delta == timedelta(days=3)
    assert dag.catchup is False
    assert dag.max_active_runs == 1


def test_tasks_run_prepare_train_evaluate_precompute_publish_in_order(dag: Any) -> None:
    order = ["prepare", "train", "evaluate", "precompute", "precompute_challenger", "publish"]
    assert {t.task_id for t in dag.tasks} == set(order)
    for before, after in itertools.pairwise(order):
        assert before in dag.get_task(after).upstream_task_ids, f"{after} does not wait for {before}"
    assert dag.get_task("prepare").upstream_task_ids == set()
    # a refused gate is an answer, not a transient error: no retry, the run turns red at once
    assert dag.get_task("publish").retries == 0


def test_the_trigger_form_has_the_als_parameters_and_force_publish(dag: Any) -> None:
    params = dag.params
    assert {"rank", "reg", "alpha", "iterations", "force_publish"} <= set(params.keys())
    assert params["force_publish"] is False
    for name in ("rank", "reg", "alpha", "iterations"):
        assert params[name] is None  # empty in the form: the settings' value
    with pytest.raises(Exception, match=r"rank|minimum|less"):
        params.get_param("rank").resolve(0)


def test_the_spark_tasks_submit_their_job_and_publish_publishes_or_opens_a_canary(dag: Any) -> None:
    for task_id, job in (("prepare", "prepare"), ("train", "train"), ("evaluate", "evaluate"),
                         ("precompute", "precompute"), ("precompute_challenger", "precompute")):  # fmt: skip
        callable_ = dag.get_task(task_id).python_callable
        call = movierec_calls(callable_)[("movierec.ops.spark_submit", "submit")]
        assert call.args[1].value == job
        assert "--version" in inspect.getsource(callable_)
    prepare = movierec_calls(dag.get_task("prepare").python_callable)
    assert ("movierec.models.versions", "run_version") in prepare  # the version is the run's
    assert ("movierec.models.versions", "new_version_id") not in prepare  # not the wall clock's
    publish = movierec_calls(dag.get_task("publish").python_callable)[
        ("experiments.lifecycle", "publish_or_canary")
    ]
    assert [k.arg for k in publish.keywords] == ["force"]
    challenger = movierec_calls(dag.get_task("precompute_challenger").python_callable)
    assert ("experiments.lifecycle", "canary_candidate") in challenger
    assert "--candidate" in inspect.getsource(dag.get_task("precompute_challenger").python_callable)


def test_the_dag_file_imports_no_job_code() -> None:
    """A DAG file is wiring: what a task needs lives behind the product's importable functions."""
    import ast

    tree = ast.parse((Path(__file__).parents[1] / "dags" / "retrain.py").read_text())
    imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    imported |= {
        alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names
    }
    assert not {name for name in imported if name and name.startswith("spark_jobs")}


def folders(parent: Path) -> list[str]:
    return sorted(p.name for p in parent.iterdir() if p.is_dir()) if parent.exists() else []


@pytest.mark.slow
def test_a_cleared_run_replaces_its_version_and_publishes_a_file_for_every_user(
    dag: Any, airflow_db: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = learning_settings(tmp_path, MOVIEREC_ALS_ITERATIONS="3", MOVIEREC_ALS_RANK="16")
    build_small_lake(settings)
    for name, value in airflow_ops.movierec_env(settings).items():  # the tasks load MOVIEREC_*
        monkeypatch.setenv(name, value)
    logical = datetime(2026, 11, 25, 6, 30, tzinfo=UTC)

    # A first attempt that got through prepare and train (the later tasks marked done, not run).
    first = dag.test(logical_date=logical, mark_success_pattern=r"^(evaluate|precompute|publish)$")
    assert first.state == "success"
    interval_end = first.data_interval_end
    version = interval_end.strftime("%Y%m%dT%H%M%SZ")  # the run's, not the wall clock's
    assert folders(settings.models_dir) == [version]
    stale = versions.model_dir(settings, version) / "left-by-the-first-attempt"
    stale.touch()

    # Cleared and run again for the same logical date (dag.test clears the date's task instances).
    again = dag.test(logical_date=logical)
    assert again.state == "success"
    assert again.data_interval_end == interval_end
    assert folders(settings.models_dir) == [version] and not stale.exists()  # replaced, not added to
    assert folders(settings.reports_dir) == [version]
    assert registry.current_version(settings) == version
    folder = versions.model_dir(settings, version)
    users = pq.read_table(folder / versions.USERS_FILE).column("user_id").to_pylist()
    movies = set(pq.read_table(folder / versions.MOVIES_FILE).column("movie_id").to_pylist())
    with sqlite3.connect(f"file:{settings.serving_dir / 'current'}?mode=ro", uri=True) as connection:
        rows = dict(connection.execute("SELECT user_id, items FROM recs"))
        meta = dict(connection.execute("SELECT key, value FROM meta"))
    assert sorted(rows) == sorted(users)
    assert all(set(line.split(",")) <= movies for line in rows.values())
    assert len(set(rows.values())) > len(rows) // 10  # not one list for everybody
    assert meta["model_version"] == version
    chosen = json.loads((folder / versions.MODEL_FILE).read_text())["candidate"]
    report = json.loads((versions.report_dir(settings, version) / versions.REPORT_JSON).read_text())
    assert report["chosen"] == chosen
    # the challenger is named beside the choice; when it is another candidate it gets its own file
    # and goes out as a canary against the first model at once
    challenger = json.loads((folder / versions.MODEL_FILE).read_text())["challenger"]
    assert report["challenger"] == challenger and challenger in report["models"]
    page = (versions.report_dir(settings, version) / versions.REPORT_MD).read_text()
    assert f"**Canary challenger: {challenger}.**" in page
    canary = control.running(settings)
    if challenger == chosen:
        assert not list(settings.serving_dir.glob(f"recs-{version}-*")) and canary is None
    else:
        assert [p.name for p in settings.serving_dir.glob(f"recs-{version}-*")] == [
            f"recs-{version}-{challenger}.sqlite"
        ]
        assert canary is not None
        assert canary.serving == {"control": version, "canary": f"{version}-{challenger}"}
    figures = json.loads(versions.serving_report_path(settings, version, version).read_text())
    assert (
        figures["candidate"] == chosen
        and figures["file_bytes"] > 0
        and figures["lookup"]["rows"] == len(rows)
    )

    # Evaluation only: the same version against the simulator's ground truth.
    truth = truth_evaluation.truth_report(settings, version, sample_size=300)
    candidates = {p.name for p in (folder / versions.CANDIDATES_DIR).iterdir() if (p / "train.json").exists()}
    # a first model: the cheap candidates only (no ALS at rank 64); the next retrain fits it too
    assert candidates == {"popularity", "group_popularity", "als_r16", "als_r16_demo"}
    assert set(truth["closeness"]) == candidates | {f"served file (recs-{version})"}
    for row in truth["closeness"].values():
        assert 0 <= row["overlap_at_20"] <= 1
        # the true top-20 are the best unseen movies by true affinity: no list can beat them
        assert row["mean_true_affinity"] <= truth["true_top20_mean_affinity"]
    assert all(0 <= value <= 1 for value in truth["headroom"]["recall_at_20"].values())
    truth_md = versions.report_dir(settings, version) / truth_evaluation.TRUTH_MD
    assert truth_md.read_text().startswith("# Lists")
