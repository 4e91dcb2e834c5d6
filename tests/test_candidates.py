"""The model interface (movierec/models/candidates): every kind fits with real Spark (local[2]) on a
planted window, saves, and loads back what the protocol promises; train.json entries rebuild the
same candidate; popularity counts what it says on planted rows."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from movierec.models import candidates
from movierec.models.candidates.popularity import most_popular, recent_viewers

pytestmark = pytest.mark.slow

UNTIL = datetime(2026, 11, 23)
RECENT, OLD = UNTIL - timedelta(days=1), UNTIL - timedelta(days=8)
MOVIES = 6  # iidx 0..5 are movies; 6 and 7 are demographic pseudo-items
# Planted: movie 1 has 3 recent viewers, movie 2 has 2 (one of them twice), movie 3 only a dislike,
# movie 4 only viewers older than the 7 days, movie 5 a viewer at the window's end (outside it).
ROWS = [
    (1, 1, 1.0, RECENT), (2, 1, 0.5, RECENT), (3, 1, 0.1, RECENT),
    (1, 2, 1.0, RECENT), (1, 2, 1.0, RECENT - timedelta(hours=1)), (4, 2, 0.7, RECENT),
    (5, 3, -0.4, RECENT),
    (6, 4, 1.0, OLD), (7, 4, 1.0, OLD),
    (8, 5, 1.0, UNTIL),
    (2, 0, 0.9, RECENT), (3, 0, 0.8, RECENT), (4, 3, 0.6, RECENT), (6, 1, 0.2, OLD),
]  # fmt: skip
USERS = sorted({row[0] for row in ROWS})
FEATURE_USER = 9  # has features but no interaction in the window: no factors from the window
FEATURES = [(u, 6 + u % 2, 3.0) for u in [*USERS, FEATURE_USER]]


@pytest.fixture(scope="module")
def window(spark: Any) -> candidates.TrainingWindow:
    interactions = spark.createDataFrame(ROWS, "uidx int, iidx int, strength float, last_time timestamp_ntz")
    features = spark.createDataFrame(FEATURES, "uidx int, iidx int, strength double")
    demographics = spark.createDataFrame(
        [(u, "25-34", "FM"[u % 2], "writer") for u in [*USERS, FEATURE_USER]],
        "uidx int, age_band string, gender string, occupation string",
    )
    return candidates.TrainingWindow("before_t", interactions, UNTIL, features, MOVIES, demographics)


def test_popularity_counts_distinct_positive_viewers_in_the_recent_window(window: Any) -> None:
    got = {row["iidx"]: row["viewers"] for row in recent_viewers(window.interactions, UNTIL).collect()}
    assert got == {0: 2, 1: 3, 2: 2, 3: 1}
    assert most_popular(recent_viewers(window.interactions, UNTIL), 3) == [1, 0, 2]  # tie 0/2: lower index


def fitted(spark: Any, candidate: candidates.Candidate, window: Any, folder: Path) -> candidates.Factors:
    candidate.fit(spark, window).save(folder)
    assert folder.is_dir()
    rebuilt = candidates.from_entry(candidates.train_entry(candidate, {}))
    assert rebuilt == candidate and type(rebuilt) is type(candidate)
    return rebuilt.load(folder)


def check_protocol(spark: Any, factors: candidates.Factors, window: Any) -> tuple[np.ndarray, np.ndarray]:
    """What every Factors promises: ascending movie ids with float32 rows of one rank, users of the
    query only, the same users in the Spark frame, a positive stored size."""
    ids, items = factors.items()
    assert ids.tolist() == sorted(ids.tolist()) and ids.max() < MOVIES
    assert items.dtype == np.float32 and items.shape == (len(ids), factors.rank)
    asked = np.array([*USERS, FEATURE_USER, 99])
    users, matrix = factors.users(asked)
    assert set(users.tolist()) <= set(asked.tolist())
    assert matrix.dtype == np.float32 and matrix.shape == (len(users), factors.rank)
    everyone = spark.createDataFrame([(u,) for u in asked.tolist()], "uidx int")
    frame = factors.user_frame(spark, everyone).collect()
    assert {row["id"] for row in frame} >= set(users.tolist()) - {99}
    assert all(len(row["features"]) == factors.rank for row in frame)
    assert factors.stored_rows > 0
    return users, matrix


def test_popularity_is_a_rank_1_factorisation_of_the_viewer_counts(
    spark: Any, window: Any, tmp_path: Path
) -> None:
    factors = fitted(spark, candidates.Popularity(), window, tmp_path / "popularity")
    users, matrix = check_protocol(spark, factors, window)
    ids, items = factors.items()
    assert dict(zip(ids.tolist(), items[:, 0].tolist(), strict=True)) == {0: 2, 1: 3, 2: 2, 3: 1}
    assert len(users) == len(USERS) + 2 and np.all(matrix == 1)  # everyone scores the same counts
    assert factors.stored_rows == 4


def test_als_gives_factors_to_the_window_s_users_and_movies_only(
    spark: Any, window: Any, tmp_path: Path
) -> None:
    common = {"rank": 3, "reg": 0.1, "alpha": 5.0, "iterations": 3, "seed": 7}
    plain = fitted(spark, candidates.ALS("als_r3", **common), window, tmp_path / "plain")
    demo = fitted(spark, candidates.ALSWithFeatures("als_r3_demo", **common), window, tmp_path / "demo")
    movies = sorted({row[1] for row in ROWS})
    factors_of = {}
    for name, factors in (("plain", plain), ("demo", demo)):
        users, matrix = check_protocol(spark, factors, window)
        assert factors.rank == 3
        assert sorted(users.tolist()) == USERS  # not the feature-only user, not the unknown one
        assert factors.items()[0].tolist() == movies  # the pseudo-items shaped the fit, are not saved
        factors_of[name] = dict(zip(users.tolist(), matrix.tolist(), strict=True))
    # same seed, rank and interactions: only the feature rows can make the factors differ
    assert any(factors_of["plain"][u] != pytest.approx(factors_of["demo"][u], abs=1e-4) for u in USERS)


def test_a_train_entry_of_an_unknown_kind_is_a_clear_error() -> None:
    with pytest.raises(
        ValueError,
        match=r"unknown candidate kind 'nope' \(known: als, als_features, group_popularity, popularity",
    ):
        candidates.from_entry({"kind": "nope", "name": "x", "params": {}})
    with pytest.raises(ValueError, match="not a candidate name"):
        candidates.Popularity(name="Bad Name")


def test_group_popularity_is_a_one_hot_of_the_user_s_group_against_counts_per_group(
    spark: Any, window: Any, tmp_path: Path
) -> None:
    """Odd users are M, even F (all 25-34 writers). Recent positive viewers, counted by hand:
    M (1, 3): movie 0 1, movie 1 2, movie 2 1; F (2, 4): movies 0, 1, 2, 3 one each. Everyone:
    0 2, 1 3, 2 2, 3 1; a group's score adds everyone's count / (3 + 1) to break its ties."""
    factors = fitted(spark, candidates.GroupPopularity(min_viewers=2), window, tmp_path / "groups")
    users, matrix = check_protocol(spark, factors, window)
    assert factors.rank == 3  # everyone, 25-34/F/writer, 25-34/M/writer
    assert sorted(users.tolist()) == sorted([*USERS, FEATURE_USER])  # every catalog user, not 99
    group = dict(zip(users.tolist(), matrix.argmax(1).tolist(), strict=True))
    assert np.all(matrix.sum(1) == 1) and {group[u] for u in USERS if u % 2} == {2}
    assert {group[u] for u in USERS if u % 2 == 0} == {1} and group[FEATURE_USER] == 2
    ids, items = factors.items()
    assert ids.tolist() == [0, 1, 2, 3]
    tie = np.array([2, 3, 2, 1]) / 4
    assert items[:, 0] == pytest.approx(np.array([2, 3, 2, 1]) + tie)
    assert items[:, 1] == pytest.approx(np.array([1, 1, 1, 1]) + tie)
    assert items[:, 2] == pytest.approx(np.array([1, 2, 1, 0]) + tie)
    # with the default minimum every group is too small: everyone's popularity, as the candidate's
    backed_off = fitted(spark, candidates.GroupPopularity(), window, tmp_path / "backed-off")
    assert backed_off.rank == 1
    assert backed_off.items()[1][:, 0] == pytest.approx(np.array([2, 3, 2, 1]) + tie)


def test_group_popularity_without_any_catalog_user_is_global_popularity(
    spark: Any, window: Any, tmp_path: Path
) -> None:
    """The first retrain can run before the catalog fetched anyone: one group, everyone's counts."""
    nobody = window.demographics.limit(0)
    empty = candidates.TrainingWindow(
        window.name, window.interactions, window.until, window.user_features, MOVIES, nobody
    )
    factors = fitted(spark, candidates.GroupPopularity(min_viewers=1), empty, tmp_path / "nobody")
    users, matrix = check_protocol(spark, factors, empty)
    assert factors.rank == 1 and np.all(matrix == 1)
    assert sorted(users.tolist()) == [1, 2, 3, 4, 5, 6, 7, 8]  # the window's users, none else
    assert factors.items()[1][:, 0] == pytest.approx(np.array([2, 3, 2, 1]) * (1 + 1 / 4))


