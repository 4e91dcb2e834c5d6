"""Drift detection: the statistics on known inputs, and check_drift on a small lake built from the
simulator's lines by ingest's own functions (build_tables, write_batch_files, manifests) with
scenarios that move exactly one thing each.

The lake is built without Kafka: check_drift reads only the lake and the manifests, and
tests/test_ingest_dag.py runs the same path through the real broker and Airflow.
"""

from __future__ import annotations

import json
import logging
import math
import re
import shutil
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from movierec import lake, schemas
from movierec import settings as settings_module
from movierec.ingest import catalog_sync, consume, drift, watch_sessions
from movierec.ingest import drift_stats as stats
from movierec.movielog import RateEvent, format_event, parse_line
from movierec.schemas import DRIFT
from simulator.backfill import history_lines
from simulator.catalog import World, load_world
from simulator.director import Director
from simulator.history import History, Line
from simulator.scenarios import Scenarios
from simulator.truth import load_truth
from tests.test_simulator_catalog import small_settings

# Two days of history form the reference (novelty needs a day plus some history before it), then
# the batch: the next 12 hours (a live batch is 10 minutes; these are small sites, so longer).
REFERENCE_START = datetime(2026, 11, 20, 12)
REFERENCE_DAYS = 2
BATCH_START = REFERENCE_START + timedelta(days=REFERENCE_DAYS)
BATCH_DAYS = 0.5
SESSIONS_PER_DAY = 1_500
MALFORMED = "malformed:strength=0.01"  # both the reference and every batch carry some damage
PARTITIONS = 3
REFERENCE_PLANNED = datetime(2026, 12, 1, 10, 0)  # when ingest planned the batches (wall clock)
BATCH_PLANNED = REFERENCE_PLANNED + timedelta(minutes=10)

# --- the statistics, on inputs whose answers are known -------------------------------------------


def test_psi_of_identical_distributions_is_zero_whatever_the_sample_size() -> None:
    assert stats.psi({"a": 10, "b": 30}, {"a": 100, "b": 300}) == pytest.approx(0.0)


def test_psi_matches_the_formula_on_known_shares() -> None:
    # reference 50/50, batch 80/20: (0.8-0.5) ln(0.8/0.5) + (0.2-0.5) ln(0.2/0.5)
    expected = 0.3 * math.log(1.6) + (-0.3) * math.log(0.4)
    assert stats.psi({"a": 50, "b": 50}, {"a": 80, "b": 20}) == pytest.approx(expected)
    assert expected == pytest.approx(0.4159, abs=1e-4)


def test_psi_is_symmetric_in_its_two_sides() -> None:
    one, two = {"a": 7, "b": 2, "c": 1}, {"a": 3, "b": 3, "c": 4}
    assert stats.psi(one, two) == pytest.approx(stats.psi(two, one))


def test_an_empty_bin_counts_as_the_documented_epsilon_not_infinity() -> None:
    # a category only the batch has: its reference share is EMPTY_BIN_SHARE
    value = stats.psi({"ok": 100}, {"ok": 90, "new": 10})
    eps = stats.EMPTY_BIN_SHARE
    expected = (0.9 - 1.0) * math.log(0.9 / 1.0) + (0.1 - eps) * math.log(0.1 / eps)
    assert value == pytest.approx(expected)
    assert math.isfinite(value)


def test_psi_of_an_empty_side_is_zero() -> None:
    assert stats.psi({}, {"a": 3}) == 0.0
    assert stats.psi({"a": 3}, {"a": 0}) == 0.0


def test_chi_square_matches_a_hand_computed_two_by_two_table() -> None:
    # rows (reference 60/40, batch 40/60), n=200: every expected count is 50, chi2 = 4 * 10^2 / 50 = 8
    statistic, p_value, dof = stats.chi_square({"a": 60, "b": 40}, {"a": 40, "b": 60})
    assert statistic == pytest.approx(8.0)
    assert dof == 1
    assert p_value == pytest.approx(math.erfc(math.sqrt(8.0 / 2)))  # chi2 with 1 dof: P(Z^2 > 8)


