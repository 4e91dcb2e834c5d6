"""Availability as the site counts it: 200 under 800 ms is up, anything else is down; per 5 minutes,
hour, day and rolling 72 h / 96 h; latency quantiles and the fallback share; the task's lake files
and text file, replaced on a re-run."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pytest
from prometheus_client.parser import text_string_to_metric_families

from movierec import lake
from movierec import settings as settings_module
from movierec.ingest import consume
from movierec.monitoring import availability, availability_store
from movierec.schemas import RECO

T0 = datetime(2026, 11, 28, 10, 0, 0)
OURS = "127.0.0.1:8082"
FALLBACK = ("pop+a+2001", "pop+b+2002")


def reco(rows: list[tuple[datetime, int, int] | tuple[datetime, int, int, tuple[str, ...], str]]) -> pa.Table:
    """(time, status, latency_ms[, items, server]) -> reco rows; items default to a personal list."""
    columns: dict[str, list[object]] = {name: [] for name in RECO.names}
    for offset, row in enumerate(rows):
        time, status, latency = row[:3]
        items = row[3] if len(row) > 3 else ("mine+a+1999",)
        server = row[4] if len(row) > 4 else OURS
        columns["time"].append(time)
        columns["user_id"].append(offset + 1)
        columns["server"].append(server)
        columns["status"].append(status)
        columns["items"].append(list(items) if status == 200 else [])
        columns["error"].append(None if status == 200 else "java.util.concurrent.TimeoutException: ...")
        columns["latency_ms"].append(latency)
        columns["partition"].append(0)
        columns["offset"].append(offset)
    return pa.table(columns, schema=RECO)


def test_up_is_status_200_strictly_under_800_ms_and_everything_else_is_down() -> None:
    lines = availability.outcomes(
        reco([(T0, 200, 120), (T0, 200, 799), (T0, 200, 800), (T0, 0, 800), (T0, 503, 4), (T0, 0, 12)]),
        fallbacks=[],
    )
    (row,) = availability.buckets(lines, "5m").itertuples()
    assert (row.requests, row.up, row.slow, row.timeouts, row.errors) == (6, 2, 1, 2, 1)
    assert row.availability == pytest.approx(2 / 6)
    assert row.answered == 3  # the slow 200 was answered, but too late to count


def test_buckets_follow_the_clock_of_the_site_per_server() -> None:
    table = reco(
        [
            (T0, 200, 10),
            (T0 + timedelta(minutes=4, seconds=59, microseconds=999_000), 0, 800),
            (T0 + timedelta(minutes=5), 200, 10),
            (T0 + timedelta(minutes=61), 200, 10),
            (T0 + timedelta(minutes=1), 200, 10, ("x+1+2000",), "site-baseline:8082"),
        ]
    )
    lines = availability.outcomes(table, fallbacks=[])
    five = availability.buckets(lines, "5m")
    ours = five[five["server"] == OURS].set_index("start")
    assert list(ours.index) == [T0, T0 + timedelta(minutes=5), T0 + timedelta(minutes=60)]
    assert list(ours["requests"]) == [2, 1, 1] and list(ours["availability"]) == [0.5, 1.0, 1.0]
    assert (ours["end"] - ours.index == timedelta(minutes=5)).all()
    hours = availability.buckets(lines, "1h")
    assert sorted(zip(hours["server"], hours["start"], hours["requests"], strict=True)) == [
        (OURS, T0, 3),
        (OURS, T0 + timedelta(hours=1), 1),
        ("site-baseline:8082", T0, 1),
    ]
    (day,) = availability.buckets(lines, "1d")[lambda f: f["server"] == OURS].itertuples()
    assert (day.start, day.requests, day.up) == (datetime(2026, 11, 28), 4, 3)


def test_latency_quantiles_are_nearest_rank_over_every_line() -> None:
    # 1..100 ms, shuffled in time: nearest rank p50 = 50, p99 = 99 (an interpolating p99 would say 99.01)
    rows = [(T0 + timedelta(seconds=(37 * n) % 100), 200, n) for n in range(1, 101)]
    (row,) = availability.buckets(availability.outcomes(reco(rows), []), "5m").itertuples()
    assert (row.latency_p50_ms, row.latency_p99_ms) == (50.0, 99.0)
    # a timeout is logged at the budget and counts in the latency the site saw
    rows = [(T0, 200, 5)] * 98 + [(T0, 0, 800)] * 2
    (row,) = availability.buckets(availability.outcomes(reco(rows), []), "5m").itertuples()
    assert (row.latency_p50_ms, row.latency_p99_ms) == (5.0, 800.0)


def test_the_fallback_share_counts_answered_lists_equal_to_a_fallback_line() -> None:
    table = reco(
        [
            (T0, 200, 10, FALLBACK),
            (T0, 200, 10, FALLBACK[::-1]),  # same movies, other order: not the fallback line
            (T0, 200, 10, FALLBACK[:1]),
            (T0, 200, 900, FALLBACK),  # answered late with the fallback: still a fallback answer
            (T0, 0, 800),
        ]
    )
    (row,) = availability.buckets(availability.outcomes(table, [",".join(FALLBACK)]), "5m").itertuples()
    assert (row.answered, row.fallback) == (4, 2)
    assert row.fallback_share == pytest.approx(0.5)
    (row,) = availability.buckets(
        availability.outcomes(reco([(T0, 0, 800)]), [",".join(FALLBACK)]), "5m"
    ).itertuples()
    assert row.fallback_share != row.fallback_share  # NaN: nothing answered, no share


def test_rolling_windows_sum_whole_buckets_and_take_quantiles_from_lines() -> None:
    end = T0
    rows = [
        (end - timedelta(hours=96), 0, 800),  # first bucket of the 96 h window, outside 72 h
        (end - timedelta(hours=96, minutes=1), 0, 800),  # before both windows
        (end - timedelta(hours=72), 200, 30),  # first bucket of the 72 h window
        (end - timedelta(minutes=1), 200, 20),  # last bucket of both
        (end, 0, 800),  # after the end: not in either
    ]
    lines = availability.outcomes(reco(rows), [])
    five = availability.buckets(lines, "5m")
    windows = availability.rolling(five, lines, end).set_index("window")
    assert windows.loc["72h", "requests"] == 2 and windows.loc["72h", "availability"] == 1.0
    assert windows.loc["96h", "requests"] == 3 and windows.loc["96h", "availability"] == pytest.approx(2 / 3)
    assert windows.loc["72h", "latency_p99_ms"] == 30.0 and windows.loc["96h", "latency_p99_ms"] == 800.0
    assert (windows["end"] == end).all()
    assert windows.loc["72h", "start"] == end - timedelta(hours=72)


# --- the task: lake files and the text file ---------------------------------------------------


def write_batch(settings: settings_module.Settings, batch_id: str, table: pa.Table) -> None:
    files = consume.write_batch_files(settings, batch_id, {"reco": table})
    manifest = lake.Manifest(batch_id, settings.topic, [lake.PartitionRange(0, 0, table.num_rows)])
    manifest.files, manifest.state = files, "committed"
    lake.save_manifest(settings, manifest)


def samples(path: Path) -> dict[tuple[str, ...], float]:
    found = {}
    for family in text_string_to_metric_families(path.read_text()):
        for sample in family.samples:
            found[(sample.name, *sorted(f"{k}={v}" for k, v in sample.labels.items()))] = sample.value
    return found


def test_the_task_writes_day_buckets_rolling_windows_and_gauges_and_a_rerun_replaces(tmp_path: Path) -> None:
    settings = settings_module.load({"MOVIEREC_HOME": str(tmp_path)})
    day1 = [(T0 - timedelta(days=1) + timedelta(minutes=n), 200, 20) for n in range(10)]
    write_batch(settings, "000000000000-aaaaaaaaaaaa", reco(day1))
    # the second batch: 3 of 4 lines up today, one timeout
    day2 = [(T0, 200, 10, FALLBACK), (T0, 200, 30), (T0 + timedelta(minutes=2), 200, 50), (T0, 0, 800)]
    write_batch(settings, "000000000010-bbbbbbbbbbbb", reco(day2))
    (settings.models_dir / "20261127T000000Z").mkdir(parents=True)
    (settings.models_dir / "20261127T000000Z" / "fallback.json").write_text(
        '{"items": ["pop+a+2001", "pop+b+2002"]}'
    )

    availability_store.compute_availability(settings, "000000000000-aaaaaaaaaaaa")
    report = availability_store.compute_availability(settings, "000000000010-bbbbbbbbbbbb")
    assert list(report["days"]) == ["2026-11-28"]
    assert report["gx"] == {"2026-11-28": True}  # the rows pass their Great Expectations suite
    stored = lake.read_table(settings, "availability").to_pandas()
    today = stored[(stored["window"] == "1d") & (stored["start"] == datetime(2026, 11, 28))]
    assert today[["requests", "up", "timeouts", "fallback"]].values.tolist() == [[4, 3, 1, 1]]
    rolling = stored[stored["window"] == "72h"]
    # the windows of the latest batch end with its last 5-minute bucket and hold both days
    latest = rolling[rolling["end"] == rolling["end"].max()]
    assert latest["requests"].tolist() == [14] and latest["end"].tolist() == [T0 + timedelta(minutes=5)]

    gauges = samples(tmp_path / "metrics" / "availability.prom")
    assert gauges[("movierec_site_availability_ratio", f"server={OURS}", "window=1d")] == pytest.approx(0.75)
    assert gauges[("movierec_site_availability_ratio", f"server={OURS}", "window=72h")] == pytest.approx(
        13 / 14
    )
    assert gauges[("movierec_site_fallback_ratio", f"server={OURS}", "window=1d")] == pytest.approx(1 / 3)
    assert gauges[("movierec_site_latency_ms", "quantile=0.99", f"server={OURS}", "window=5m")] == 800.0

    before = sorted(p.relative_to(tmp_path) for p in (tmp_path / "lake" / "availability").rglob("*.parquet"))
    rows_before = lake.read_table(settings, "availability").num_rows
    availability_store.compute_availability(settings, "000000000010-bbbbbbbbbbbb")
    after = sorted(p.relative_to(tmp_path) for p in (tmp_path / "lake" / "availability").rglob("*.parquet"))
    assert after == before and lake.read_table(settings, "availability").num_rows == rows_before


def test_no_batch_changes_nothing(tmp_path: Path) -> None:
    settings = settings_module.load({"MOVIEREC_HOME": str(tmp_path)})
    assert availability_store.compute_availability(settings, None) == {"batch_id": None}
    assert not (tmp_path / "metrics").exists()