def test_als_blocks_are_one_per_core_on_small_data_and_spark_s_default_on_big() -> None:
    from movierec.models.candidates.als import SMALL_DATA_ROWS, block_count

    assert block_count(290_000, cores=2) == 2  # make up's first model on this box
    assert block_count(290_000, cores=1) == 2  # never fewer than 2
    assert block_count(290_000, cores=4) == 4
    assert block_count(290_000, cores=64) == 10  # never more than Spark's default
    assert block_count(SMALL_DATA_ROWS - 1, cores=2) == 2
    assert block_count(SMALL_DATA_ROWS, cores=2) == 10  # full scale keeps Spark's default
    assert block_count(30_000_000, cores=64) == 10


def test_als_fits_in_the_blocks_it_is_given_or_in_block_count_s(
    spark: Any, window: Any, tmp_path: Path
) -> None:
    """ALS keeps a factor partition per user block, and saves a file per non-empty one (and the
    first): users 1..8 are hashed by id into blocks, so 10 blocks give a file per user at least,
    3 blocks 3 files, and local[2]'s block_count (2) 2 files."""
    assert spark.sparkContext.defaultParallelism == 2
    common = {"rank": 3, "reg": 0.1, "alpha": 5.0, "iterations": 2, "seed": 7}
    files = {}
    for blocks in (0, 3, 10):
        folder = tmp_path / f"blocks{blocks}"
        candidates.ALS("als_r3", blocks=blocks, **common).fit(spark, window).save(folder)
        files[blocks] = len(list((folder / "userFactors").glob("part-*.parquet")))
    assert files[0] == 2 and files[3] == 3 and files[10] >= len(USERS)