def test_chi_square_pools_categories_too_rare_for_the_approximation() -> None:
    reference = {"a": 500, "b": 500, "x": 1, "y": 1}
    batch = {"a": 500, "b": 500, "x": 2, "z": 1}
    ref_row, batch_row, kept = stats.pool_rare(reference, batch)
    assert kept == ["a", "b", stats.POOLED]
    assert ref_row == [500, 500, 2] and batch_row == [500, 500, 3]
    assert stats.chi_square(reference, batch)[2] == 2


def test_chi_square_with_one_category_has_nothing_to_compare() -> None:
    assert stats.chi_square({"a": 10}, {"a": 30}) == (0.0, 1.0, 0)


def test_a_signal_drifts_only_with_a_large_psi_a_small_p_value_and_enough_rows() -> None:
    def verdict(ref: dict[str, float], new: dict[str, float]) -> stats.Verdict:
        rows_ref, rows_new = int(sum(ref.values())), int(sum(new.values()))
        return stats.judge("s", ref, new, reference_rows=rows_ref, batch_rows=rows_new, psi_threshold=0.25)

    strong = verdict({"a": 500, "b": 500}, {"a": 900, "b": 100})
    assert strong.drifted and strong.psi > 0.25 and strong.p_value < stats.P_VALUE_THRESHOLD
    # a large PSI from a handful of rows: not enough data, never flagged
    few = verdict({"a": 20, "b": 20}, {"a": 30, "b": 5})
    assert few.status == "not enough data" and not few.drifted and few.psi is None
    # a significant but small change (millions of rows): PSI below the threshold
    small = verdict({"a": 5_000_000, "b": 5_000_000}, {"a": 5_100_000, "b": 4_900_000})
    assert small.p_value < 1e-6 and small.psi < 0.01 and not small.drifted
    # a large PSI that chi-square cannot tell from noise (p >= 0.001)
    noisy = verdict({"a": 40, "b": 40, "c": 0}, {"a": 25, "b": 25, "c": 3})
    assert noisy.psi > 0.25 and noisy.p_value >= stats.P_VALUE_THRESHOLD and not noisy.drifted


def test_watch_length_from_sessions_equals_the_histogram_of_their_lines() -> None:
    # sessions streaming minutes 0..n-1, and one that joined at minute 10 and streamed 0 more than 5
    sessions = [(0, 1), (3, 4), (44, 45), (150, 151), (14, 5)]  # (max_minute, minutes_seen)
    lines = np.concatenate([np.arange(high + 1 - seen, high + 1) for high, seen in sessions])
    from_sessions = stats.minute_counts_of_sessions(
        np.array([s[0] for s in sessions]), np.array([s[1] for s in sessions])
    )
    assert from_sessions == stats.minute_counts_of_lines(lines)
    assert from_sessions["0-4"] == 1 + 4 + 5 + 5 and from_sessions["120+"] == 31


def test_status_mix_groups_codes_other_than_200_and_0() -> None:
    assert stats.status_counts([200, 200, 0, 503, 404]) == {"200": 2, "0": 1, "other": 2}


def test_genre_mix_counts_each_genre_of_a_session_and_skips_movies_without_a_catalog_entry() -> None:
    counts, known = stats.genre_counts(["m1", "m2", "m1", "gone"], {"m1": ["Horror", "Drama"], "m2": []})
    assert counts == {"Horror": 2, "Drama": 2, "(no genre)": 1}
    assert known == 3


def test_quarantine_mix_is_lines_by_fate_and_refuses_more_rows_than_lines() -> None:
    assert stats.quarantine_counts(10, ["bad_time", "bad_time", "empty"]) == {
        "bad_time": 2,
        "empty": 1,
        "accepted": 7,
    }
    with pytest.raises(ValueError, match="more quarantined rows"):
        stats.quarantine_counts(1, ["bad_time", "empty"])


