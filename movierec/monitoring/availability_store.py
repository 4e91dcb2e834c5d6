"""The ``compute_availability`` task: after an ingest batch, the site's availability into the lake and
a Prometheus text file.

    lake/availability/date=D/part-buckets.parquet      5-minute, hour and day rows of day D,
                                                        recomputed from all of D's request lines
                                                        whenever a batch touched D (replaced)
    lake/availability/date=E/part-<batch_id>.parquet   the 72 h and 96 h windows ending at the latest
                                                        5-minute bucket E when the batch landed
    metrics/availability.prom                          the latest row of every window and server

A re-run replaces all three. Fallback answers are recognised by the fallback lines of the serving
files still kept and of every model folder (``fallback.json``).
"""

from __future__ import annotations

import json
import logging
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds

from movierec import lake, serving_file
from movierec.monitoring import availability, textfile
from movierec.schemas import AVAILABILITY, RECO
from movierec.settings import Settings

log = logging.getLogger(__name__)

BUCKETS_FILE = "part-buckets.parquet"
TEXTFILE = "availability.prom"


def fallback_lines(settings: Settings) -> set[str]:
    """Every fallback line we may have answered with: kept serving files and model folders."""
    lines = set()
    for serving_id in serving_file.serving_ids(settings.serving_dir):
        path = serving_file.file_path(settings.serving_dir, serving_id)
        try:
            lines.add(str(serving_file.read_meta(path)["fallback"]))
        except Exception as exc:  # a damaged file must not stop the measurement
            log.warning("no fallback line from %s: %s", path, exc)
    for path in sorted(settings.models_dir.glob("*/fallback.json")):
        try:
            lines.add(serving_file.fallback_line(json.loads(path.read_text())))
        except ValueError as exc:
            log.warning("no fallback line from %s: %s", path, exc)
    return lines


def days_of_batch(settings: Settings, batch_id: str) -> list[date]:
    """The event days the batch wrote request lines to (from its manifest)."""
    manifest = lake.load_manifest(settings, batch_id)
    if manifest is None:
        raise ValueError(
            f"no ingest batch {batch_id!r} (no manifest {lake.manifest_path(settings, batch_id)})"
        )
    return sorted(
        {date.fromisoformat(lake.day_of(entry["path"])) for entry in manifest.files.get("reco", [])}
    )


def _files(folder: Path, days: list[date], name: str = "part-*.parquet") -> list[str]:
    found: list[str] = []
    for day in days:
        found += sorted(str(p) for p in (folder / f"{lake.DAY_PREFIX}{day.isoformat()}").rglob(name))
    return found


def read_lines(settings: Settings, days: list[date], columns: list[str]) -> pa.Table:
    """The request lines of ``days`` (all hours), only ``columns``."""
    files = _files(lake.table_dir(settings, "reco"), days)
    if not files:
        return RECO.empty_table().select(columns)
    return ds.dataset(files, schema=RECO, format="parquet").to_table(columns=columns)


def buckets_path(settings: Settings, day: date) -> Path:
    return lake.day_dir(settings, "availability", day.isoformat()) / BUCKETS_FILE


def day_buckets(settings: Settings, day: date, fallbacks: set[str]) -> pd.DataFrame:
    """The 5-minute, hour and day rows of one day, from all its request lines."""
    lines = availability.outcomes(read_lines(settings, [day], availability.READ_COLUMNS), fallbacks)
    frames = [availability.buckets(lines, window) for window in availability.BUCKETS]
    return pd.concat([f for f in frames if not f.empty] or [availability.empty_frame()], ignore_index=True)


def read_stored(settings: Settings, days: list[date], name: str) -> pd.DataFrame:
    files = _files(lake.table_dir(settings, "availability"), days, name)
    if not files:
        return availability.empty_frame()
    return ds.dataset(files, schema=AVAILABILITY, format="parquet").to_table().to_pandas()


def rolling_windows(settings: Settings, last_day: date) -> pd.DataFrame:
    """The 72 h and 96 h windows ending at the end of the latest 5-minute bucket up to ``last_day``."""
    longest = max(availability.ROLLING.values())
    days = [last_day - timedelta(days=n) for n in range(longest.days + 1, -1, -1)]
    stored = read_stored(settings, days, BUCKETS_FILE)
    five = stored[stored["window"] == availability.ROLLING_GRAIN]
    if five.empty:
        return availability.empty_frame()
    end = five["end"].max().to_pydatetime()
    lines = read_lines(settings, days, ["time", "server", "latency_ms"]).to_pandas()
    return availability.rolling(five, lines, end)


