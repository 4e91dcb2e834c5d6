"""DAG ``experiments``: every hour, the verdict on the experiment in force, then the reports.

Wiring only. ``decide`` analyses the experiment in force (experiments.lifecycle.decide_experiment):
before its fixed horizon nothing happens; at the horizon, or at once on a broken split, an
experiment whose definition says ``auto_decide`` (the retrain's canary) is promoted or rolled back,
with the evidence in the registry's log. ``reports`` rewrites the report of the experiment in force
and of any experiment whose state changed since its report was written.

    decide ──► reports

Not named ``experiments.py``: Airflow puts the dags folder first on a task's ``sys.path``, and a
DAG file of that name hides the ``experiments`` package from every task (the retrain's publish too).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from airflow.sdk import dag, task

from movierec.ops.dag_wiring import SCHEDULING, jsonable


@dag(
    dag_id="experiments",
    description="A/B experiments: the verdict at the horizon (promote, roll back, keep running), the reports",
    schedule="15 * * * *",  # after the online metrics of the hour's ingest runs
    **SCHEDULING,
    default_args={"retries": 1, "retry_delay": timedelta(minutes=5), "execution_timeout": timedelta(hours=1)},
    tags=["movierec", "experiments"],
)
def experiments() -> None:
    @task
    def decide() -> dict[str, Any]:
        from experiments import lifecycle
        from movierec import settings

        return jsonable(lifecycle.decide_experiment(settings.load()))

    @task
    def reports() -> dict[str, Any]:
        from experiments import lifecycle
        from movierec import settings

        return jsonable(lifecycle.write_reports(settings.load()))

    decide() >> reports()


experiments()
