"""DAG ``online_metrics``: after every ingest, what viewers did after our answers.

Wiring only (imports inside the tasks, so parsing touches nothing). Triggered by the asset the
``ingest_movielog`` DAG's ``ingest_batch`` task updates (the lake's event tables), so it runs after
each ingest without a sensor and without slowing ingest down:

    ingest_served ──► answer_outcomes ──► online_metrics
                  └─► scan_scraping

- ``ingest_served``: the service's provenance records (topic ``movierec.served``) into the lake's
  ``served`` table, exactly once (movierec.ingest.served);
- ``answer_outcomes``: per successful answer, the viewings that followed, its model version and
  variant (table ``answer_outcome``, the days whose inputs changed, each replaced whole);
- ``online_metrics``: hourly and daily metrics per model version and variant (table
  ``online_metrics``) and ``$MOVIEREC_HOME/metrics/online.prom``, as drift does;
- ``scan_scraping``: the last 24 h of served records against the site's reco lines, per client
  (movierec.security.scraping_scan): ``$MOVIEREC_HOME/metrics/scraping.prom``, replaced whole.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from airflow.sdk import dag, task

from movierec.ops.dag_wiring import LAKE_EVENTS, SCHEDULING, jsonable


@dag(
    dag_id="online_metrics",
    description="served records into the lake, per-answer outcomes, online metrics per version and variant",
    schedule=[LAKE_EVENTS],
    **SCHEDULING,
    max_active_tasks=1,
    default_args={
        "retries": 2,  # every task replaces what it wrote: a retry is harmless
        "retry_delay": timedelta(minutes=1),
        "execution_timeout": timedelta(hours=2),  # the first run after a backfill reads days of lake
    },
    tags=["movierec", "online"],
)
def online_metrics() -> None:
    @task
    def ingest_served() -> dict[str, Any]:
        from movierec import settings
        from movierec.ingest import served

        return jsonable(served.ingest_served(settings.load()))

    @task
    def answer_outcomes() -> dict[str, Any]:
        from movierec import settings
        from movierec.online import compute

        return jsonable(compute.compute_answer_outcomes(settings.load()))

    @task
    def online_metrics() -> dict[str, Any]:
        from movierec import settings
        from movierec.online import compute

        return jsonable(compute.compute_online_metrics(settings.load()))

    @task
    def scan_scraping() -> dict[str, Any]:
        from movierec import settings
        from movierec.security import scraping_scan

        return jsonable(scraping_scan.scan(settings.load()))

    served = ingest_served()
    served >> answer_outcomes() >> online_metrics()
    served >> scan_scraping()


online_metrics()
