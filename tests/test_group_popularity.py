"""Group popularity and lists for every catalog user, with real Spark (local[2]) on a tiny lake
written by hand, so every expected list below is counted by hand from the rows planted here.

The lake: four groups of the catalog (age band / gender / occupation), a user with history the
catalog lacks, catalog users with no history at all, and a newcomer whose only watch is after T.
With ``min_viewers`` 3: the writers and the doctors are big enough; the one artist backs off to
25-34/F, the one retiree (and a user whose gender the catalog lacks) to everyone.
"""

from __future__ import annotations

import json
import math
import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from movierec import lake, schemas, serving_file
from movierec.models import candidates, registry, versions
from movierec.models.candidates.group_popularity import back_off, numbered
from spark_jobs import files
from spark_jobs.evaluate import evaluate
from spark_jobs.precompute import precompute
from spark_jobs.prepare import prepare
from spark_jobs.session import build_session
from spark_jobs.train import train
from tests.learning_data import learning_settings

pytestmark = pytest.mark.slow

VERSION = "20261124T000000Z"
MIN_VIEWERS = 3
BEFORE = datetime(2026, 11, 21, 12)  # T = 2026-11-22 00:00 (data end 11-23 10:30, one test day)
AFTER = datetime(2026, 11, 23, 10)
WRITER, DOCTOR = ("30", "F", "writer"), ("20", "M", "doctor")  # 25-34 and 18-24
ARTIST, RETIREE = ("30", "F", "artist"), ("60", "M", "retired")  # 25-34 and 56+
# user -> (age, gender, occupation) as the catalog has them; 9 is not in the catalog
CATALOG = {
    1: WRITER, 2: WRITER, 3: WRITER,
    4: DOCTOR, 5: DOCTOR, 6: DOCTOR, 107: DOCTOR,
    7: ARTIST,
    8: RETIREE,
    # no history at all:
    101: WRITER, 102: DOCTOR, 103: ARTIST, 104: RETIREE, 106: ("30", None, "writer"),
}  # fmt: skip
WATCHED = [  # (user, movie, when)
    (1, "m1", BEFORE), (1, "m2", BEFORE), (2, "m1", BEFORE), (2, "m2", BEFORE), (3, "m1", BEFORE),
    (3, "m5", BEFORE),
    (4, "m3", BEFORE), (4, "m4", BEFORE), (5, "m3", BEFORE), (5, "m4", BEFORE), (6, "m3", BEFORE),
    (6, "m6", BEFORE),
    (7, "m6", BEFORE), (8, "m4", BEFORE), (9, "m2", BEFORE),
    (1, "m3", AFTER), (107, "m4", AFTER - timedelta(hours=1)),  # the test window
]  # fmt: skip
MOVIES = ["m1", "m2", "m3", "m4", "m5", "m6"]
NO_HISTORY = [101, 102, 103, 104, 106]

# Counted by hand on all data (what is served). Distinct recent viewers per movie:
#   everyone (10 viewers)  m1 3 (1,2,3), m2 3 (1,2,9), m3 4 (1,4,5,6), m4 4 (4,5,8,107), m5 1, m6 2
#   writers (3 viewers)    m1 3, m2 2, m3 1, m5 1
#   doctors (4 viewers)    m3 3, m4 3, m6 1
#   artist (1 viewer) -> 25-34/F = writers + artist (4 viewers): m1 3, m2 2, m3 1, m5 1, m6 1
#   retiree (1) -> 56+/M (1) -> everyone; 106 (gender unknown: 0 viewers) -> everyone
# Ties within a group go to the higher global count, then to the lower movie index.
EVERYONE_LIST = ["m3", "m4", "m1", "m2", "m6", "m5"]
GROUP_LIST = {
    101: ["m1", "m2", "m3", "m5", "m4", "m6"],  # writers: m3 before m5 on global viewers (4 > 1)
    102: ["m3", "m4", "m6", "m1", "m2", "m5"],  # doctors: m3/m4 and m1/m2 tie, lower index first
    103: ["m1", "m2", "m3", "m6", "m5", "m4"],  # 25-34/F
    104: EVERYONE_LIST,
    106: EVERYONE_LIST,
}
# Before T (evaluated): doctors m3 3, m4 2, m6 1 (3 viewers), so the newcomer 107 is listed m3, m4,
# m6, m1, m2, m5: its one relevant movie m4 second (global popularity before T would put it 4th:
# m1, m2, m3, m4 all have 3 viewers).
NEWCOMER_LIST_BEFORE_T = ["m3", "m4", "m6", "m1", "m2", "m5"]


