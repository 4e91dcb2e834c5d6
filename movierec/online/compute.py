"""Online metrics, the I/O: read the lake, compute per-answer outcomes and the metrics, write them.

    compute_answer_outcomes(settings)   -> answer_outcome/date=D/part-outcomes.parquet, per day
    compute_online_metrics(settings)    -> online_metrics/date=D/part-metrics.parquet, per day,
                                           and $MOVIEREC_HOME/metrics/online.prom

Both are called by the ``online_metrics`` DAG after every ingest and recompute only the days whose
inputs changed, so a re-run replaces and never adds. A day's outcomes need the site's reco lines
from ``window`` before it to its end (a start just after midnight may belong to an answer just
before), watch lines from ``VIEWING_GAP`` before it to ``window + VIEWING_HORIZON`` after it (the
viewings that answers started, and their minutes), and the served records around it (their UTC
times). The outcome file's Parquet metadata keeps the fingerprint of those inputs (files, sizes,
modification times, the settings that shape the result) and the day's viewing starts per hour
(every start, and the list starts among them): the denominator of ``list_start_share``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import sqlite3
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from movierec import lake, serving_file
from movierec.files import write_text
from movierec.online import metrics as online_metrics
from movierec.online import outcomes as oc
from movierec.schemas import ANSWER_OUTCOME, ONLINE_METRICS, TABLES
from movierec.settings import Settings

log = logging.getLogger(__name__)

OUTCOMES_FILE = "part-outcomes.parquet"
METRICS_FILE = "part-metrics.parquet"
VIEWING_HORIZON = timedelta(hours=6)  # minutes of a viewing counted up to this long after its start
CODE_VERSION = 2  # part of the fingerprint: a change of definition recomputes every day
INPUTS_KEY = b"movierec.inputs"
STARTS_KEY = b"movierec.starts_by_hour"


def outcome_path(settings: Settings, day: date) -> Path:
    return lake.day_dir(settings, "answer_outcome", f"{day:%Y-%m-%d}") / OUTCOMES_FILE


def metrics_table_path(settings: Settings, day: date) -> Path:
    return lake.day_dir(settings, "online_metrics", f"{day:%Y-%m-%d}") / METRICS_FILE


def outcome_files(settings: Settings) -> list[Path]:
    """Every day's outcomes file, oldest day first."""
    return [p for p in lake.table_files(settings, "answer_outcome") if p.name == OUTCOMES_FILE]


def prom_path(settings: Settings) -> Path:
    return settings.home / "metrics" / "online.prom"


# --- reading the lake by hour partitions ----------------------------------------------------


def read_rows(files: list[Path], table: str, columns: list[str], start: datetime, end: datetime) -> pa.Table:
    """Rows of ``files`` with start <= time < end (times in the column's own zone)."""
    schema = TABLES[table]
    if not files:
        return schema.empty_table().select(columns)
    kind = schema.field("time").type
    if getattr(kind, "tz", None):
        start, end = start.replace(tzinfo=UTC), end.replace(tzinfo=UTC)
    window = (ds.field("time") >= pa.scalar(start, kind)) & (ds.field("time") < pa.scalar(end, kind))
    return ds.dataset([str(f) for f in files], schema=schema, format="parquet").to_table(
        columns=columns, filter=window
    )


def reco_days(settings: Settings) -> list[date]:
    return [date.fromisoformat(day) for day in lake.days(settings, "reco")]


class DayInputs:
    """The files one day's outcomes read, and their fingerprint."""

    def __init__(self, settings: Settings, day: date) -> None:
        window = timedelta(minutes=settings.online_window_minutes)
        tolerance = timedelta(seconds=settings.online_match_seconds)
        self.start = datetime.combine(day, datetime.min.time())
        self.end = self.start + timedelta(days=1)
        self.answers_from = self.start - window
        self.watch_from = self.answers_from - oc.VIEWING_GAP
        self.watch_to = self.end + window + VIEWING_HORIZON
        # served records carry UTC times: the day's span in UTC, widened by the matching tolerance
        margin = tolerance + timedelta(hours=1)  # an hour either way: a DST change inside the day
        self.served_from = oc.site_time_as_utc(self.answers_from, settings.site_timezone) - margin
        self.served_to = oc.site_time_as_utc(self.end, settings.site_timezone) + margin
        self.reco = lake.hour_files(settings, "reco", self.answers_from, self.end)
        self.watch = lake.hour_files(settings, "watch", self.watch_from, self.watch_to)
        self.served = lake.hour_files(settings, "served", self.served_from, self.served_to)
        listing = [
            (lake.relative_path(settings, path), stat.st_size, stat.st_mtime_ns)
            for path in [*self.reco, *self.watch, *self.served]
            for stat in [path.stat()]
        ]
        shaping = [CODE_VERSION, settings.online_window_minutes, settings.online_match_seconds,
                   settings.site_timezone]  # fmt: skip
        self.fingerprint = hashlib.sha256(json.dumps([shaping, listing]).encode()).hexdigest()