def test_novelty_compares_the_batch_with_the_same_hours_a_day_earlier_over_equal_histories() -> None:
    hour = np.timedelta64(3600_000_000, "us")
    start = np.datetime64("2026-11-20T00:00:00", "us")
    end = start + 27 * hour  # the batch begins 27 h after the reference does, and lasts an hour
    # hours 0-2: users 1, 2, 4; hour 3 (the batch's hour, a day earlier): users 2, 5; hour 25: user 7
    times = np.array([start + k * hour for k in (0, 1, 2, 3, 3, 25)])
    ids = np.array([1, 2, 4, 2, 5, 7])
    result = stats.novelty_against_history(times, ids, [4, 7, 9, 9], end=end, span=hour, distinct=True)
    assert result is not None
    tail, batch = result
    # a day earlier (hour 3): 2 was seen in the 3 hours before it, 5 was not
    assert tail == {"known": 1, "unknown": 1}
    # the batch against the last 3 hours (24-27: only 7): 7 known; 4 (seen too long ago) and 9 new
    assert batch == {"known": 1, "unknown": 2}
    # per event, and with an id the catalog called unknown: 7 no longer counts as known
    per_event = stats.novelty_against_history(
        times, ids, [7, 9, 9], end=end, span=hour, distinct=False, never_known=frozenset({7})
    )
    assert per_event is not None and per_event[1] == {"known": 0, "unknown": 3}


def test_novelty_needs_a_day_plus_an_hour_of_reference() -> None:
    hour = np.timedelta64(3600_000_000, "us")
    start = np.datetime64("2026-11-20T00:00:00", "us")
    times = np.array([start, start + 20 * hour])
    ids = np.array([1, 2])
    end = start + 24 * hour + hour // 2  # the hour before "a day earlier" is only half there
    assert stats.novelty_against_history(times, ids, [1], end=end, span=hour, distinct=True) is None
    assert stats.novelty_against_history(times[:0], ids[:0], [1], end=end, span=hour, distinct=True) is None


# --- a small lake from the simulator's lines --------------------------------------------------


def simulated_lines(
    history: History, start: datetime, days: float, specs: list[str], seed: int
) -> list[Line]:
    director = Director.for_run(
        Scenarios.of_specs(specs, origin=start),
        history,
        seed=seed,
        record=[].append,
        follow=0.5,
        origin=start,
        mode="backfill",
    )
    rng = np.random.default_rng(seed)
    return list(history_lines(rng, history, start, days, SESSIONS_PER_DAY, 0.5, director))


def ingest_lines(
    settings: settings_module.Settings, lines: Iterable[Line], offsets: dict[int, int], planned_at: datetime
) -> str:
    """One committed batch made of ``lines``, written by ingest's own functions; its batch id.

    Lines are spread over partitions by user, as the site keys them; ``offsets`` holds each
    partition's next offset and is advanced.
    """
    kafka_ms = int(planned_at.replace(tzinfo=UTC).timestamp() * 1000)
    records, first = [], dict(offsets)
    for _moment, user_id, line in lines:
        partition = user_id % PARTITIONS
        value = line.encode() if isinstance(line, str) else line
        records.append(consume.Record(partition, offsets[partition], kafka_ms, value))
        offsets[partition] += 1
    ranges = [lake.PartitionRange(p, first[p], offsets[p]) for p in sorted(offsets) if offsets[p] > first[p]]
    manifest = lake.Manifest(consume.batch_id_for(settings.topic, ranges), settings.topic, ranges)
    manifest.planned_at = planned_at.isoformat(timespec="seconds")
    tables = consume.build_tables(records)
    manifest.files = consume.write_batch_files(settings, manifest.batch_id, tables)
    manifest.counts = {name: table.num_rows for name, table in tables.items()}
    manifest.state = "committed"
    lake.save_manifest(settings, manifest)
    watch_sessions.update_watch_sessions(settings, manifest.batch_id)
    return manifest.batch_id


def store_catalog(settings: settings_module.Settings, world: World) -> int:
    """The movies seen so far, as the catalog DAG would store them from the API; how many."""
    _, movie_ids = catalog_sync.seen_ids(settings)
    now = datetime.now(UTC)
    rows = [
        catalog_sync.movie_row(record["id"], record, now)
        for record in world.movies.to_pylist()
        if record["id"] in movie_ids
    ]
    table = pa.Table.from_pylist(rows, schema=schemas.MOVIES)
    lake.write_parquet_atomically(table, lake.table_dir(settings, "movies") / "part-test.parquet")
    return len(rows)


