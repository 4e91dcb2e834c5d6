"""prepare with real Spark (local[2]) on a small simulated lake: the split leaks nothing from after T,
the id index is contiguous and invertible, the strength formula, the contract files and the manifest.

Leakage probes are planted in the lake before prepare runs: a rating of 1 after T on a pair watched
before T (if it leaked, that pair's training strength would drop below its watch share) and a
movie watched only after T (if it leaked, it would appear in the training pairs).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from movierec import lake, serving_file
from movierec.files import sha256_of
from movierec.models import registry, versions
from movierec.schemas import RATE, WATCH_SESSION
from movierec.settings import Settings
from spark_jobs import files
from spark_jobs.prepare import (
    FEATURE_STRENGTH,
    PrepareError,
    demographic_features,
    prepare,
    split_time,
    strength,
)
from spark_jobs.session import build_session
from tests.learning_data import build_small_lake, learning_settings

pytestmark = pytest.mark.slow

VERSION = "20261125T000000Z"
PROBE_MOVIE = "leak+probe+2026"


@pytest.fixture(scope="module")
def spark(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    session = build_session(learning_settings(tmp_path_factory.mktemp("spark")), "test-prepare")
    yield session
    session.stop()


def lake_bounds(settings: Settings) -> tuple[datetime, datetime]:
    sessions = lake.read_table(settings, "watch_session")
    rates = lake.read_table(settings, "rate")
    end = max(pc.max(sessions["last_time"]).as_py(), pc.max(rates["time"]).as_py())
    return pc.min(sessions["first_time"]).as_py(), end


@pytest.fixture(scope="module")
def prepared(spark: Any, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    settings = learning_settings(tmp_path_factory.mktemp("home"))
    build_small_lake(settings)
    _start, end = lake_bounds(settings)
    cut = split_time(end, settings.test_days)
    sessions = lake.read_table(settings, "watch_session")
    before = sessions.filter(pc.less(sessions["last_time"], cut))
    probe_user, probe_movie = before["user_id"][0].as_py(), before["movie_id"][0].as_py()
    after = cut + timedelta(hours=1)
    rate = pa.Table.from_pylist(
        [{"time": after, "user_id": probe_user, "movie_id": probe_movie, "rating": 1, "partition": 0,
          "offset": 10**9}], schema=RATE,
    )  # fmt: skip
    lake.write_parquet_atomically(rate, lake.partition_dir(settings, "rate", after) / "part-probe.parquet")
    session = pa.Table.from_pylist(
        [{"user_id": probe_user, "movie_id": PROBE_MOVIE, "first_time": after,
          "last_time": after + timedelta(minutes=30), "max_minute": 29, "minutes_seen": 30}],
        schema=WATCH_SESSION,
    )  # fmt: skip
    day = lake.table_dir(settings, "watch_session") / f"date={after:%Y-%m-%d}" / "part-probe.parquet"
    lake.write_parquet_atomically(session, day)
    report = prepare(spark, settings, VERSION)
    return {"settings": settings, "report": report, "cut": cut, "probe": (probe_user, probe_movie)}


def read_dir(path: Path) -> pa.Table:
    return pq.read_table(path)


def test_split_time_is_the_nearest_midnight_test_days_before_the_data_end() -> None:
    assert split_time(datetime(2026, 11, 24, 2, 8), 1) == datetime(2026, 11, 23)
    assert split_time(datetime(2026, 11, 24, 13, 0), 1) == datetime(2026, 11, 24)
    assert split_time(datetime(2026, 11, 24, 23, 59), 2) == datetime(2026, 11, 23)
    with pytest.raises(PrepareError, match="test_days"):
        split_time(datetime(2026, 11, 24), 0)


def test_strength_formula_on_hand_computed_rows(spark: Any) -> None:
    from pyspark.sql import functions as F

    rows = [  # minutes, runtime, rating, expected strength
        (50, 100, None, 0.5),  # half watched
        (150, 100, 5, 1.5),  # capped at 1 (a rewatch does not count twice), + 0.5 for a 5
        (10, 100, 1, 0.1 - 0.5),  # left early and rated 1: a confident negative
        (None, 100, 4, 0.25),  # rated only
        (None, 100, 3, 0.0),  # a 3 alone says nothing
        (100, 100, 2, 0.75),
    ]
    frame = spark.createDataFrame(
        [(m, r, g) for m, r, g, _ in rows], "minutes int, runtime int, rating byte"
    ).withColumn("s", strength(F.col("minutes") / F.col("runtime"), F.col("rating")))
    got = [row["s"] for row in frame.collect()]
    assert got == pytest.approx([expected for *_, expected in rows], abs=1e-6)


def test_training_data_holds_nothing_from_after_t(prepared: dict[str, Any]) -> None:
    settings, cut = prepared["settings"], prepared["cut"]
    prep = versions.prepared_dir(settings, VERSION)
    train = read_dir(prep / "train.parquet")
    assert train.num_rows > 0
    assert pc.max(train["last_time"]).as_py() < cut
    movies = pq.read_table(versions.model_dir(settings, VERSION) / versions.MOVIES_FILE)
    users = pq.read_table(versions.model_dir(settings, VERSION) / versions.USERS_FILE)
    probe_iidx = movies.filter(pc.equal(movies["movie_id"], PROBE_MOVIE))["iidx"][0].as_py()
    assert probe_iidx not in set(train["iidx"].to_pylist())  # watched only after T: not in training
    # the rating of 1 after T did not touch the pair's training strength (still its watch share > 0)
    user, movie = prepared["probe"]
    uidx = users.filter(pc.equal(users["user_id"], user))["uidx"][0].as_py()
    iidx = movies.filter(pc.equal(movies["movie_id"], movie))["iidx"][0].as_py()
    pair = train.filter(pc.and_(pc.equal(train["uidx"], uidx), pc.equal(train["iidx"], iidx)))
    assert pair.num_rows == 1 and pair["strength"][0].as_py() > 0
    # while all data (what the served refit learns from) does see it
    every = read_dir(prep / "all.parquet")
    seen_pair = every.filter(pc.and_(pc.equal(every["uidx"], uidx), pc.equal(every["iidx"], iidx)))
    assert seen_pair["strength"][0].as_py() < pair["strength"][0].as_py()
    # and the popularity-style features before T cannot count it either: the probe movie is a test item
    test = read_dir(prep / "test.parquet")
    assert (uidx, probe_iidx) in set(zip(test["uidx"].to_pylist(), test["iidx"].to_pylist(), strict=True))


def test_test_pairs_are_new_to_the_user(prepared: dict[str, Any]) -> None:
    prep = versions.prepared_dir(prepared["settings"], VERSION)
    train = read_dir(prep / "train.parquet")
    test = read_dir(prep / "test.parquet")
    before = set(zip(train["uidx"].to_pylist(), train["iidx"].to_pylist(), strict=True))
    after = set(zip(test["uidx"].to_pylist(), test["iidx"].to_pylist(), strict=True))
    assert after and not (after & before)


def test_a_test_pair_is_listed_when_a_list_shown_before_held_the_movie(prepared: dict[str, Any]) -> None:
    settings, cut = prepared["settings"], prepared["cut"]
    folder = versions.model_dir(settings, VERSION)
    users = pq.read_table(folder / versions.USERS_FILE).to_pylist()
    movies = pq.read_table(folder / versions.MOVIES_FILE).to_pylist()
    user_of, movie_of = {r["uidx"]: r["user_id"] for r in users}, {r["iidx"]: r["movie_id"] for r in movies}
    # by hand from the lake: when each pair was first taken up after T, when first listed (status 200)
    first: dict[tuple[int, str], datetime] = {}
    for row in lake.read_table(settings, "watch_session").to_pylist():
        if row["first_time"] >= cut:
            key = (row["user_id"], row["movie_id"])
            first[key] = min(first.get(key, row["first_time"]), row["first_time"])
    for row in lake.read_table(settings, "rate").to_pylist():
        if row["time"] >= cut:
            key = (row["user_id"], row["movie_id"])
            first[key] = min(first.get(key, row["time"]), row["time"])
    shown: dict[tuple[int, str], datetime] = {}
    for row in lake.read_table(settings, "reco").to_pylist():
        for movie in row["items"] if row["status"] == 200 else []:
            key = (row["user_id"], movie)
            shown[key] = min(shown.get(key, row["time"]), row["time"])

    test = pq.read_table(versions.prepared_dir(settings, VERSION) / "test.parquet").to_pylist()
    flags = []
    for row in test:
        key = (user_of[row["uidx"]], movie_of[row["iidx"]])
        assert row["listed"] == (key in shown and shown[key] <= first[key]), key
        flags.append(row["listed"])
    assert True in flags and False in flags  # both kinds occur in this lake
    assert prepared["report"]["test_pairs_listed"] == sum(flags)


def test_the_index_is_contiguous_sorted_and_invertible(prepared: dict[str, Any]) -> None:
    settings = prepared["settings"]
    folder = versions.model_dir(settings, VERSION)
    users = pq.read_table(folder / versions.USERS_FILE)
    movies = pq.read_table(folder / versions.MOVIES_FILE)
    assert users.schema.field("user_id").type == pa.int64() and users.schema.field("uidx").type == pa.int32()
    assert (
        movies.schema.field("movie_id").type == pa.string() and movies.schema.field("iidx").type == pa.int32()
    )
    assert users["uidx"].to_pylist() == list(range(users.num_rows))
    assert movies["iidx"].to_pylist() == list(range(movies.num_rows))
    ids = users["user_id"].to_pylist()
    assert ids == sorted(set(ids))  # one index per id, so id -> uidx -> id round-trips
    lake_users = set(lake.read_table(settings, "watch_session")["user_id"].to_pylist()) | set(
        lake.read_table(settings, "rate")["user_id"].to_pylist()
    )
    catalog = set(lake.read_table(settings, "users")["user_id"].to_pylist())
    assert catalog - lake_users  # catalog users without history are in the index too
    assert set(ids) == lake_users | catalog
    counts = prepared["report"]
    assert (counts["users"], counts["users_with_history"], counts["catalog_users"]) == (
        len(lake_users | catalog),
        len(lake_users),
        len(catalog),
    )
    assert PROBE_MOVIE in set(movies["movie_id"].to_pylist())
    seen = pq.read_table(folder / versions.SEEN_FILE)
    assert seen.schema.field("uidx").type == pa.int32()
    assert seen.num_rows == prepared["report"]["interactions"]
    assert pc.max(seen["uidx"]).as_py() < users.num_rows and pc.max(seen["iidx"]).as_py() < movies.num_rows


def test_demographic_features_on_hand_made_users(spark: Any) -> None:
    users = spark.createDataFrame(
        [(0, 30, "F", "writer"), (1, 30, None, "writer"), (2, None, None, None), (3, 70, "M", "retired")],
        "uidx int, age short, gender string, occupation string",
    )
    rows, index = demographic_features(users, first_iidx=100)
    names = {row["feature"]: row["iidx"] for row in index.collect()}
    assert names == {  # sorted names numbered from the movie count
        name: 100 + i
        for i, name in enumerate(
            sorted(
                [
                    "age=25-34", "age=56+", "gender=F", "gender=M", "occupation=retired",
                    "occupation=writer", "age x gender=25-34/F", "age x gender=56+/M",
                ]
            )
        )
    }  # fmt: skip
    got: dict[int, set[int]] = {}
    for row in rows.collect():
        assert row["strength"] == FEATURE_STRENGTH
        got.setdefault(row["uidx"], set()).add(row["iidx"])
    assert got == {
        0: {names["age=25-34"], names["gender=F"], names["occupation=writer"], names["age x gender=25-34/F"]},
        1: {names["age=25-34"], names["occupation=writer"]},  # no gender: no gender, no age x gender
        3: {names["age=56+"], names["gender=M"], names["occupation=retired"], names["age x gender=56+/M"]},
    }  # user 2: nothing known, no rows


def test_feature_rows_point_past_the_movies(prepared: dict[str, Any]) -> None:
    folder = versions.model_dir(prepared["settings"], VERSION)
    movies = pq.read_metadata(folder / versions.MOVIES_FILE).num_rows
    users = pq.read_metadata(folder / versions.USERS_FILE).num_rows
    prepared_dir = versions.prepared_dir(prepared["settings"], VERSION)
    index = pq.read_table(prepared_dir / "feature_index.parquet")
    rows = read_dir(prepared_dir / "user_features.parquet")
    assert index.num_rows > 0 and pc.min(index["iidx"]).as_py() == movies
    assert sorted(index["iidx"].to_pylist()) == list(range(movies, movies + index.num_rows))
    assert set(rows["iidx"].to_pylist()) <= set(index["iidx"].to_pylist())
    assert pc.max(rows["uidx"]).as_py() < users
    params = files.read_json(folder / versions.PARAMS_FILE)
    assert params["counts"]["users_with_features"] == len(set(rows["uidx"].to_pylist())) > 0


def test_contract_files_fallback_and_params(prepared: dict[str, Any]) -> None:
    folder = versions.model_dir(prepared["settings"], VERSION)
    fallback = files.read_json(folder / versions.FALLBACK_FILE)["items"]
    movies = set(pq.read_table(folder / versions.MOVIES_FILE)["movie_id"].to_pylist())
    assert len(fallback) == 20 and len(set(fallback)) == 20 and set(fallback) <= movies
    params = files.read_json(folder / versions.PARAMS_FILE)
    assert params["split_time"] == prepared["cut"].isoformat()
    assert params["counts"]["test_users"] > 0


def test_the_fallback_before_t_is_the_most_recent_viewers_before_t(prepared: dict[str, Any]) -> None:
    """What evaluate gives users without factors, counted by hand from the training pairs."""
    folder = versions.prepared_dir(prepared["settings"], VERSION)
    train = pq.read_table(folder / "train.parquet").to_pylist()
    since = prepared["cut"] - timedelta(days=7)
    viewers: dict[int, set[int]] = {}
    for row in train:
        if row["strength"] > 0 and since <= row["last_time"] < prepared["cut"]:
            viewers.setdefault(row["iidx"], set()).add(row["uidx"])
    want = sorted(viewers, key=lambda iidx: (-len(viewers[iidx]), iidx))[:20]
    assert files.read_json(folder / versions.FALLBACK_BEFORE_T)["iidx"] == want


def test_the_data_manifest_lists_every_file_read_with_its_checksum_and_offsets(
    prepared: dict[str, Any],
) -> None:
    settings = prepared["settings"]
    manifest = files.read_json(versions.model_dir(settings, VERSION) / versions.DATA_MANIFEST_FILE)
    root = lake.lake_dir(settings)
    listed = {entry["path"] for entries in manifest["files"].values() for entry in entries}
    on_disk = {
        str(p.relative_to(root))
        for table in ("watch_session", "rate", "reco", "users", "movies", "shilling_flags")
        for p in (root / table).rglob("part-*.parquet")
    }
    assert listed == on_disk
    for entries in manifest["files"].values():
        for entry in entries:
            assert entry["sha256"] == sha256_of(root / entry["path"])
    assert manifest["kafka_offsets"] and len(manifest["batches"]) == 1
    sessions = manifest["files"]["watch_session"]
    assert all(e["from_batches"] == manifest["batches"] for e in sessions if "probe" not in e["path"])


def test_an_empty_lake_is_a_clear_error(spark: Any, tmp_path: Path) -> None:
    with pytest.raises(PrepareError, match="no watch_session or rate rows"):
        prepare(spark, learning_settings(tmp_path), VERSION)


def test_a_version_is_made_afresh_unless_it_was_published(spark: Any, tmp_path: Path) -> None:
    """A retried or cleared run replaces what an earlier attempt left; a published version stays."""
    settings = learning_settings(tmp_path)
    left = [
        versions.model_dir(settings, VERSION) / "candidates" / "old" / "train.json",
        versions.report_dir(settings, VERSION) / versions.REPORT_JSON,
        serving_file.file_path(settings.serving_dir, VERSION),  # precomputed, never published
        serving_file.file_path(settings.serving_dir, f"{VERSION}-als_r16"),  # a challenger's
    ]
    for path in left:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("{}")
    with pytest.raises(PrepareError, match="no watch_session or rate rows"):  # empty lake: fails later
        prepare(spark, settings, VERSION)
    assert not any(path.exists() for path in left)

    for path in left:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("{}")
    record = {"action": "publish", "version": VERSION}  # the registry's log, as publish writes it
    (settings.serving_dir / registry.LOG_NAME).write_text(json.dumps(record) + "\n")
    with pytest.raises(PrepareError, match=f"version {VERSION} was published"):
        prepare(spark, settings, VERSION)
    assert all(path.exists() for path in left)
