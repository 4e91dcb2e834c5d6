"""The lake's layout on its own: every table has a place and a schema, paths are found by name,
manifests round-trip, a failed write leaves nothing behind."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pyarrow as pa
import pytest

from movierec import lake
from movierec import settings as settings_module
from movierec.schemas import RATE, TABLES, USERS


@pytest.fixture
def settings(tmp_path: Path) -> settings_module.Settings:
    return settings_module.load({"MOVIEREC_HOME": str(tmp_path)})


def rates(moment: datetime, n: int) -> pa.Table:
    rows = [
        {"time": moment, "user_id": u, "movie_id": "m+2000", "rating": 4, "partition": 0, "offset": u}
        for u in range(n)
    ]
    return pa.Table.from_pylist(rows, schema=RATE)


def test_every_table_has_a_folder_under_the_one_root_and_unknown_names_are_refused(
    settings: settings_module.Settings, tmp_path: Path
) -> None:
    assert {"users", "movies", "catalog_unknown", "watch", "watch_session", "drift"} <= set(TABLES)
    for table in TABLES:
        assert lake.table_dir(settings, table) == tmp_path / "lake" / table
    with pytest.raises(KeyError, match="no lake table 'ratings'"):
        lake.table_dir(settings, "ratings")


def test_partitions_and_days(settings: settings_module.Settings) -> None:
    moment = datetime(2026, 11, 28, 7, 15)
    hour = lake.partition_dir(settings, "rate", moment)
    assert hour.relative_to(lake.lake_dir(settings)) == Path("rate/date=2026-11-28/hour=07")
    path = hour / lake.batch_file_name("b1")
    assert lake.day_of(path) == "2026-11-28"
    assert lake.day_of("watch/date=2026-11-29/hour=23/part-x.parquet") == "2026-11-29"
    assert lake.relative_path(settings, path) == "rate/date=2026-11-28/hour=07/part-b1.parquet"
    with pytest.raises(ValueError, match="not in a date= partition"):
        lake.day_of("users/part-x.parquet")


def test_files_are_found_by_table_day_window_and_batch(settings: settings_module.Settings) -> None:
    for day, batch in ((26, "a"), (27, "a"), (27, "b"), (29, "b")):
        moment = datetime(2026, 11, day, 10)
        path = lake.partition_dir(settings, "rate", moment) / lake.batch_file_name(batch)
        lake.write_parquet_atomically(rates(moment, 3), path)
    names = [lake.relative_path(settings, p) for p in lake.table_files(settings, "rate")]
    assert len(names) == 4 and names == sorted(names)
    assert [lake.day_of(p) for p in lake.batch_files(settings, "rate", "b")] == ["2026-11-27", "2026-11-29"]
    assert len(lake.day_files(settings, "rate", "2026-11-27")) == 2
    window = lake.files_between(settings, "rate", "2026-11-27", "2026-11-28", skip_name="part-a.parquet")
    assert [lake.day_of(p) for p in window] == ["2026-11-27"]
    assert lake.read_table(settings, "rate").num_rows == 12
    assert lake.read_table(settings, "users").schema.equals(USERS)  # nothing written yet: empty, typed
    assert lake.files_between(settings, "drift", "2026-01-01", "2027-01-01") == []


def test_a_failed_write_leaves_no_file(
    settings: settings_module.Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    def half_written(table: pa.Table, where: Path, **options: object) -> None:
        Path(where).write_bytes(b"PAR1 and then the disk filled up")
        raise OSError("No space left on device")

    path = lake.table_dir(settings, "users") / lake.batch_file_name("run1")
    monkeypatch.setattr(lake.pq, "write_table", half_written)  # a real failure would be a full disk
    with pytest.raises(OSError, match="No space left"):
        lake.write_parquet_atomically(USERS.empty_table(), path)
    assert list(path.parent.iterdir()) == []


def test_manifests_round_trip(settings: settings_module.Settings) -> None:
    assert not lake.has_manifests(settings) and lake.load_manifest(settings, "x") is None
    manifest = lake.Manifest(
        "000000000003-abc", "movielog1", [lake.PartitionRange(0, 3, 10), lake.PartitionRange(1, 0, 5)]
    )
    manifest.files = {"rate": [{"path": "rate/date=2026-11-28/hour=07/part-x.parquet", "rows": 3}]}
    lake.save_manifest(settings, manifest)
    manifest.state = "committed"
    lake.save_manifest(settings, manifest)  # replaced, not appended
    assert lake.has_manifests(settings)
    assert lake.load_manifest(settings, manifest.batch_id) == manifest
    assert lake.load_manifests(settings) == [manifest]
    assert manifest.lines == 12
