"""The DAG files: they import cleanly (DagBag), have the schedules we promise, do no work when
parsed, and every task calls an importable function with arguments it accepts.

Airflow reads its configuration once, when it is first imported; tests/conftest.py points it at a
private home with the repository's airflow.cfg first, so no test touches ~/airflow or var/.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from movierec import lake
from movierec import settings as settings_module
from movierec.ops import airflow_ops
from movierec.schemas import WATCH
from tests.conftest import AIRFLOW_TEST_SETTINGS, DAG_IDS
from tests.test_catalog_sync import Api, api  # noqa: F401  (the real catalog API, a module fixture)

_TEST_SETTINGS = AIRFLOW_TEST_SETTINGS  # the private Airflow home conftest set up

# What each task must call: (dag, task) -> (module, function).
TARGETS = {
    ("ingest_movielog", "ingest_batch"): ("movierec.ingest.consume", "ingest_batch"),
    ("ingest_movielog", "update_watch_sessions"): ("movierec.ingest.watch_sessions", "update_watch_sessions"),
    ("ingest_movielog", "check_drift"): ("movierec.ingest.drift", "check_drift"),
    ("ingest_movielog", "compute_availability"): (
        "movierec.monitoring.availability_store",
        "compute_availability",
    ),
    ("catalog", "sync_catalog"): ("movierec.ingest.catalog_sync", "sync_catalog"),
    ("retrain", "prepare"): ("movierec.ops.spark_submit", "submit"),
    ("retrain", "train"): ("movierec.ops.spark_submit", "submit"),
    ("retrain", "evaluate"): ("movierec.ops.spark_submit", "submit"),
    ("retrain", "precompute"): ("movierec.ops.spark_submit", "submit"),
    ("retrain", "precompute_challenger"): ("movierec.ops.spark_submit", "submit"),
    ("retrain", "publish"): ("experiments.lifecycle", "publish_or_canary"),
    ("online_metrics", "ingest_served"): ("movierec.ingest.served", "ingest_served"),
    ("online_metrics", "answer_outcomes"): ("movierec.online.compute", "compute_answer_outcomes"),
    ("online_metrics", "online_metrics"): ("movierec.online.compute", "compute_online_metrics"),
    ("online_metrics", "scan_scraping"): ("movierec.security.scraping_scan", "scan"),
    ("experiments", "decide"): ("experiments.lifecycle", "decide_experiment"),
    ("experiments", "reports"): ("experiments.lifecycle", "write_reports"),
    ("rating_spam", "check_previous_day"): ("movierec.security.shilling_check", "check_recent"),
    ("rating_spam", "check_latest_day"): ("movierec.security.shilling_check", "check_recent"),
    ("reports", "fairness_report"): ("movierec.fairness.report", "write_report"),
    ("reports", "feedback_report"): ("movierec.feedback.report", "feedback_report"),
}


def test_the_dag_folder_imports_without_errors(dagbag: Any) -> None:
    assert dagbag.import_errors == {}
    assert sorted(dagbag.dag_ids) == DAG_IDS


def test_catching_up_waits_for_the_batch_and_its_sessions_and_everything_they_need(dagbag: Any) -> None:
    """make up moves on (next batch, first retrain) once LAKE_TASKS succeeded: they must be tasks of
    the DAG, hold every task upstream of them, and leave drift and availability to end beside."""
    from movierec.ops.loop import LAKE_TASKS

    dag = dagbag.dags["ingest_movielog"]
    for task_id in LAKE_TASKS:
        assert dag.get_task(task_id).upstream_task_ids <= set(LAKE_TASKS)
    assert set(LAKE_TASKS) == {"ingest_batch", "update_watch_sessions"}


def test_ingest_runs_every_ten_minutes_one_run_at_a_time_without_catch_up(dagbag: Any) -> None:
    dag = dagbag.dags["ingest_movielog"]
    assert dag.timetable.expression == "*/10 * * * *"
    assert str(dag.timetable.timezone) in {"UTC", "Timezone('UTC')"}
    assert dag.catchup is False
    assert dag.max_active_runs == 1
    assert {t.task_id for t in dag.tasks} == {
        "ingest_batch",
        "update_watch_sessions",
        "check_drift",
        "compute_availability",
    }
    # sessions and drift follow the batch they are about; drift may read the sessions
    assert dag.get_task("update_watch_sessions").upstream_task_ids == {"ingest_batch"}
    assert dag.get_task("check_drift").upstream_task_ids == {"ingest_batch", "update_watch_sessions"}
    assert dag.get_task("compute_availability").upstream_task_ids == {"ingest_batch"}
    assert all(task.retries >= 1 for task in dag.tasks)  # a batch is replay-safe


def test_catalog_runs_hourly_and_an_outage_only_delays_it(dagbag: Any) -> None:
    dag = dagbag.dags["catalog"]
    assert dag.timetable.expression == "0 * * * *"  # runs back to back until every user is fetched
    assert dag.catchup is False
    assert dag.max_active_runs == 1
    (task,) = dag.tasks
    assert task.task_id == "sync_catalog"
    # an outage makes the task fail; it is retried later, spread over hours, then it is red
    assert task.retries >= 3
    assert task.retry_delay.total_seconds() >= 300
    assert task.retry_exponential_backoff > 1
    # nothing waits for the catalog: no sensor in any other DAG
    for other in dagbag.dags.values():
        assert not [t.task_id for t in other.tasks if "Sensor" in type(t).__name__]


PARSE_WITHOUT_NETWORK = r"""
import json, socket, sys