@dataclass
class ReferenceLake:
    settings: settings_module.Settings
    world: World
    history: History
    offsets: dict[int, int]  # next offset per partition after the reference


@pytest.fixture(scope="module")
def reference_lake(tmp_path_factory: pytest.TempPathFactory) -> ReferenceLake:
    """Two days of the site as one ingested batch, and the catalog of what they showed."""
    settings = small_settings(tmp_path_factory.mktemp("drift-reference"))
    world = load_world(settings)
    history = History.build(world, load_truth(settings, world))
    lines = simulated_lines(history, REFERENCE_START, REFERENCE_DAYS, [MALFORMED], seed=11)
    offsets = dict.fromkeys(range(PARTITIONS), 0)
    ingest_lines(settings, lines, offsets, REFERENCE_PLANNED)
    assert store_catalog(settings, world) > 100
    return ReferenceLake(settings, world, history, offsets)


def with_batch(
    reference: ReferenceLake, home: Path, lines: Iterable[Line]
) -> tuple[settings_module.Settings, str]:
    """A copy of the reference lake with one more batch ingested; its settings and batch id."""
    shutil.copytree(reference.settings.home, home)
    settings = replace(reference.settings, home=home)
    return settings, ingest_lines(settings, lines, dict(reference.offsets), BATCH_PLANNED)


def batch_lines(reference: ReferenceLake, specs: list[str], seed: int = 12) -> list[Line]:
    return simulated_lines(reference.history, BATCH_START, BATCH_DAYS, [MALFORMED, *specs], seed)


def ratings_lowered(lines: list[Line], by: int) -> list[Line]:
    """The site's rating scale shifts: every rating ``by`` stars lower (at least 1)."""
    out: list[Line] = []
    for moment, user_id, line in lines:
        event = parse_line(line)
        if isinstance(event, RateEvent):
            line = format_event(replace(event, rating=max(1, event.rating - by)))
        out.append((moment, user_id, line))
    return out


def drift_rows(settings: settings_module.Settings) -> pa.Table:
    return lake.read_table(settings, "drift")


