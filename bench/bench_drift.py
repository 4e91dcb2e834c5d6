"""Drift check of one live-sized batch against a week of reference: seconds per phase, and the ratio
to a bare read of the reference's files (the I/O floor).

    .venv/bin/python bench/bench_drift.py [--days 7] [--sessions 3000] [--batch-minutes 10]

The lake is built as ingest builds it (build_tables, write_batch_files, watch sessions) from the
simulator's history in a temporary home: one continuous stream cut by time into one batch per
simulated day, then the live-sized batch after them.
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
from datetime import datetime, timedelta

import numpy as np

from movierec import lake
from movierec import settings as settings_module
from movierec.ingest import consume, drift, watch_sessions
from simulator.backfill import history_lines
from simulator.commands import load_history
from simulator.history import Line

START = datetime(2026, 11, 20)
PARTITIONS = 4

log = logging.getLogger("bench_drift")


def ingest_lines(
    settings: settings_module.Settings, lines: list[Line], offsets: dict[int, int], planned: datetime
) -> str:
    kafka_ms = int(planned.timestamp() * 1000)
    first, records = dict(offsets), []
    for _moment, user_id, line in lines:
        partition = user_id % PARTITIONS
        value = line.encode() if isinstance(line, str) else line
        records.append(consume.Record(partition, offsets[partition], kafka_ms, value))
        offsets[partition] += 1
    ranges = [lake.PartitionRange(p, first[p], offsets[p]) for p in offsets if offsets[p] > first[p]]
    manifest = lake.Manifest(consume.batch_id_for(settings.topic, ranges), settings.topic, ranges)
    manifest.planned_at = planned.isoformat(timespec="seconds")
    tables = consume.build_tables(records)
    manifest.files = consume.write_batch_files(settings, manifest.batch_id, tables)
    manifest.counts = {name: table.num_rows for name, table in tables.items()}
    manifest.state = "committed"
    lake.save_manifest(settings, manifest)
    watch_sessions.update_watch_sessions(settings, manifest.batch_id)
    return manifest.batch_id


def bare_read(settings: settings_module.Settings) -> int:
    """Every file of the tables the reference comes from, all columns: the I/O floor."""
    rows = 0
    for table in ("rate", "reco", "watch_session"):
        rows += lake.read_table(settings, table).num_rows
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--days", type=int, default=7, help="days of reference")
    parser.add_argument("--sessions", type=int, default=3000, help="sessions per simulated day")
    parser.add_argument("--batch-minutes", type=float, default=10.0)
    parser.add_argument("--users", type=int, default=20_000)
    parser.add_argument("--movies", type=int, default=3_000)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("movierec").setLevel(logging.WARNING)
    logging.getLogger("great_expectations").setLevel(logging.WARNING)

    with tempfile.TemporaryDirectory(prefix="bench-drift-") as home:
        settings = settings_module.load(
            {
                "MOVIEREC_HOME": home,
                "MOVIEREC_SCALE_USERS": str(args.users),
                "MOVIEREC_SCALE_MOVIES": str(args.movies),
                "MOVIEREC_DRIFT_REFERENCE_DAYS": str(args.days),
            }
        )
        history = load_history(settings)
        rng = np.random.default_rng(1)
        offsets = dict.fromkeys(range(PARTITIONS), 0)
        planned = datetime(2026, 12, 1)
        reference_end = START + timedelta(days=args.days, hours=19)  # an evening batch follows
        batch_end = reference_end + timedelta(minutes=args.batch_minutes)
        # one continuous stream, cut by time: the batch holds the minutes of sessions in progress too
        stream = history_lines(rng, history, START, args.days + 1, args.sessions)
        lines_total, day, chunk, batch = 0, 0, [], []
        for line in stream:
            if line[0] >= batch_end:
                break
            if line[0] >= reference_end:
                batch.append(line)
                continue
            if line[0] >= START + timedelta(days=day + 1):
                ingest_lines(settings, chunk, offsets, planned + timedelta(minutes=day))
                log.info("reference day %d: %d lines", day + 1, len(chunk))
                lines_total, day, chunk = lines_total + len(chunk), day + 1, []
            chunk.append(line)
        ingest_lines(settings, chunk, offsets, planned + timedelta(minutes=day))
        lines_total += len(chunk)
        batch_id = ingest_lines(settings, batch, offsets, planned + timedelta(days=1))
        log.info(
            "reference %d lines; batch %d lines (%g minutes)", lines_total, len(batch), args.batch_minutes
        )

        began = time.perf_counter()
        rows = bare_read(settings)
        floor = time.perf_counter() - began

        seconds = {}
        began = time.perf_counter()
        loaded = drift.load_batch(settings, batch_id)
        seconds["load batch"] = time.perf_counter() - began
        began = time.perf_counter()
        reference = drift.load_reference(settings, loaded)
        seconds["load reference"] = time.perf_counter() - began
        began = time.perf_counter()
        genres = drift.movie_genres(settings)
        verdicts = drift.compute_signals(loaded, reference, genres, frozenset(), settings.drift_psi_threshold)
        seconds["signals"] = time.perf_counter() - began
        began = time.perf_counter()
        report = drift.check_drift(settings, batch_id)  # everything, with the writes
        seconds["check_drift (all)"] = time.perf_counter() - began

        print(f"reference: {args.days} days, {lines_total} lines; reference tables {rows} rows")
        print(f"bare read of the reference tables: {floor:.3f} s (1.00x)")
        for phase, value in seconds.items():
            print(f"{phase:>20}: {value:.3f} s ({value / floor:.2f}x)")
        print(f"{'of which GX':>20}: {report['gx'].get('seconds', 0.0):.3f} s")
        print("drifted:", report["drifted"], "statuses:", {v.signal: v.status for v in verdicts})


if __name__ == "__main__":
    main()
