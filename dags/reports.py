"""DAG ``reports``: once a day, the reports over our own telemetry (issue 16).

Wiring only (imports inside the tasks, so parsing touches nothing). Each task replaces its own
report files and gauges:

- ``feedback_report``: the feedback-loop measures per day (movierec.feedback.report):
  ``reports/feedback/feedback-loops.{json,png}`` and ``metrics/feedback.prom``.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from airflow.sdk import dag, task


def _jsonable(report: dict[str, Any]) -> dict[str, Any]:
    return json.loads(json.dumps(report, default=str))


@dag(
    dag_id="reports",
    description="reports over our own telemetry: feedback loops",
    schedule="40 5 * * *",
    start_date=datetime(2026, 1, 1, tzinfo=UTC),
    catchup=False,
    max_active_runs=1,
    default_args={
        "retries": 2,  # each task replaces its files: a retry is harmless
        "retry_delay": timedelta(minutes=1),
        "execution_timeout": timedelta(minutes=30),
    },
    tags=["movierec", "reports"],
)
def reports() -> None:
    @task
    def feedback_report() -> dict[str, Any]:
        from movierec import settings
        from movierec.feedback import report

        found = report.feedback_report(settings.load())
        return _jsonable(
            {"first_day": found["first_day"], "last_day": found["last_day"], "days": len(found["days"])}
        )

    feedback_report()


reports()
