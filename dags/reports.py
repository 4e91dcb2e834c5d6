"""DAG ``reports``: once a day, the reports that read a week of telemetry.

Wiring only (imports inside the tasks, so parsing touches nothing):

    fairness_report     movierec.fairness.report.write_report: reports/fairness/fairness.{json,png}
                        and $MOVIEREC_HOME/metrics/fairness.prom (replaced by every run)

Daily, not after every ingest: the measures are over a week of answers and viewings per user;
an hour more changes them little, and the alert on a breached requirement is a ticket, not a page.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from airflow.sdk import dag, task


def _summary(report: dict[str, Any]) -> dict[str, Any]:
    """What XCom keeps: the window, the verdicts, the files (the report itself is on disk)."""
    kept = {
        "window": report.get("window"),
        "breached": {v: d["breached"] for v, d in report.get("versions", {}).items()},
        "files": report.get("files"),
    }
    return json.loads(json.dumps(kept, default=str))


@dag(
    dag_id="reports",
    description="daily reports over a week of telemetry: fairness (and the feedback-loop measures)",
    schedule="30 2 * * *",
    start_date=datetime(2026, 1, 1, tzinfo=UTC),
    catchup=False,
    max_active_runs=1,
    default_args={
        "retries": 2,  # each task replaces its own files: a retry is harmless
        "retry_delay": timedelta(minutes=5),
        "execution_timeout": timedelta(minutes=30),
    },
    tags=["movierec", "reports"],
)
def reports() -> None:
    @task
    def fairness_report() -> dict[str, Any]:
        from movierec import settings
        from movierec.fairness import report

        try:
            return _summary(report.write_report(settings.load()))
        except report.FairnessError as exc:  # nothing served yet: nothing to report, not a failure
            return {"skipped": str(exc)}

    fairness_report()


reports()
