"""The ``retrain`` DAG: schedule, task order, the trigger form's parameters, and what each task calls.
(Running it end to end needs precompute and publish of the other half of the issue; see test_dags.py
for the import and call checks shared by every DAG.)"""

from __future__ import annotations

import inspect
import itertools
from typing import Any

import pytest

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
    order = ["prepare", "train", "evaluate", "precompute", "publish"]
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


def test_the_spark_tasks_submit_their_job_and_publish_calls_the_registry(dag: Any) -> None:
    for task_id, job in (("prepare", "prepare"), ("train", "train_als"), ("evaluate", "evaluate"),
                         ("precompute", "precompute")):  # fmt: skip
        callable_ = dag.get_task(task_id).python_callable
        call = movierec_calls(callable_)[("movierec.spark_submit", "submit")]
        assert call.args[1].value == job
        assert "--version" in inspect.getsource(callable_)
    publish = movierec_calls(dag.get_task("publish").python_callable)[("movierec.registry", "publish")]
    assert [k.arg for k in publish.keywords] == ["force"]
