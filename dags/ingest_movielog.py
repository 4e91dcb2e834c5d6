"""DAG ``ingest_movielog``: every 10 minutes, the next batch of the movielog topic into the lake.

Wiring only. Each task loads the settings and calls one importable function;
the imports happen inside the tasks, so parsing this file (every 30 s in the
dag-processor) never touches Kafka, the lake or the heavy libraries.

    ingest_batch ──► update_watch_sessions ──► check_drift
                 └─► compute_availability

A run with nothing new passes ``batch_id=None`` down; the later tasks then do
nothing. A batch is replay-safe (re-running it replaces its files), so retries
are harmless; one active run at a time keeps batches in offset order.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from airflow.sdk import dag, task

from movierec.ops.dag_wiring import LAKE_EVENTS, SCHEDULING, jsonable


@dag(
    dag_id="ingest_movielog",
    description=(
        "Kafka movielog -> Parquet lake (raw, watch, rate, reco, quarantine), sessions, drift, availability"
    ),
    schedule="*/10 * * * *",
    **SCHEDULING,
    max_active_tasks=2,  # availability beside sessions: a run's later tasks use the second core
    default_args={
        "retries": 2,
        "retry_delay": timedelta(minutes=1),
        # no size cap on a batch: the first one after a long backfill may take minutes
        "execution_timeout": timedelta(hours=2),
    },
    tags=["movierec", "ingest"],
)
def ingest_movielog() -> None:
    @task(outlets=[LAKE_EVENTS])
    def ingest_batch() -> dict[str, Any]:
        from movierec import settings
        from movierec.ingest import consume

        return jsonable(consume.ingest_batch(settings.load()))

    @task
    def update_watch_sessions(batch: dict[str, Any]) -> dict[str, Any]:
        from movierec import settings
        from movierec.ingest import watch_sessions

        return jsonable(watch_sessions.update_watch_sessions(settings.load(), batch["batch_id"]))

    @task
    def check_drift(batch: dict[str, Any]) -> dict[str, Any]:
        from movierec import settings
        from movierec.ingest import drift

        return jsonable(drift.check_drift(settings.load(), batch["batch_id"]))

    @task
    def compute_availability(batch: dict[str, Any]) -> dict[str, Any]:
        from movierec import settings
        from movierec.monitoring import availability_store

        return jsonable(availability_store.compute_availability(settings.load(), batch["batch_id"]))

    batch = ingest_batch()
    # drift reads the batch's tables, and may read its watch sessions (watch length)
    update_watch_sessions(batch) >> check_drift(batch)
    # the site's availability needs only the batch's request lines
    compute_availability(batch)


ingest_movielog()
