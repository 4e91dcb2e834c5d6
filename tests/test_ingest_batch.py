"""Ingest's pure parts: records -> lake tables, batch ids, partitioning, sessions."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pyarrow as pa
import pytest

from movierec.ingest import consume
from movierec.ingest.consume import (
    Record,
    batch_id_for,
    build_tables,
    quarantine_rows,
    split_by_hour,
)
from movierec.ingest.watch_sessions import sessions_of
from movierec.lake import PartitionRange
from movierec.schemas import QUARANTINE, RATE, RAW, RECO, WATCH

KAFKA_MS = 1_795_000_000_000

LINES = [
    b"2026-11-28T10:15:02,7,GET /data/m/the+matrix+1999/0.mpg",
    b"2026-11-28T10:16:02.5,7,GET /data/m/the+matrix+1999/1.mpg",
    b"2026-11-28T11:00,8,GET /rate/up+2009=4",
    b"2026-11-28T11:00:01,9,recommendation request h:8082, status 200, result: up+2009, heat+1995, 12 ms",
    b"2026-11-28T11:00:02,9,recommendation request h:8082, status 0, result: java.net.ConnectException, 3 ms",
    b"2026-11-28T11:00:03,9,GET /rate/up+2009=6",
    b"\xff\xfe,1,2",
    b"",
]


def records() -> list[Record]:
    return [Record(n % 2, 100 + n, KAFKA_MS + n, line) for n, line in enumerate(LINES)]


def test_every_line_lands_in_raw_and_in_exactly_one_typed_or_quarantine_table() -> None:
    tables = build_tables(records())
    assert tables["raw"].schema == RAW and tables["quarantine"].schema == QUARANTINE
    assert (tables["watch"].schema, tables["rate"].schema, tables["reco"].schema) == (WATCH, RATE, RECO)
    assert tables["raw"].num_rows == len(LINES)
    counts = {name: tables[name].num_rows for name in ("watch", "rate", "reco", "quarantine")}
    assert counts == {"watch": 2, "rate": 1, "reco": 2, "quarantine": 3}
    keys = set()
    for name in ("watch", "rate", "reco", "quarantine"):
        keys |= set(
            zip(tables[name]["partition"].to_pylist(), tables[name]["offset"].to_pylist(), strict=True)
        )
    assert len(keys) == len(LINES)


def test_typed_rows_hold_exactly_what_the_line_said() -> None:
    tables = build_tables(records())
    watch = tables["watch"].to_pylist()
    assert watch[1] == {
        "time": datetime(2026, 11, 28, 10, 16, 2, 500000),
        "user_id": 7,
        "movie_id": "the+matrix+1999",
        "minute": 1,
        "partition": 1,
        "offset": 101,
    }
    reco = tables["reco"].to_pylist()
    assert reco[0]["items"] == ["up+2009", "heat+1995"] and reco[0]["error"] is None
    assert (
        reco[1]["status"] == 0 and reco[1]["items"] == [] and reco[1]["error"] == "java.net.ConnectException"
    )


def test_malformed_lines_are_quarantined_with_reason_and_original_bytes_kept() -> None:
    tables = build_tables(records())
    quarantine = {row["offset"]: row for row in tables["quarantine"].to_pylist()}
    assert quarantine[105]["reason"] == "bad_rating" and quarantine[105]["stage"] == "parse"
    assert quarantine[106]["reason"] == "not_utf8" and quarantine[106]["line"] == "\\xff\\xfe,1,2"
    assert quarantine[107]["reason"] == "empty"
    raw = {row["offset"]: row for row in tables["raw"].to_pylist()}
    assert raw[106]["raw_bytes"] == b"\xff\xfe,1,2"
    assert raw[100]["raw_bytes"] is None  # valid UTF-8 is stored once, as text


def test_batch_ids_are_deterministic_in_the_ranges() -> None:
    ranges = [PartitionRange(1, 5, 9), PartitionRange(0, 3, 7)]
    assert batch_id_for("movielog1", ranges) == batch_id_for("movielog1", list(reversed(ranges)))
    assert batch_id_for("movielog1", ranges) != batch_id_for(
        "movielog1", [PartitionRange(1, 5, 10), ranges[1]]
    )
    assert batch_id_for("movielog1", ranges) != batch_id_for("movielog2", ranges)
    assert batch_id_for("movielog1", ranges).startswith("000000000003-")


def test_split_by_event_hour() -> None:
    parts = split_by_hour(build_tables(records())["watch"], "time")
    assert sorted(parts) == [("2026-11-28", "10")]
    parts = split_by_hour(build_tables(records())["reco"], "time")
    assert sorted(parts) == [("2026-11-28", "11")] and parts[("2026-11-28", "11")].num_rows == 2
    assert split_by_hour(WATCH.empty_table(), "time") == {}


def test_rows_failing_quality_become_quarantine_rows_with_their_raw_line() -> None:
    tables = build_tables(records())
    moved = quarantine_rows(tables["reco"], [False, True], [None, "status_in_set"], tables["raw"])
    assert moved.to_pylist() == [
        {
            "partition": 0,
            "offset": 104,
            "kafka_time": tables["raw"]["kafka_time"][4].as_py(),
            "line": LINES[4].decode(),
            "stage": "quality",
            "reason": "status_in_set",
            "detail": None,
        }
    ]


def test_sessions_aggregate_minutes_per_user_and_movie() -> None:
    rows = [
        (datetime(2026, 11, 28, 10, 0), 7, "a+2000", 0),
        (datetime(2026, 11, 28, 10, 1), 7, "a+2000", 1),
        (datetime(2026, 11, 28, 10, 2), 7, "a+2000", 1),  # a repeated minute counts once
        (datetime(2026, 11, 28, 10, 9), 7, "a+2000", 9),
        (datetime(2026, 11, 28, 12, 0), 8, "a+2000", 0),
    ]
    watch = pa.Table.from_pylist(
        [
            {"time": t, "user_id": u, "movie_id": m, "minute": n, "partition": 0, "offset": i}
            for i, (t, u, m, n) in enumerate(rows)
        ],
        schema=WATCH,
    )
    sessions = sessions_of(watch).to_pylist()
    assert sessions == [
        {
            "user_id": 7,
            "movie_id": "a+2000",
            "first_time": datetime(2026, 11, 28, 10, 0),
            "last_time": datetime(2026, 11, 28, 10, 9),
            "max_minute": 9,
            "minutes_seen": 3,
        },
        {
            "user_id": 8,
            "movie_id": "a+2000",
            "first_time": datetime(2026, 11, 28, 12, 0),
            "last_time": datetime(2026, 11, 28, 12, 0),
            "max_minute": 0,
            "minutes_seen": 1,
        },
    ]
    assert sessions_of(WATCH.empty_table()).num_rows == 0


def test_a_batch_is_capped_fairly_across_partitions_and_nothing_is_skipped() -> None:
    ranges = [
        PartitionRange(0, 10, 1_010),
        PartitionRange(1, 0, 50),
        PartitionRange(2, 5, 905),
    ]
    capped = consume.cap_ranges(ranges, 600)
    assert sum(r.end - r.start for r in capped) == 600
    by_partition = {r.partition: r for r in capped}
    assert by_partition[1] == ranges[1]  # the small partition whole; its unused share goes to the others
    assert by_partition[0] == PartitionRange(0, 10, 285)
    assert by_partition[2] == PartitionRange(2, 5, 280)
    assert all(r.start == o.start for r, o in zip(capped, ranges, strict=True))  # each starts where it stood
    assert consume.cap_ranges(ranges, 10_000) == ranges  # under the cap: untouched


def test_watch_sessions_are_checked_and_a_broken_day_fails_loudly(tmp_path: Path) -> None:
    """Sessions are derived from rows that passed their checks; if a bad row slipped into the lake
    anyway (here written by hand, minute -5), the sessions task fails instead of spreading it."""
    from movierec import lake
    from movierec import settings as settings_module
    from movierec.ingest.quality import QualityError
    from movierec.ingest.watch_sessions import update_watch_sessions

    settings = settings_module.load({"MOVIEREC_HOME": str(tmp_path)})
    moment = datetime(2026, 11, 20, 10)
    good = [
        {"time": moment, "user_id": 7, "movie_id": "up+2009", "minute": m, "partition": 0, "offset": m}
        for m in range(3)
    ]
    path = lake.partition_dir(settings, "watch", moment) / lake.batch_file_name("b1")
    lake.write_parquet_atomically(pa.Table.from_pylist(good, schema=WATCH), path)
    report = update_watch_sessions(settings, "b1")
    assert (report["sessions"], report["quality_ok"]) == (1, True)

    bad = [*good, {**good[0], "user_id": 8, "minute": -5, "offset": 99}]
    lake.write_parquet_atomically(pa.Table.from_pylist(bad, schema=WATCH), path)
    with pytest.raises(QualityError, match="watch_session 2026-11-20"):
        update_watch_sessions(settings, "b1")