def stored_metadata(path: Path) -> dict[bytes, bytes]:
    if not path.exists():
        return {}
    return pq.read_schema(path).metadata or {}


# --- outcomes -----------------------------------------------------------------------------


def serving_lists(settings: Settings, versions: set[str]) -> tuple[dict[str, str], dict[str, frozenset[str]]]:
    """Per version, from the serving files still kept: its fallback line (meta ``fallback``) and
    its demographic group lines (meta ``group_lines``, as ``list_key``s)."""
    fallbacks: dict[str, str] = {}
    groups: dict[str, frozenset[str]] = {}
    for version in versions:
        try:
            path = serving_file.file_path(settings.serving_dir, version)
        except ValueError:  # a served record's id that is no serving id: there is no file to read
            continue
        if not path.is_file():
            continue
        try:
            meta = serving_file.read_meta(path)
            lines = json.loads(meta.get("group_lines") or "[]")
        except (OSError, sqlite3.Error, ValueError) as exc:
            log.warning("lists of %s unreadable: %s", path.name, exc)
            continue
        if meta.get("fallback"):
            fallbacks[version] = meta["fallback"]
        if lines:
            groups[version] = frozenset(oc.list_key(line) for line in lines)
    return fallbacks, groups


def day_outcomes(settings: Settings, inputs: DayInputs) -> tuple[pa.Table, dict[datetime, tuple[int, int]]]:
    """One day's ``ANSWER_OUTCOME`` rows and its viewing starts per hour (all, listed)."""
    window = timedelta(minutes=settings.online_window_minutes)
    reco = read_rows(
        inputs.reco, "reco", ["time", "user_id", "status", "items", "partition", "offset"],
        inputs.answers_from, inputs.end,
    ).to_pandas()  # fmt: skip
    reco = reco[reco["status"] == 200].reset_index(drop=True)
    reco["answer"] = range(len(reco))
    watch_table = read_rows(inputs.watch, "watch", oc.WATCH_COLUMNS, inputs.watch_from, inputs.watch_to)
    movies = watch_table.column("movie_id")
    watch = watch_table.set_column(
        1, "movie_id", movies.dictionary_encode()
    ).to_pandas()  # codes, not strings
    served = read_rows(
        inputs.served, "served", [*oc.SERVED_COLUMNS, "status"], inputs.served_from, inputs.served_to
    ).to_pandas()
    served = served[served["status"] == 200]
    data_end = max([t.max() for t in (reco["time"], watch["time"]) if len(t)], default=inputs.start)

    views = oc.viewings(watch)
    attributed = oc.attribute(reco, views, window)
    per_answer = oc.outcomes_per_answer(reco, attributed)
    tolerance = timedelta(seconds=settings.online_match_seconds)
    matched = oc.match_served(reco, served, tolerance, settings.site_timezone)
    versions = set(served["model_version"].dropna())
    known_fallbacks, group_lines = serving_lists(settings, versions)
    fallbacks = oc.fallback_lines(served, known_fallbacks)
    personal = oc.personalised(
        reco["items"], matched["model_version"].reset_index(drop=True), fallbacks, group_lines
    )

    today = (reco["time"] >= inputs.start).to_numpy()
    frame = pd.DataFrame(
        {
            "time": reco["time"],
            "user_id": reco["user_id"],
            "items_count": reco["items"].map(len),
            "request_id": matched["request_id"].to_numpy(),
            "model_version": matched["model_version"].to_numpy(),
            "variant": matched["variant"].to_numpy(),
            "personalised": personal.to_numpy(),
            **{
                name: per_answer[name].to_numpy()
                for name in ("starts", "minutes", "list_starts", "list_minutes")
            },
            "position": per_answer["position"].to_numpy(),
            "movie_id": per_answer["movie_id"].to_numpy(),
            "start_time": per_answer["start_time"].to_numpy(),
            "complete": (reco["time"] + window <= data_end).to_numpy(),
            "partition": reco["partition"],
            "offset": reco["offset"],
        }
    )[today]
    frame = frame.astype({"position": "Int16"})
    table = pa.Table.from_pandas(frame.sort_values(["time", "partition", "offset"]), preserve_index=False)
    table = table.cast(ANSWER_OUTCOME)

    in_day = attributed[(attributed["start"] >= inputs.start) & (attributed["start"] < inputs.end)]
    hours = in_day["start"].dt.floor("h")
    starts = {
        hour.to_pydatetime(): (len(group), int(group["listed"].sum()))
        for hour, group in in_day.groupby(hours)
    }
    return table, starts