def prometheus_samples(settings: settings_module.Settings) -> dict[tuple[str, str], float]:
    from prometheus_client.parser import text_string_to_metric_families

    text = drift.metrics_path(settings).read_text()
    return {
        (sample.name, sample.labels.get("signal", "")): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_a_clean_batch_from_the_same_site_flags_nothing(
    reference_lake: ReferenceLake, tmp_path: Path
) -> None:
    settings, batch_id = with_batch(reference_lake, tmp_path / "home", batch_lines(reference_lake, []))

    report = drift.check_drift(settings, batch_id)

    assert report["any_drift"] is False and report["drifted"] == []
    # every signal was really compared (enough rows, a catalog, a day of reference for novelty)
    assert {name: s["status"] for name, s in report["signals"].items()} == dict.fromkeys(drift.SIGNALS, "ok")
    assert all(s["psi"] < settings.drift_psi_threshold for s in report["signals"].values())
    json.dumps(report, allow_nan=False)  # an XCom: plain JSON
    assert_gx_verdict(report, drifted=False)
    rows = drift_rows(settings)
    assert rows.num_rows == 2 * len(drift.SIGNALS) and not any(rows["drifted"].to_pylist())
    assert Counter(rows["test"].to_pylist()) == {"psi": len(drift.SIGNALS), "chi2": len(drift.SIGNALS)}


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        # viewers like a genre more: they watch it more, and rate what they watch higher (the
        # simulator's ratings follow enjoyment), so both move
        ("genre rising", {"genre_mix", "rating"}),
        ("ratings shifted", {"rating"}),
        # a new timestamp form: the lines land in quarantine with reason bad_time
        ("new timestamp format", {"quarantine_reasons"}),
    ],
)
def test_a_drifted_batch_flags_exactly_the_signals_that_moved(
    reference_lake: ReferenceLake,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    case: str,
    expected: set[str],
) -> None:
    lines = {
        "genre rising": lambda: batch_lines(reference_lake, ["taste_drift:strength=2,genre=Horror"]),
        "ratings shifted": lambda: ratings_lowered(batch_lines(reference_lake, []), by=2),
        "new timestamp format": lambda: batch_lines(
            reference_lake, ["format_drift:strength=0.3,form=space_time"]
        ),
    }[case]()
    settings, batch_id = with_batch(reference_lake, tmp_path / "home", lines)
    caplog.set_level(logging.INFO, logger="movierec.ingest.drift")

    report = drift.check_drift(settings, batch_id)

    assert set(report["drifted"]) == expected and report["any_drift"] is True
    assert_gx_verdict(report, drifted=True)
    for name in expected:
        signal = report["signals"][name]
        assert signal["psi"] > settings.drift_psi_threshold and signal["p_value"] < stats.P_VALUE_THRESHOLD
    # the table, the metrics and the task log say the same
    rows = drift_rows(settings)
    assert {r["signal"] for r in rows.to_pylist() if r["drifted"]} == expected
    samples = prometheus_samples(settings)
    flagged = {
        signal for (name, signal), value in samples.items() if name == "movierec_drift_flagged" and value
    }
    assert flagged == expected
    psi_rows = rows.filter(pc.equal(rows["test"], "psi"))
    for row in psi_rows.to_pylist():
        assert samples[("movierec_drift_statistic", row["signal"])] == pytest.approx(row["statistic"])
    warnings = [
        r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and "DRIFT" in r.getMessage()
    ]
    assert {w.split()[1].rstrip(":") for w in warnings} == expected
    assert all(re.search(r"PSI \d+\.\d+, chi-square .* p=", w) for w in warnings)


def test_re_running_a_batch_replaces_its_drift_partition(
    reference_lake: ReferenceLake, tmp_path: Path
) -> None:
    settings, batch_id = with_batch(reference_lake, tmp_path / "home", batch_lines(reference_lake, []))
    first = drift.check_drift(settings, batch_id)
    stray = lake.table_dir(settings, "drift") / "date=2026-01-01" / lake.batch_file_name(batch_id)
    stray.parent.mkdir(parents=True)
    shutil.copy(lake.lake_dir(settings) / first["table"], stray)  # as if it once landed on another day

    second = drift.check_drift(settings, batch_id)

    files = sorted(lake.table_dir(settings, "drift").rglob(lake.batch_file_name(batch_id)))
    assert [str(f.relative_to(lake.lake_dir(settings))) for f in files] == [second["table"]]
    assert second["table"] == f"drift/date={BATCH_START:%Y-%m-%d}/{lake.batch_file_name(batch_id)}"
    rows = drift_rows(settings)
    assert rows.num_rows == 2 * len(drift.SIGNALS)
    assert set(rows["computed_at"].to_pylist()) == {datetime.fromisoformat(second["computed_at"])}
    assert second["signals"] == first["signals"]  # same data, same answer


def test_the_first_batch_has_no_reference_and_flags_nothing(
    reference_lake: ReferenceLake, tmp_path: Path
) -> None:
    settings = replace(reference_lake.settings, home=tmp_path / "home")
    lines = batch_lines(reference_lake, ["format_drift:strength=0.3,form=space_time"])
    batch_id = ingest_lines(settings, lines, dict.fromkeys(range(PARTITIONS), 0), BATCH_PLANNED)

    report = drift.check_drift(settings, batch_id)

    assert report["any_drift"] is False
    statuses = {name: s["status"] for name, s in report["signals"].items()}
    assert statuses == dict.fromkeys(drift.SIGNALS, "not enough data") | {"genre_mix": "no catalog"}
    assert_gx_verdict(report, drifted=False)  # null statistics are not a failure
    rows = drift_rows(settings)
    assert rows.num_rows == 2 * len(drift.SIGNALS)
    assert rows["statistic"].null_count == rows.num_rows and not any(rows["drifted"].to_pylist())
    samples = prometheus_samples(settings)
    assert math.isnan(samples[("movierec_drift_statistic", "rating")])
    assert samples[("movierec_drift_flagged", "rating")] == 0