def test_back_off_keeps_big_groups_and_backs_small_ones_off_to_coarser_then_everyone() -> None:
    viewers = {
        ("25-34", "F", "writer"): 120,  # big enough on its own
        ("25-34", "F", "artist"): 5,  # small, but 25-34/F has 125: backs off one level
        ("56+", "M", "retired"): 40,  # small, and so is 56+/M (40 + 30): everyone
        ("56+", "M", "doctor"): 30,
        ("18-24", "M", "lawyer"): 0,  # nobody viewed: everyone
    }
    assert back_off(viewers, 100) == {
        ("25-34", "F", "writer"): ("age x gender x occupation", "25-34/F/writer"),
        ("25-34", "F", "artist"): ("age x gender", "25-34/F"),
        ("56+", "M", "retired"): ("everyone", "all"),
        ("56+", "M", "doctor"): ("everyone", "all"),
        ("18-24", "M", "lawyer"): ("everyone", "all"),
    }
    assert back_off(viewers, 70)[("56+", "M", "doctor")] == ("age x gender", "56+/M")  # 70 is enough
    groups = numbered(back_off(viewers, 100))
    assert groups[0] == ("everyone", "all")  # group 0 is always everyone, even if nobody backs off
    assert numbered({}) == [("everyone", "all")]


# --- the tiny lake, through prepare, train, evaluate, precompute ------------------------------------


def write_lake(settings: Any) -> None:
    fetched = datetime(2026, 11, 23, tzinfo=UTC)
    sessions = [
        {"user_id": u, "movie_id": m, "first_time": t, "last_time": t + timedelta(minutes=30),
         "max_minute": 89, "minutes_seen": 90}
        for u, m, t in WATCHED
    ]  # fmt: skip
    by_day: dict[str, list[dict[str, Any]]] = {}
    for row in sessions:
        by_day.setdefault(f"{row['first_time']:%Y-%m-%d}", []).append(row)
    for day, rows in by_day.items():
        path = lake.table_dir(settings, "watch_session") / f"date={day}" / "part-hand.parquet"
        lake.write_parquet_atomically(pa.Table.from_pylist(rows, schema=schemas.WATCH_SESSION), path)
    movies = [{"id": m, "title": m, "genres": [], "runtime": 100, "fetched_at": fetched} for m in MOVIES]
    users = [
        {"user_id": u, "age": int(age), "gender": gender, "occupation": job, "fetched_at": fetched}
        for u, (age, gender, job) in CATALOG.items()
    ]
    for table, rows, schema in (("movies", movies, schemas.MOVIES), ("users", users, schemas.USERS)):
        path = lake.table_dir(settings, table) / "part-hand.parquet"
        lake.write_parquet_atomically(pa.Table.from_pylist(rows, schema=schema), path)


