"""DAG ``catalog``: hourly (and on demand), the users and movies seen in events but not yet stored,
then the users never seen yet (up to the largest id seen), until the lake has every user of the site.

Wiring only: one task calling ``movierec.ingest.catalog_sync.sync_catalog``. It is a
DAG of its own so that a catalog API outage only delays it: the task fails
with ``CatalogDelayed`` after storing what it got, Airflow retries it later
with growing delays, and no other DAG waits for it.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from airflow.sdk import dag, task


@dag(
    dag_id="catalog",
    description="users and movies seen in the lake's events, fetched from the catalog API into the lake",
    schedule="@hourly",  # a run fetches at most ~42 min of records: 1M users in ~7 h
    start_date=datetime(2026, 1, 1, tzinfo=UTC),
    catchup=False,
    max_active_runs=1,
    default_args={
        # an outage delays the catalog by up to a few hours, then the run is red
        "retries": 4,
        "retry_delay": timedelta(minutes=10),
        "retry_exponential_backoff": 2.0,  # 10, 20, 40, 80 minutes
        "max_retry_delay": timedelta(hours=2),
        # a full run is capped by MOVIEREC_CATALOG_MAX_FETCHES at MOVIEREC_CATALOG_RATE
        "execution_timeout": timedelta(hours=3),
    },
    tags=["movierec", "catalog"],
)
def catalog() -> None:
    @task
    def sync_catalog() -> dict[str, Any]:
        from movierec import settings
        from movierec.ingest import catalog_sync

        return catalog_sync.sync_catalog(settings.load())

    sync_catalog()


catalog()
