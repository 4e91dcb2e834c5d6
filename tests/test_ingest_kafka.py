"""Ingest against the real broker: exact counts, no duplicates, crashes healed by a re-run."""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
from collections import Counter
from datetime import datetime
from pathlib import Path

import numpy as np
import pyarrow.compute as pc
import pytest

from movierec import lake
from movierec import settings as settings_module
from movierec.ingest import consume
from movierec.ingest.stream import TopicWriter
from movierec.ingest.watch_sessions import update_watch_sessions
from movierec.movielog import Malformed, parse_line
from movierec.schemas import TABLES
from simulator.backfill import history_lines
from simulator.history import History
from tests.conftest import topics_on_broker

pytestmark = pytest.mark.kafka

MALFORMED = [
    b"2026-11-20T01:00:00,5,GET /rate/up+2009",
    b"2026-11-20T01:00:00,5,GET /rate/up+2009=9",
    b"2026-11-20T01:00:00,,GET /data/m/up+2009/1.mpg",
    b"\xff\xfe\xfd",
    b"",
    b"2026-11-20 01:00:00,5,GET /data/m/up+2009/1.mpg",
]
_topics = itertools.count()
CLI = str(Path(sys.executable).parent / "movierec")


@pytest.fixture
def site(kafka: settings_module.Settings, tmp_path: Path) -> settings_module.Settings:
    """Settings of a fresh topic and lake on the session's broker."""
    return topics_on_broker(kafka, tmp_path, topic=f"ingest.test.{next(_topics)}")


def produce(settings: settings_module.Settings, history: History, seed: int, hours: float = 3) -> list[bytes]:
    """Simulated history plus malformed lines; returns every line sent."""
    lines = [
        line.encode()
        for _, _, line in history_lines(
            np.random.default_rng(seed), history, datetime(2026, 11, 20), hours / 24, sessions_per_day=3_000
        )
    ]
    lines[::500] = [MALFORMED[i % len(MALFORMED)] for i in range(len(lines[::500]))]
    with TopicWriter(settings) as writer:
        for line in lines:
            writer.write(line, line.split(b",", 2)[1] if line.count(b",") >= 2 else None)
    return lines


def expected_kinds(lines: list[bytes]) -> Counter[str]:
    kinds: Counter[str] = Counter()
    for line in lines:
        parsed = parse_line(line)
        kinds["quarantine" if isinstance(parsed, Malformed) else parsed.kind] += 1
    return kinds


def lake_counts(settings: settings_module.Settings) -> dict[str, int]:
    return {
        name: lake.read_table(settings, name).num_rows
        for name in ("raw", "watch", "rate", "reco", "quarantine")
    }


def assert_exactly_once(settings: settings_module.Settings, lines: list[bytes]) -> None:
    kinds = expected_kinds(lines)
    counts = lake_counts(settings)
    assert counts["raw"] == len(lines)
    assert {k: counts[k] for k in ("watch", "rate", "reco", "quarantine")} == {
        k: kinds[k] for k in ("watch", "rate", "reco", "quarantine")
    }
    raw = lake.read_table(settings, "raw", columns=["partition", "offset"])
    keys = set(zip(raw["partition"].to_pylist(), raw["offset"].to_pylist(), strict=True))
    assert len(keys) == raw.num_rows  # nothing twice
    assert sorted(lake.read_table(settings, "raw")["line"].to_pylist()) == sorted(
        line.decode("utf-8", "backslashreplace") for line in lines
    )


def run_until_written(site: settings_module.Settings, commit: bool) -> lake.Manifest:
    """The steps of a batch up to its files and manifest (and optionally the offsets): then it "dies"."""
    consumer = consume.consumer_of(site)
    try:
        ranges = consume.plan_ranges(site, consumer)
        manifest = lake.Manifest(consume.batch_id_for(site.topic, ranges), site.topic, ranges)
        lake.save_manifest(site, manifest)
        tables = consume.build_tables(consume.read_ranges(site, consumer, ranges))
        manifest.files = consume.write_batch_files(site, manifest.batch_id, tables)
        manifest.state = "written"
        lake.save_manifest(site, manifest)
        if commit:
            consume.commit_offsets(site, consumer, ranges)
    finally:
        consumer.close()
    return manifest


def test_a_batch_holds_exactly_what_the_stream_said(site: settings_module.Settings, history: History) -> None:
    lines = produce(site, history, seed=1)
    report = consume.ingest_batch(site)
    assert report["lines"] == len(lines)
    assert_exactly_once(site, lines)
    reasons = Counter(lake.read_table(site, "quarantine")["reason"].to_pylist())
    assert {"bad_rate_request", "bad_rating", "bad_user", "not_utf8", "empty", "bad_time"} <= set(reasons)
    assert consume.ingest_batch(site) == {"batch_id": None, "lines": 0}  # nothing new, nothing written

    more = produce(site, history, seed=2, hours=1)
    second = consume.ingest_batch(site)
    assert second["lines"] == len(more) and second["batch_id"] != report["batch_id"]
    assert_exactly_once(site, lines + more)