@pytest.fixture(scope="module")
def spark(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    session = build_session(learning_settings(tmp_path_factory.mktemp("spark")), "test-group-popularity")
    yield session
    session.stop()


@pytest.fixture(scope="module")
def version(spark: Any, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    settings = learning_settings(tmp_path_factory.mktemp("home"))
    write_lake(settings)
    prepared = prepare(spark, settings, VERSION)
    fitting = [candidates.Popularity(), candidates.GroupPopularity(min_viewers=MIN_VIEWERS)]
    train(spark, settings, VERSION, fitting)
    evaluated = evaluate(settings, VERSION)
    served = precompute(settings, VERSION, spark=spark, users_per_task=4, block_users=4)
    challenger = precompute(settings, VERSION, candidate="group_popularity", spark=spark, users_per_task=4)
    popularity = precompute(settings, VERSION, candidate="popularity", spark=spark, users_per_task=4)
    return {
        "settings": settings,
        "prepared": prepared,
        "evaluated": evaluated,
        "reports": {"chosen": served, "group_popularity": challenger, "popularity": popularity},
    }


def lists_of(settings: Any, serving_id: str) -> dict[int, list[str]]:
    with sqlite3.connect(serving_file.file_path(settings.serving_dir, serving_id)) as connection:
        return {user: line.split(",") for user, line in connection.execute("SELECT user_id, items FROM recs")}


def test_prepare_indexes_every_catalog_user_and_counts_them(version: dict[str, Any]) -> None:
    prepared = version["prepared"]
    assert (prepared["catalog_users"], prepared["users_with_history"], prepared["users"]) == (14, 10, 15)
    demographics = pq.read_table(
        versions.prepared_dir(version["settings"], VERSION) / versions.DEMOGRAPHICS_FILE
    ).to_pylist()
    assert len(demographics) == 14
    assert {row["gender"] for row in demographics} == {"F", "M", "unknown"}
    folder = versions.model_dir(version["settings"], VERSION)
    users = set(pq.read_table(folder / versions.USERS_FILE)["user_id"].to_pylist())
    assert users == set(CATALOG) | {9}


def test_the_group_candidate_counts_each_group_s_recent_viewers(version: dict[str, Any]) -> None:
    factors = candidates.load(version["settings"], VERSION, "group_popularity", "all")
    assert isinstance(factors, candidates.GroupFactors)
    summary = {(g["level"], g["key"]): (g["viewers"], g["users"]) for g in factors.summary()["groups"]}
    assert summary == {
        ("everyone", "all"): (10, 4),  # 9 (not in the catalog), the retiree, 104, 106
        ("age x gender", "25-34/F"): (4, 2),  # the artist and 103
        ("age x gender x occupation", "25-34/F/writer"): (3, 4),
        ("age x gender x occupation", "18-24/M/doctor"): (4, 5),
    }


def test_users_without_history_get_their_group_s_list_in_every_serving_file(version: dict[str, Any]) -> None:
    settings = version["settings"]
    for serving_id in (VERSION, f"{VERSION}-group_popularity", f"{VERSION}-popularity"):
        lists = lists_of(settings, serving_id)
        assert set(lists) == set(CATALOG) | {9}  # every catalog user and every user with history
        assert {user: lists[user] for user in NO_HISTORY} == GROUP_LIST, serving_id
        registry.validate_version(settings, serving_id)  # full depth: rows = the model's users
    assert len({tuple(line) for line in GROUP_LIST.values()}) == 4  # lists differ by group


def test_group_lists_exclude_what_each_user_has_seen(version: dict[str, Any]) -> None:
    lists = lists_of(version["settings"], f"{VERSION}-group_popularity")
    assert lists[7] == ["m1", "m2", "m3", "m5", "m4"]  # 25-34/F without m6
    assert lists[9] == ["m3", "m4", "m1", "m6", "m5"]  # not in the catalog: everyone's, without m2
    assert lists[3] == ["m2", "m3", "m4", "m6"]  # writers' without m1, m5
    assert lists[4] == ["m6", "m1", "m2", "m5"]  # doctors' without m3, m4
    seen: dict[int, set[str]] = {}
    for user, movie, _when in WATCHED:
        seen.setdefault(user, set()).add(movie)
    for serving_id in (VERSION, f"{VERSION}-popularity"):
        for user, listed in lists_of(version["settings"], serving_id).items():
            assert not seen.get(user, set()) & set(listed), (serving_id, user)


def test_the_reports_count_personalised_group_and_catalog_users(version: dict[str, Any]) -> None:
    for name, report in version["reports"].items():
        assert report["users"] == 15, name
        assert (report["personalised_users"], report["group_users"], report["fallback_users"]) == (10, 5, 0)
        assert report["catalog_users"] == 14 and report["group_candidate"] == "group_popularity"
        assert report["group_levels"] == {
            "age x gender x occupation": {"groups": 2, "users": 9},
            "age x gender": {"groups": 1, "users": 2},
            "everyone": {"groups": 1, "users": 4},
        }
    settings = version["settings"]
    with sqlite3.connect(serving_file.file_path(settings.serving_dir, VERSION)) as connection:
        meta = dict(connection.execute("SELECT key, value FROM meta"))
    assert json.loads(meta["lists"])["group_users"] == 5
    # the group lines the online metric tells from a user's own list: those the 5 newcomers got
    assert sorted(json.loads(meta["group_lines"])) == sorted({",".join(line) for line in GROUP_LIST.values()})
    report = files.read_json(versions.report_dir(settings, VERSION) / versions.REPORT_JSON)
    assert report["lists"]["catalog_users"] == 14 and report["lists"]["group_users"] == 5
    markdown = (versions.report_dir(settings, VERSION) / versions.REPORT_MD).read_text()
    assert "## Lists for every user" in markdown


def test_evaluate_gives_the_newcomer_its_group_s_list_before_t_for_every_candidate(
    version: dict[str, Any],
) -> None:
    settings = version["settings"]
    report = files.read_json(versions.report_dir(settings, VERSION) / versions.REPORT_JSON)
    assert report["lists"]["test_users_without_history"] == 1
    assert report["lists"]["test_users_given_a_group_list"] == 1
    # 107's one relevant movie, m4, is 2nd of the doctors' list before T: NDCG 1/log2(3) for every
    # candidate (popularity's own list would have it 4th: 1/log2(5))
    for name in ("popularity", "group_popularity"):
        new = report["models"][name]["subgroups"]["tenure"]["new"]
        assert new["users"] == 1 and new["recall_at_20"] == 1.0
        assert new["ndcg_at_20"] == pytest.approx(1 / math.log2(3))
    factors = candidates.load(settings, VERSION, "group_popularity", "before_t")
    movies = pq.read_table(versions.model_dir(settings, VERSION) / versions.MOVIES_FILE).to_pydict()
    slug = dict(zip(movies["iidx"], movies["movie_id"], strict=True))
    users = pq.read_table(versions.model_dir(settings, VERSION) / versions.USERS_FILE).to_pydict()
    uidx = dict(zip(users["user_id"], users["uidx"], strict=True))[107]
    _found, rows = factors.users(np.array([uidx]))
    ids, items = factors.items()
    scores = items @ rows[0]
    order = sorted(range(len(ids)), key=lambda i: (-scores[i], ids[i]))
    assert [slug[int(ids[i])] for i in order] == NEWCOMER_LIST_BEFORE_T
