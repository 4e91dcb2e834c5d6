"""DAG ``rating_spam``: every hour, the rating-spam (shilling) check of the lake's newest days.

Wiring only (imports inside the tasks, so parsing touches nothing). Each task replaces one day's
``shilling_flags`` file (movierec.security.shilling_check), which the next retrain's ``prepare``
reads to leave the flagged accounts out:

    check_previous_day      check_latest_day

- ``check_previous_day``: the day before the newest, whose last hours earlier runs may not have
  seen (its final verdict once the day is over);
- ``check_latest_day``: the newest day so far, and ``$MOVIEREC_HOME/metrics/shilling.prom``.

Hourly, not after every ingest batch: the check reads two weeks of ratings and sessions, and a
ring is named within the hour it crosses the threshold (docs/security.md).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from airflow.sdk import dag, task

from movierec.ops.dag_wiring import SCHEDULING, jsonable


@dag(
    dag_id="rating_spam",
    description="rating-spam rings in the lake's ratings and sessions: the accounts training leaves out",
    schedule="20 * * * *",
    **SCHEDULING,
    max_active_tasks=1,
    default_args={
        "retries": 2,  # each task replaces one day's file: a retry is harmless
        "retry_delay": timedelta(minutes=1),
        "execution_timeout": timedelta(minutes=30),
    },
    tags=["movierec", "security"],
)
def rating_spam() -> None:
    @task
    def check_previous_day() -> dict[str, Any]:
        from movierec import settings
        from movierec.security import shilling_check

        return jsonable(shilling_check.check_recent(settings.load(), days_back=1))

    @task
    def check_latest_day() -> dict[str, Any]:
        from movierec import settings
        from movierec.security import shilling_check

        return jsonable(shilling_check.check_recent(settings.load(), days_back=0))

    check_previous_day() >> check_latest_day()


rating_spam()