def refuse(*args, **kwargs):
    raise AssertionError("a DAG file used the network while being parsed")

socket.socket.connect = refuse
socket.socket.connect_ex = refuse
socket.create_connection = refuse
from airflow.dag_processing.dagbag import DagBag

bag = DagBag(dag_folder=sys.argv[1])
heavy = ["movierec.ingest.consume", "movierec.ingest.watch_sessions", "movierec.ingest.drift",
         "movierec.ingest.catalog_sync", "movierec.ingest.quality", "confluent_kafka", "kafka", "pyspark",
         "great_expectations", "movierec.ingest.served", "movierec.online.compute", "experiments.lifecycle",
         "statsmodels", "matplotlib"]
print(json.dumps({
    "dags": sorted(bag.dag_ids),
    "errors": {str(k): str(v) for k, v in bag.import_errors.items()},
    "imported": [name for name in heavy if name in sys.modules],
}))
"""


def test_parsing_the_dag_files_does_no_work(tmp_path: Path) -> None:
    """The dag-processor parses every file every 30 s: no Kafka, no network, no heavy imports then.
    A fresh interpreter, since this session has imported those modules already."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MOVIEREC_")}
    env |= {
        # anything that did connect would find nothing there
        "MOVIEREC_KAFKA_BOOTSTRAP": "127.0.0.1:9",
        "MOVIEREC_API_URL": "http://127.0.0.1:9",
        "MOVIEREC_HOME": str(tmp_path),
    }
    result = subprocess.run(
        [sys.executable, "-c", PARSE_WITHOUT_NETWORK, str(airflow_ops.DAGS_DIR)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["errors"] == {}
    assert report["dags"] == DAG_IDS
    assert report["imported"] == []
    assert not (tmp_path / "lake").exists()


# --- what the tasks call ---------------------------------------------------------------------


def movierec_calls(function: Callable[..., Any]) -> dict[tuple[str, str], ast.Call]:
    """(module, function) -> the call, for every call of a movierec (or experiments) function in ``function``
    (``from movierec import m`` then ``m.f(...)``, or ``from movierec.m import f`` then ``f(...)``)."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(function)))
    bound: dict[str, tuple[str, str]] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in (
            "movierec",
            "experiments",
        ):
            for alias in node.names:
                bound[alias.asname or alias.name] = (node.module or "", alias.name)
    calls = {}
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name) and func.value.id in bound:
            module, name = bound[func.value.id]
            calls[(f"{module}.{name}", func.attr)] = node
        elif isinstance(func, ast.Name) and func.id in bound:
            calls[bound[func.id]] = node
    return calls


@pytest.mark.parametrize(("dag_id", "task_id"), sorted(TARGETS))
def test_each_task_calls_an_importable_function_with_arguments_it_accepts(
    dagbag: Any, dag_id: str, task_id: str
) -> None:
    task = dagbag.dags[dag_id].get_task(task_id)
    calls = movierec_calls(task.python_callable)
    assert ("movierec.settings", "load") in calls  # settings are loaded in the task, not at parse time
    module_name, function_name = TARGETS[(dag_id, task_id)]
    assert (module_name, function_name) in calls, f"{dag_id}.{task_id} does not call {module_name}"
    module = importlib.import_module(module_name)
    function = getattr(module, function_name, None)
    assert callable(function), f"{module_name} has no function {function_name}"
    call = calls[(module_name, function_name)]
    # the task's call binds to the function's signature (settings, and batch_id where it takes one)
    inspect.signature(function).bind(*call.args, **{k.arg: k.value for k in call.keywords if k.arg})


def test_every_task_target_imports_with_the_dags_folder_first_on_the_path() -> None:
    """What Airflow's task process does: the dags folder comes first on ``sys.path``, so a DAG file
    named like one of our packages shadows it (``dags/experiments.py`` once hid the ``experiments``
    package, and every retrain's publish failed with ImportError in `make up`)."""
    targets = sorted(set(TARGETS.values()))
    script = textwrap.dedent(
        f"""
        import importlib, sys
        sys.path.insert(0, {str(airflow_ops.DAGS_DIR)!r})
        for module_name, function_name in {targets!r}:
            module = importlib.import_module(module_name)
            assert callable(getattr(module, function_name, None)), (module_name, module.__file__)
        """
    )
    repo_root = airflow_ops.DAGS_DIR.parent
    done = subprocess.run([sys.executable, "-c", script], cwd=repo_root, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    shadowing = {path.stem for path in airflow_ops.DAGS_DIR.glob("*.py")} & {
        path.name for path in repo_root.iterdir() if (path / "__init__.py").is_file()
    }
    assert not shadowing, f"DAG files named like a package of ours: {shadowing}"


# --- the catalog DAG, run by Airflow itself --------------------------------------------------


@pytest.mark.filterwarnings("ignore:Using `httpx` with `starlette.testclient`")  # inside dag.test()
def test_the_catalog_dag_runs_its_task_with_our_settings(
    dagbag: Any,
    airflow_db: None,
    api: Api,  # noqa: F811
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # the task loads its settings from MOVIEREC_* as it would under the scheduler
    for name, value in airflow_ops.movierec_env(
        settings_module.load({"MOVIEREC_HOME": str(tmp_path), "MOVIEREC_API_URL": api.url})
    ).items():
        monkeypatch.setenv(name, value)
    settings = settings_module.load()
    moment = datetime(2026, 11, 28, 9)
    rows = [
        {"time": moment, "user_id": u, "movie_id": str(api.world.movie_ids[u]), "minute": 0,
         "partition": 0, "offset": u}
        for u in (1, 2, 3)
    ]  # fmt: skip
    path = lake.partition_dir(settings, "watch", moment) / lake.batch_file_name("b1")
    lake.write_parquet_atomically(pa.Table.from_pylist(rows, schema=WATCH), path)

    run = dagbag.dags["catalog"].test()

    assert run.state == "success"
    assert sorted(lake.read_table(settings, "users")["user_id"].to_pylist()) == [1, 2, 3]
    assert len(lake.read_table(settings, "movies")) == 3


def test_online_metrics_follow_every_ingest_and_experiments_are_judged_hourly(dagbag: Any) -> None:
    ingest, online = dagbag.dags["ingest_movielog"], dagbag.dags["online_metrics"]
    produced = {outlet.uri for outlet in ingest.get_task("ingest_batch").outlets}
    consumed = {asset.uri for asset in online.timetable.asset_condition.objects}
    assert produced == consumed == {"movierec://lake/events"}  # no sensor, no fixed offset
    assert online.max_active_runs == 1 and online.catchup is False
    assert online.get_task("answer_outcomes").upstream_task_ids == {"ingest_served"}
    assert online.get_task("online_metrics").upstream_task_ids == {"answer_outcomes"}
    assert online.get_task("scan_scraping").upstream_task_ids == {"ingest_served"}
    assert all(task.retries >= 1 for task in online.tasks)  # every task replaces what it wrote
    judge = dagbag.dags["experiments"]
    assert judge.timetable.expression == "15 * * * *" and judge.max_active_runs == 1
    assert judge.get_task("reports").upstream_task_ids == {"decide"}
