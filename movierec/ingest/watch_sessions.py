"""The ``watch_session`` table: one row per (user, movie, day) a movie was streamed.

The watch stream repeats itself (one line per minute); learning only needs who
watched what, how far, and when. A session row aggregates a day's minutes of
one user and movie: first and last time, the furthest minute, and how many
distinct minutes were streamed.

It is derived, not appended: after each ingest batch the days the batch
touched are recomputed from all their watch rows and the day's file is
replaced, so re-runs and late lines give the same table.
"""

from __future__ import annotations

import logging
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from movierec import lake
from movierec.schemas import WATCH_SESSION
from movierec.settings import Settings

log = logging.getLogger(__name__)


def sessions_of(watch: pa.Table) -> pa.Table:
    """Aggregate watch rows (of one day) into session rows; pure."""
    if watch.num_rows == 0:
        return WATCH_SESSION.empty_table()
    grouped = watch.group_by(["user_id", "movie_id"], use_threads=False).aggregate(
        [("time", "min"), ("time", "max"), ("minute", "max"), ("minute", "count_distinct")]
    )
    table = pa.table(
        {
            "user_id": grouped["user_id"],
            "movie_id": grouped["movie_id"],
            "first_time": grouped["time_min"],
            "last_time": grouped["time_max"],
            "max_minute": grouped["minute_max"],
            "minutes_seen": pc.cast(grouped["minute_count_distinct"], pa.int32()),
        }
    )
    table = table.cast(WATCH_SESSION)
    return table.sort_by([("user_id", "ascending"), ("movie_id", "ascending")])


def days_of_batch(settings: Settings, batch_id: str) -> list[str]:
    """The event dates for which ``batch_id`` wrote watch rows."""
    return sorted({lake.day_of(path) for path in lake.batch_files(settings, "watch", batch_id)})


def watch_rows_of_day(settings: Settings, day: str) -> pa.Table:
    return lake.dataset(settings, "watch", lake.day_files(settings, "watch", day)).to_table()


def update_watch_sessions(settings: Settings, batch_id: str | None) -> dict[str, Any]:
    """Recompute the session rows of every day ``batch_id`` touched (all days if None)."""
    if batch_id is None:
        return {"days": [], "sessions": 0}
    from movierec.ingest.quality import QualityError, validate_frame

    days = days_of_batch(settings, batch_id)
    total = 0
    checks = []
    for day in days:
        sessions = sessions_of(watch_rows_of_day(settings, day))
        # derived from rows that passed their own checks: a failure here is a bug, so the task fails
        check = validate_frame(settings, "watch_session", sessions, run_name=f"{batch_id}-{day}")
        if not check["success"]:
            raise QualityError(f"watch_session {day}: expectations failed: {check['failed_expectations']}")
        path = lake.day_dir(settings, "watch_session", day) / lake.SESSIONS_FILE
        lake.write_parquet_atomically(sessions, path)
        total += sessions.num_rows
        checks.append(check["success"])
        log.info("watch_session %s: %d sessions", day, sessions.num_rows)
    return {"days": days, "sessions": total, "quality_ok": all(checks)}
