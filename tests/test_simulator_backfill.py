"""Backfill: time-ordered, deterministic history in the grammar, through the real broker."""

from __future__ import annotations

from collections import Counter
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from kafka import KafkaConsumer

from movierec import settings as settings_module
from movierec.movielog import Malformed, RecoEvent, WatchEvent, parse_line
from movierec.ops.broker import broker
from simulator import commands
from simulator.backfill import BASELINE_SERVER, history_lines
from simulator.history import History
from tests.test_kafka_broker import consume
from tests.test_simulator_catalog import small_settings

START = datetime(2026, 11, 20, 0, 0, 0)


def lines_of(history: History, seed: int, days: float = 0.25) -> list[tuple[datetime, int, str]]:
    return list(history_lines(np.random.default_rng(seed), history, START, days, sessions_per_day=4_000))


def test_history_is_in_the_grammar_and_in_time_order(history: History) -> None:
    lines = lines_of(history, seed=1)
    assert len(lines) > 5_000
    parsed = [parse_line(line) for _, _, line in lines]
    assert not [p for p in parsed if isinstance(p, Malformed)]
    times = [p.time for p in parsed]
    assert times == sorted(times)
    assert times[0] >= START
    for (moment, user_id, _), event in zip(lines, parsed, strict=True):
        assert (event.time, event.user_id) == (moment, user_id)
    recos = [p for p in parsed if isinstance(p, RecoEvent)]
    assert recos and all(
        r.server == BASELINE_SERVER and r.status == 200 and len(r.items) == 20 for r in recos
    )
    assert {type(p).__name__ for p in parsed} == {"RecoEvent", "WatchEvent", "RateEvent"}


def test_each_session_streams_consecutive_minutes(history: History) -> None:
    minutes: dict[tuple[int, str], list[int]] = {}
    for _, _, line in lines_of(history, seed=2):
        event = parse_line(line)
        if isinstance(event, WatchEvent):
            minutes.setdefault((event.user_id, event.movie_id), []).append(event.minute)
    assert minutes
    for seen in minutes.values():
        # each viewing streams minutes 0, 1, 2, ... so (even if a user watched a movie twice,
        # possibly overlapping) minute k never appears more often than minute k - 1
        counts = Counter(seen)
        assert counts[0] >= 1
        assert all(counts[k] <= counts[k - 1] for k in range(1, max(seen) + 1))


def test_same_seed_same_history(history: History) -> None:
    assert lines_of(history, seed=3, days=0.1) == lines_of(history, seed=3, days=0.1)
    assert lines_of(history, seed=3, days=0.1) != lines_of(history, seed=4, days=0.1)


def test_history_ends_at_its_end_and_cuts_the_sessions_still_running(history: History) -> None:
    end = START + timedelta(days=0.25)
    lines = lines_of(history, seed=6, days=0.25)
    assert max(moment for moment, _, _ in lines) <= end
    # the log runs right up to the end (viewers were still watching), it does not stop early
    assert max(moment for moment, _, _ in lines) > end - timedelta(minutes=2)
    # what a longer history logged up to that moment, exactly: running sessions are cut there,
    # their earlier minutes kept, not dropped or shortened in some other way
    longer = lines_of(history, seed=6, days=0.5)
    assert lines == [line for line in longer if line[0] <= end]
    assert len(longer) > len(lines) + 1_000
    # some sessions were cut: watched before the end, with more minutes after it in the longer log
    cut = {
        (u, parse_line(x).movie_id) for m, u, x in longer if m > end and "/data/m/" in x and "/0.mpg" not in x
    }
    before = {(u, parse_line(x).movie_id) for _, u, x in lines if "/data/m/" in x}
    assert cut & before


def test_a_history_may_end_within_an_hour(history: History) -> None:
    end = START + timedelta(hours=2, minutes=30)
    lines = lines_of(history, seed=7, days=2.5 / 24)
    assert max(moment for moment, _, _ in lines) <= end
    starts = [moment for moment, _, line in lines if "recommendation request" in line]
    assert max(starts) > START + timedelta(hours=2, minutes=15)  # sessions start in the last part-hour


def test_the_evening_is_busier_than_the_night(history: History) -> None:
    lines = list(history_lines(np.random.default_rng(5), history, START, 1.0, sessions_per_day=4_000))
    reco_hours = [m.hour for m, _, line in lines if "recommendation request" in line]
    assert reco_hours.count(20) > 3 * reco_hours.count(4)


@pytest.mark.kafka
def test_backfill_command_writes_every_line_to_the_topic(kafka: settings_module.Settings, home: Path) -> None:
    settings = replace(small_settings(home), kafka_bootstrap=kafka.kafka_bootstrap, topic="backfill.test")
    broker.ensure_topic(settings, settings.topic, partitions=2)
    end = START + timedelta(hours=3)
    written = commands.backfill(settings, 0.125, sessions_per_day=4_000, end=end)
    consumer = KafkaConsumer(
        settings.topic, bootstrap_servers=kafka.kafka_bootstrap, auto_offset_reset="earliest"
    )
    try:
        got = consume(consumer, written)
        got += consume(consumer, 1, timeout=2)
    finally:
        consumer.close()
    assert len(got) == written > 1_000
    parsed = [parse_line(line) for _, _, line in got]
    assert all(not isinstance(event, Malformed) for event in parsed)
    assert max(event.time for event in parsed) <= end  # nothing logged after the end asked for