def validate(settings: Settings, table: pa.Table, run_name: str) -> dict[str, Any]:
    from movierec.ingest.quality import validate_frame

    return validate_frame(settings, "availability", table, run_name)


def compute_availability(settings: Settings, batch_id: str | None) -> dict[str, Any]:
    """Recompute the days ``batch_id`` touched, the rolling windows, and the text file."""
    if batch_id is None:
        return {"batch_id": None}
    days = days_of_batch(settings, batch_id)
    if not days:
        log.info("batch %s has no request lines: availability unchanged", batch_id)
        return {"batch_id": batch_id, "days": []}
    fallbacks = fallback_lines(settings)
    written = {}
    gx = {}
    for day in days:
        table = availability.to_table(day_buckets(settings, day, fallbacks))
        lake.write_parquet_atomically(table, buckets_path(settings, day))
        written[day.isoformat()] = table.num_rows
        if table.num_rows:
            gx[day.isoformat()] = validate(settings, table, f"availability-{batch_id}-{day}").get("success")
    rolling = rolling_windows(settings, max(days))
    rolling_table = availability.to_table(rolling)
    name = lake.batch_file_name(batch_id)
    folder = lake.table_dir(settings, "availability")
    for old in folder.rglob(name):  # a re-run replaces, also if the end moved to another day
        old.unlink()
    if rolling_table.num_rows:
        end_day = rolling["end"].max().date()
        lake.write_parquet_atomically(
            rolling_table, lake.day_dir(settings, "availability", end_day.isoformat()) / name
        )
    latest = pd.concat(
        [availability.latest(read_stored(settings, [max(days)], BUCKETS_FILE)), rolling], ignore_index=True
    )
    textfile.write(settings, TEXTFILE, textfile_registry(latest))
    summary = {
        f"{row.window} {row.server}": round(float(row.availability), 5) for row in rolling.itertuples()
    }
    log.info("availability after batch %s: %s (days recomputed %s)", batch_id, summary, sorted(written))
    return {"batch_id": batch_id, "days": written, "rolling": summary, "fallbacks": len(fallbacks), "gx": gx}


def textfile_registry(latest: pd.DataFrame):  # type: ignore[no-untyped-def]
    """Gauges of the latest row per (window, server)."""
    from prometheus_client import CollectorRegistry, Gauge

    registry = CollectorRegistry()
    labels = ["server", "window"]
    gauges = {
        "availability": Gauge(
            "movierec_site_availability_ratio",
            "share of the site's request lines that were up (status 200 under 800 ms), from the lake",
            labels,
            registry=registry,
        ),
        "requests": Gauge(
            "movierec_site_window_requests",
            "request lines in the window, from the lake",
            labels,
            registry=registry,
        ),
        "fallback_share": Gauge(
            "movierec_site_fallback_ratio",
            "share of answered requests whose list was a fallback line, from the lake",
            labels,
            registry=registry,
        ),
    }
    latency = Gauge(
        "movierec_site_latency_ms",
        "latency the site logged (every request line), nearest-rank quantile, from the lake",
        [*labels, "quantile"],
        registry=registry,
    )
    end = Gauge(
        "movierec_site_window_end_timestamp_seconds",
        "end of the window (the site's local time as epoch seconds)",
        labels,
        registry=registry,
    )
    for row in latest.itertuples():
        key = {"server": row.server, "window": row.window}
        for column, gauge in gauges.items():
            value = getattr(row, column)
            gauge.labels(**key).set(float("nan") if pd.isna(value) else float(value))
        for quantile, column in (("0.5", "latency_p50_ms"), ("0.99", "latency_p99_ms")):
            value = getattr(row, column)
            latency.labels(**key, quantile=quantile).set(float("nan") if pd.isna(value) else float(value))
        end.labels(**key).set(pd.Timestamp(row.end).to_pydatetime().timestamp())
    computed = Gauge(
        "movierec_site_availability_computed_timestamp_seconds",
        "when availability was last computed from the lake",
        registry=registry,
    )
    computed.set(datetime.now().timestamp())
    return registry
