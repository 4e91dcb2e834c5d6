"""A small lake for the learning tests, made the way production makes it, without Kafka.

The simulator's backfill writes a few days of movielog lines for a small world; the ingest's own
pure functions (``build_tables``, ``write_batch_files``) and ``update_watch_sessions`` turn them
into the lake's tables, and a committed ingest manifest records the (made-up) offsets, as a real
batch would. The catalog tables are filled from the world for most users and every movie (the
catalog may be partial: a tenth of the users stay unknown). The ground truth is used only by the
simulator to generate behaviour, never read back here.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa

from movierec import lake, schemas
from movierec import settings as settings_module
from movierec.ingest import catalog_sync, consume, watch_sessions
from movierec.settings import Settings

START = datetime(2026, 11, 20)
DAYS = 4
SESSIONS_PER_DAY = 3_000
USERS = 2_000
MOVIES = 300
PARTITIONS = 2


def learning_settings(home: Path, **extra: str) -> Settings:
    return settings_module.load(
        {
            "MOVIEREC_HOME": str(home),
            "MOVIEREC_SCALE_USERS": str(USERS),
            "MOVIEREC_SCALE_MOVIES": str(MOVIES),
            "MOVIEREC_SPARK_MASTER": "local[2]",
            "MOVIEREC_SPARK_DRIVER_MEMORY": "1g",
            "MOVIEREC_ALS_ITERATIONS": "5",
            "MOVIEREC_ALS_RANK": "32",
            "MOVIEREC_TEST_DAYS": "1",
            **extra,
        }
    )


def build_small_lake(settings: Settings, days: float = DAYS, sessions_per_day: int = SESSIONS_PER_DAY) -> int:
    """Fill ``settings``' lake with ``days`` of simulated history; returns the number of lines."""
    from simulator.backfill import run_backfill
    from simulator.catalog import load_world
    from simulator.history import History
    from simulator.truth import load_truth

    world = load_world(settings)
    history = History.build(world, load_truth(settings, world))
    records: list[consume.Record] = []

    def write(line: str | bytes, user_id: int) -> None:
        value = line.encode() if isinstance(line, str) else line
        partition = user_id % PARTITIONS  # keyed by user, as the producer does
        records.append(consume.Record(partition, len(records), 0, value))

    lines = run_backfill(
        history, write, seed=settings.seed, start=START, days=days, sessions_per_day=sessions_per_day
    )
    ends = {p: 0 for p in range(PARTITIONS)}
    for record in records:
        ends[record.partition] = max(ends[record.partition], record.offset + 1)
    ranges = [lake.PartitionRange(p, 0, end) for p, end in ends.items()]
    batch_id = consume.batch_id_for(settings.topic, ranges)
    tables = consume.build_tables(records)
    manifest = lake.Manifest(batch_id, settings.topic, ranges, planned_at=START.isoformat())
    manifest.files = consume.write_batch_files(settings, batch_id, tables)
    manifest.state = "committed"
    lake.save_manifest(settings, manifest)
    watch_sessions.update_watch_sessions(settings, batch_id)

    fetched = datetime(2026, 11, 25, tzinfo=UTC)
    movie_rows = [catalog_sync.movie_row(row["id"], row, fetched) for row in world.movies.to_pylist()]
    users = world.users_table().filter(pa.array([u % 10 != 0 for u in range(1, world.n_users + 1)]))
    users = users.append_column("fetched_at", pa.array([fetched] * users.num_rows, schemas.FETCHED_AT))
    lake.write_parquet_atomically(
        pa.Table.from_pylist(movie_rows, schema=schemas.MOVIES),
        lake.table_dir(settings, "movies") / "part-test.parquet",
    )
    lake.write_parquet_atomically(
        users.cast(schemas.USERS), lake.table_dir(settings, "users") / "part-test.parquet"
    )
    return lines