def test_without_a_catalog_the_genre_mix_says_so_and_the_rest_is_compared(
    reference_lake: ReferenceLake, tmp_path: Path
) -> None:
    lines = batch_lines(reference_lake, ["taste_drift:strength=2,genre=Horror"])
    settings, batch_id = with_batch(reference_lake, tmp_path / "home", lines)
    shutil.rmtree(lake.table_dir(settings, "movies"))  # the catalog API was down all along

    report = drift.check_drift(settings, batch_id)

    assert report["signals"]["genre_mix"]["status"] == "no catalog"
    assert report["signals"]["genre_mix"]["drifted"] is False
    assert report["drifted"] == ["rating"]
    assert report["signals"]["unknown_movies"]["status"] == "ok"


def test_no_batch_means_nothing_to_do(tmp_path: Path) -> None:
    settings = settings_module.load({"MOVIEREC_HOME": str(tmp_path)})
    assert drift.check_drift(settings, None) == {"batch_id": None}
    assert not (tmp_path / "lake").exists() and not drift.metrics_path(settings).exists()


def test_an_unknown_batch_is_a_clear_error(tmp_path: Path) -> None:
    settings = settings_module.load({"MOVIEREC_HOME": str(tmp_path)})
    with pytest.raises(drift.DriftError, match="no ingest batch 'nope'"):
        drift.check_drift(settings, "nope")


def test_the_drift_rows_have_the_lake_schema(reference_lake: ReferenceLake, tmp_path: Path) -> None:
    settings, batch_id = with_batch(reference_lake, tmp_path / "home", batch_lines(reference_lake, []))
    drift.check_drift(settings, batch_id)
    assert drift_rows(settings).schema == DRIFT


def assert_gx_verdict(report: dict[str, object], drifted: bool) -> None:
    """Great Expectations (suite "drift": no row drifted) failed exactly when a signal drifted."""
    gx = report["gx"]
    assert isinstance(gx, dict)
    if gx.get("status") == "unavailable":  # movierec.ingest.quality not installed: the report says so
        assert "movierec.ingest.quality" in gx["reason"]
        return
    assert gx["suite"] == "drift" and gx["rows"] == 2 * len(drift.SIGNALS)
    assert gx["success"] is (not drifted)
    assert gx["failed_expectations"] == (["signal_not_drifted"] if drifted else [])


def test_an_hour_cut_from_a_continuous_stream_flags_nothing(tmp_path: Path) -> None:
    """A live batch holds the later minutes of sessions that began before it: cut from one stream,
    its watch length and its new users must look like the reference's (the same hours a day
    earlier), not like a batch of fresh sessions."""
    settings = small_settings(tmp_path / "home")
    world = load_world(settings)
    history = History.build(world, load_truth(settings, world))
    start = datetime(2026, 11, 20, 20)  # the batch is the busy 20:00-21:00 two days later
    batch_start, batch_end = start + timedelta(days=2), start + timedelta(days=2, hours=1)
    stream = simulated_lines(history, start, 2 + 2 / 24, [MALFORMED], seed=21)
    offsets = dict.fromkeys(range(PARTITIONS), 0)
    ingest_lines(settings, [line for line in stream if line[0] < batch_start], offsets, REFERENCE_PLANNED)
    store_catalog(settings, world)
    batch = [line for line in stream if batch_start <= line[0] < batch_end]
    batch_id = ingest_lines(settings, batch, offsets, BATCH_PLANNED)

    report = drift.check_drift(settings, batch_id)

    assert report["drifted"] == []
    compared = {name for name, s in report["signals"].items() if s["status"] == "ok"}
    assert compared == set(drift.SIGNALS) - {"rating"}  # a dozen ratings an hour on this small site
    assert report["signals"]["watch_length"]["psi"] < 0.05