def test_reading_and_parsing_poll_by_poll_gives_the_tables_of_the_whole_batch(
    site: settings_module.Settings, history: History, monkeypatch: pytest.MonkeyPatch
) -> None:
    produce(site, history, seed=4, hours=1)
    consumer = consume.consumer_of(site, group_id="whole-batch")
    try:
        ranges = consume.plan_ranges(site, consumer)
        whole = consume.build_tables(consume.read_columns(site, consumer, ranges))
    finally:
        consumer.close()
    monkeypatch.setattr(consume, "READ_CHUNK", 97)  # many polls, parsed while the next is read
    pipelined = consume.read_and_build(site, ranges)
    assert sum(table.num_rows for table in pipelined.values()) == sum(t.num_rows for t in whole.values())
    for name, table in whole.items():  # in key order: how partitions interleave in polls varies by run
        keys = [("partition", "ascending"), ("offset", "ascending")]
        assert pipelined[name].sort_by(keys).equals(table.sort_by(keys)), name


def test_crash_after_files_before_offsets_is_redone_without_duplicates(
    site: settings_module.Settings, history: History
) -> None:
    lines = produce(site, history, seed=3)
    manifest = run_until_written(site, commit=False)  # dies before committing offsets
    more = produce(site, history, seed=4, hours=1)  # the topic grew meanwhile

    redo = consume.ingest_batch(site)
    assert redo["batch_id"] == manifest.batch_id and redo["lines"] == len(lines)
    assert_exactly_once(site, lines)
    after = consume.ingest_batch(site)
    assert after["lines"] == len(more)
    assert_exactly_once(site, lines + more)


def test_crash_after_offsets_is_only_marked_committed(
    site: settings_module.Settings, history: History
) -> None:
    lines = produce(site, history, seed=5)
    run_until_written(site, commit=True)  # dies after committing, before marking the manifest

    assert consume.ingest_batch(site) == {"batch_id": None, "lines": 0}
    assert consume.unfinished_manifest(site) is None
    assert_exactly_once(site, lines)


def test_a_batch_failing_quality_leaves_no_file_and_is_redone(
    site: settings_module.Settings, history: History, monkeypatch: pytest.MonkeyPatch
) -> None:
    from movierec.ingest import quality

    lines = produce(site, history, seed=7, hours=1)

    def failing(*args: object, **kwargs: object) -> quality.QualityResult:
        return quality.QualityResult(failed={"watch": "made to fail"})

    monkeypatch.setattr(quality, "check_tables", failing)
    with pytest.raises(quality.QualityError, match="made to fail"):
        consume.ingest_batch(site)
    manifest = consume.unfinished_manifest(site)
    assert manifest is not None and manifest.state == "planned"
    # raw's files are written while GX checks: a failed batch removes them, nothing is half there
    assert not any(lake.batch_files(site, table, manifest.batch_id) for table in TABLES)
    monkeypatch.undo()
    assert consume.ingest_batch(site)["batch_id"] == manifest.batch_id
    assert_exactly_once(site, lines)


def test_crash_before_any_file_is_redone(site: settings_module.Settings, history: History) -> None:
    lines = produce(site, history, seed=6, hours=1)
    consumer = consume.consumer_of(site)
    ranges = consume.plan_ranges(site, consumer)
    lake.save_manifest(site, lake.Manifest(consume.batch_id_for(site.topic, ranges), site.topic, ranges))
    consumer.close()
    assert consume.ingest_batch(site)["lines"] == len(lines)
    assert_exactly_once(site, lines)


def test_watch_sessions_follow_the_batch(site: settings_module.Settings, history: History) -> None:
    produce(site, history, seed=7)
    report = consume.ingest_batch(site)
    sessions = update_watch_sessions(site, report["batch_id"])
    watch = lake.read_table(site, "watch")
    table = lake.read_table(site, "watch_session")
    assert sessions["days"] == ["2026-11-20"] and sessions["sessions"] == table.num_rows > 0
    distinct = {
        (u, m) for u, m in zip(watch["user_id"].to_pylist(), watch["movie_id"].to_pylist(), strict=True)
    }
    assert table.num_rows == len(distinct)
    assert pc.sum(table["minutes_seen"]).as_py() <= watch.num_rows
    again = update_watch_sessions(site, report["batch_id"])  # a re-run replaces the day's file
    assert again == sessions and lake.read_table(site, "watch_session").num_rows == table.num_rows


@pytest.mark.slow
def test_killed_at_any_moment_then_rerun_gives_exact_counts(
    site: settings_module.Settings, history: History
) -> None:
    """SIGKILL real `movierec ingest` processes at spread-out moments, then let one finish."""
    lines = produce(site, history, seed=8, hours=6)
    env = {
        "PATH": os.environ["PATH"],
        "MOVIEREC_HOME": str(site.home),
        "MOVIEREC_KAFKA_BOOTSTRAP": site.kafka_bootstrap,
        "MOVIEREC_TOPIC": site.topic,
    }
    for delay in (0.5, 1.5, 2.5, 3.5, 5.0):
        process = subprocess.Popen(
            [CLI, "ingest"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        try:
            process.wait(timeout=delay)
        except subprocess.TimeoutExpired:
            process.send_signal(signal.SIGKILL)
            process.wait()
    final = subprocess.run([CLI, "ingest"], env=env, capture_output=True, text=True, timeout=300)
    assert final.returncode == 0, final.stderr[-2000:]
    assert consume.unfinished_manifest(site) is None
    assert_exactly_once(site, lines)