def compute_answer_outcomes(settings: Settings, days: list[str] | None = None) -> dict[str, Any]:
    """Recompute the outcomes of every day whose inputs changed (or of ``days``, ISO dates)."""
    began = time.monotonic()
    wanted = [date.fromisoformat(d) for d in days] if days is not None else reco_days(settings)
    done, skipped = [], 0
    for day in wanted:
        inputs = DayInputs(settings, day)
        path = outcome_path(settings, day)
        if days is None and stored_metadata(path).get(INPUTS_KEY) == inputs.fingerprint.encode():
            skipped += 1
            continue
        mark = time.monotonic()
        table, starts = day_outcomes(settings, inputs)
        metadata = {
            INPUTS_KEY: inputs.fingerprint.encode(),
            STARTS_KEY: json.dumps({h.isoformat(): list(v) for h, v in starts.items()}).encode(),
        }
        lake.write_parquet_atomically(table.replace_schema_metadata(metadata), path)
        summary = {
            "day": day.isoformat(),
            "answers": table.num_rows,
            "seconds": round(time.monotonic() - mark, 2),
        }
        summary["gx"] = _validate(settings, "answer_outcome", table, f"outcomes-{day}")
        log.info("answer outcomes of %s: %d answers in %.1f s", day, table.num_rows, summary["seconds"])
        done.append(summary)
    return {"days": done, "unchanged_days": skipped, "seconds": round(time.monotonic() - began, 2)}


def _validate(settings: Settings, suite: str, table: pa.Table, run_name: str) -> dict[str, Any]:
    from movierec.ingest.quality import validate_frame

    result = validate_frame(settings, suite, table, run_name)
    return {"success": result["success"], "failed": result["failed_expectations"]}


# --- metrics ------------------------------------------------------------------------------


def read_outcomes(settings: Settings, start: datetime | None = None, end: datetime | None = None) -> pa.Table:
    """answer_outcome rows with start <= time < end (either open), from the day files in between."""
    files = []
    for path in outcome_files(settings):
        day = date.fromisoformat(lake.day_of(path))
        if (start is None or day >= start.date()) and (end is None or day <= end.date()):
            files.append(str(path))
    if not files:
        return ANSWER_OUTCOME.empty_table()
    condition = None
    kind = ANSWER_OUTCOME.field("time").type
    if start is not None:
        condition = ds.field("time") >= pa.scalar(start, kind)
    if end is not None:
        upper = ds.field("time") < pa.scalar(end, kind)
        condition = upper if condition is None else condition & upper
    return ds.dataset(files, schema=ANSWER_OUTCOME, format="parquet").to_table(filter=condition)


def compute_online_metrics(settings: Settings) -> dict[str, Any]:
    """Metrics of every day whose outcomes changed since its metrics were computed; the Prometheus file."""
    computed_at = datetime.now(UTC)
    done = []
    latest_day = None
    for path in outcome_files(settings):
        day = date.fromisoformat(lake.day_of(path))
        latest_day = day
        inputs = stored_metadata(path).get(INPUTS_KEY, b"")
        target = metrics_table_path(settings, day)
        if stored_metadata(target).get(INPUTS_KEY) == inputs:
            continue
        outcomes = pq.read_table(path)
        starts = json.loads((outcomes.schema.metadata or {}).get(STARTS_KEY, b"{}"))
        by_hour = {datetime.fromisoformat(h): (int(v[0]), int(v[1])) for h, v in starts.items()}
        table = online_metrics.aggregate(outcomes.to_pandas(), by_hour, computed_at)
        lake.write_parquet_atomically(table.replace_schema_metadata({INPUTS_KEY: inputs}), target)
        done.append({"day": day.isoformat(), "rows": table.num_rows,
                     "gx": _validate(settings, "online_metrics", table, f"online-{day}")})  # fmt: skip
    latest: dict[str, list[dict[str, Any]]] = {}
    if latest_day is not None and metrics_table_path(settings, latest_day).exists():
        latest = online_metrics.latest_periods(pq.read_table(metrics_table_path(settings, latest_day)))
        if "hour" not in latest and metrics_table_path(settings, latest_day - timedelta(days=1)).exists():
            previous = pq.read_table(metrics_table_path(settings, latest_day - timedelta(days=1)))
            latest["hour"] = online_metrics.latest_periods(previous).get("hour", [])
    write_text(prom_path(settings), online_metrics.prometheus_text(latest, computed_at))
    return {"days": done, "prometheus": str(prom_path(settings)),
            "latest": {p: [_short(r) for r in rows] for p, rows in latest.items()}}  # fmt: skip


def _short(row: dict[str, Any]) -> dict[str, Any]:
    keys = (
        "period_start",
        "scope",
        "model_version",
        "variant",
        "answers",
        "follow_rate",
        "minutes_per_answer",
    )
    return {key: row[key] for key in keys}


def read_metrics(settings: Settings) -> pa.Table:
    files = [str(p) for p in lake.table_files(settings, "online_metrics") if p.name == METRICS_FILE]
    if not files:
        return ONLINE_METRICS.empty_table()
    return ds.dataset(files, schema=ONLINE_METRICS, format="parquet").to_table()
