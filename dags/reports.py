"""DAG ``reports``: once a day, the reports over a week of our own telemetry (issue 16).

Wiring only (imports inside the tasks, so parsing touches nothing). Each task replaces its own
report files and gauges:

    fairness_report     movierec.fairness.report.write_report: reports/fairness/fairness.{json,png}
                        and $MOVIEREC_HOME/metrics/fairness.prom
    feedback_report     movierec.feedback.report.feedback_report: the feedback-loop measures per
                        day, reports/feedback/feedback-loops.{json,png} and metrics/feedback.prom

Daily, not after every ingest: the measures are over a week of answers and viewings per user;
an hour more changes them little, and the alert on a breached requirement is a ticket, not a page.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from airflow.sdk import dag, task

from movierec.ops.dag_wiring import SCHEDULING, jsonable


@dag(
    dag_id="reports",
    description="daily reports over a week of telemetry: fairness and the feedback-loop measures",
    schedule="30 2 * * *",
    **SCHEDULING,
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
            found = report.write_report(settings.load())
        except report.FairnessError as exc:  # nothing served yet: nothing to report, not a failure
            return {"skipped": str(exc)}
        return jsonable(report.summary(found))

    @task
    def feedback_report() -> dict[str, Any]:
        from movierec import settings
        from movierec.feedback import report

        try:
            found = report.feedback_report(settings.load())
        except report.FeedbackError as exc:  # nothing served or watched yet: not a failure
            return {"skipped": str(exc)}
        return jsonable(report.summary(found))

    fairness_report()
    feedback_report()


reports()
