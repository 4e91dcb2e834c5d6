"""What the DAG files share (dags/ is wiring only): the scheduling policy of every DAG, the asset the
ingest DAG updates, and a task's report as an XCom value.

Imported when the dag-processor parses the DAG files (every 30 s): Airflow's SDK and the standard
library only.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from airflow.sdk import Asset

# Every DAG: no catch-up of missed intervals (the lake and the models are caught up by the next
# run), and one run at a time (a run replaces what it writes: two at once would race on it).
SCHEDULING: dict[str, Any] = {
    "start_date": datetime(2026, 1, 1, tzinfo=UTC),
    "catchup": False,
    "max_active_runs": 1,
}

# Updated by every ingest batch (the lake's event tables); the online_metrics DAG runs on it.
LAKE_EVENTS = Asset(name="movierec_lake_events", uri="movierec://lake/events")


def jsonable(report: dict[str, Any]) -> dict[str, Any]:
    """``report`` as XCom stores it (JSON): datetimes and paths as text."""
    return json.loads(json.dumps(report, default=str))
