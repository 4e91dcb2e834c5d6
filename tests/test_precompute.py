"""Precompute on real Spark (local[2]) from a real ALS model folder, into a real SQLite file.

The model folder is built here the way the contract (movierec/models/versions.py) describes it, with
pyspark.ml.recommendation.ALS fitted on tiny random interactions as its chosen candidate and a
popularity candidate written by hand, so these tests do not depend on the training job.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from movierec import serving_file
from movierec import settings as settings_module
from movierec.models import candidates, registry
from movierec.ops import spark_submit
from spark_jobs import precompute as job

VERSION = "20261201T040000Z"
CLI = str(Path(sys.executable).parent / "movierec")
N_USERS, N_MOVIES = 60, 45
NO_FACTOR_USER = 999_999  # known to the model (users.parquet) but never in training
TRAINED_MOVIES = 40  # the last five movies have no factors (never watched): never recommended
GREEDY_USER_UIDX = 3  # has seen all but 7 trained movies: gets fewer than 20
CHOSEN = "als_r4"
# the popularity candidate's viewer counts (no ties) for every trained movie
VIEWERS = {iidx: (iidx * 7919) % 101 + 1 for iidx in range(TRAINED_MOVIES)}
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("precompute-home")


@pytest.fixture(scope="module")
def settings(home: Path) -> settings_module.Settings:
    return settings_module.load(
        {
            "MOVIEREC_HOME": str(home),
            "MOVIEREC_SPARK_MASTER": "local[2]",
            "MOVIEREC_SPARK_DRIVER_MEMORY": "1g",
        }
    )


@pytest.fixture(scope="module")
def spark(settings: settings_module.Settings) -> Iterator[object]:
    from spark_jobs.session import build_session

    session = build_session(settings, "test-precompute")
    yield session
    session.stop()


def build_model_folder(spark, settings: settings_module.Settings, version: str, seed: int = 1) -> Path:
    """A model folder as the training job leaves it: ALS fitted with real Spark on random data."""
    from pyspark.ml.recommendation import ALS

    rng = np.random.default_rng(seed)
    folder = settings.models_dir / version
    folder.mkdir(parents=True)
    user_ids = np.sort(rng.choice(np.arange(1, 100_000), N_USERS, replace=False)).astype(np.int64)
    user_ids = np.append(user_ids, NO_FACTOR_USER)  # last uidx: no interactions
    slugs = [f"film+number+{i}+{1950 + i}" for i in range(N_MOVIES)]
    pairs = {
        (int(u), int(i))
        for u, i in zip(rng.integers(0, N_USERS, 500), rng.integers(0, TRAINED_MOVIES, 500), strict=True)
    }
    pairs = {pair for pair in pairs if pair[0] != GREEDY_USER_UIDX}
    pairs |= {(GREEDY_USER_UIDX, i) for i in range(TRAINED_MOVIES - 7)}
    pairs |= {(u, u % TRAINED_MOVIES) for u in range(N_USERS)}  # every user and movie in training
    uidx, iidx = np.array(sorted(pairs)).T
    interactions = pa.table(
        {
            "uidx": pa.array(uidx, pa.int32()),
            "iidx": pa.array(iidx, pa.int32()),
            "confidence": pa.array(rng.uniform(1, 5, len(uidx)), pa.float32()),
        }
    )
    als = ALS(
        rank=4, maxIter=3, regParam=0.1, implicitPrefs=True, alpha=5.0, seed=seed,
        userCol="uidx", itemCol="iidx", ratingCol="confidence",
    )  # fmt: skip
    model = als.fit(spark.createDataFrame(interactions.to_pandas()))
    model.write().overwrite().save(str(folder / "candidates" / CHOSEN / "all"))
    popularity = folder / "candidates" / "popularity" / "all"
    popularity.mkdir(parents=True)
    pq.write_table(
        pa.table({"iidx": pa.array(list(VIEWERS), pa.int32()), "viewers": pa.array(list(VIEWERS.values()))}),
        popularity / "viewers.parquet",
    )
    pq.write_table(
        pa.table({"user_id": user_ids, "uidx": pa.array(range(len(user_ids)), pa.int32())}),
        folder / "users.parquet",
    )
    pq.write_table(
        pa.table({"movie_id": slugs, "iidx": pa.array(range(N_MOVIES), pa.int32())}),
        folder / "movies.parquet",
    )
    pq.write_table(interactions.select(["uidx", "iidx"]), folder / "seen.parquet")
    json_files = {
        "fallback.json": {"items": slugs[:20]},
        "params.json": {"rank": 4, "maxIter": 3, "regParam": 0.1, "alpha": 5.0},
        "data_manifest.json": {"files": [], "offsets": {"movielog1": {"0": [0, 500]}}},
        "metrics.json": {
            "recall_at_20": 0.25,
            "ndcg_at_20": 0.1,
            "candidates": {CHOSEN: {"recall_at_20": 0.25}, "popularity": {"recall_at_20": 0.2}},
        },
        "model.json": {
            "version": version,
            "model": "als",
            "candidate": CHOSEN,
            "git_commit": "feed",
            "split_time": "2026-11-30T00:00:00",
        },
        f"candidates/{CHOSEN}/train.json": {
            "kind": "als",
            "name": CHOSEN,
            "params": {"rank": 4, "reg": 0.1, "alpha": 5.0, "iterations": 3, "seed": seed},
            "cost": {},
        },
        "candidates/popularity/train.json": {
            "kind": "popularity",
            "name": "popularity",
            "params": {"days": 7},
            "cost": {},
        },
    }
    for name, content in json_files.items():
        (folder / name).write_text(json.dumps(content))
    return folder


def expected_lists(spark, folder: Path) -> dict[int, list[str]]:
    """The reference answer, computed the slow, obvious way from the saved factors."""
    from pyspark.ml.recommendation import ALSModel

    model = ALSModel.load(str(folder / "candidates" / CHOSEN / "all"))
    users = {row.id: np.array(row.features, np.float32) for row in model.userFactors.collect()}
    items = {row.id: np.array(row.features, np.float32) for row in model.itemFactors.collect()}
    slugs = dict(
        zip(
            *pq.read_table(folder / "movies.parquet").select(["iidx", "movie_id"]).to_pydict().values(),
            strict=True,
        )
    )
    seen: dict[int, set[int]] = {}
    for u, i in zip(*pq.read_table(folder / "seen.parquet").to_pydict().values(), strict=True):
        seen.setdefault(u, set()).add(i)
    fallback = json.loads((folder / "fallback.json").read_text())["items"]
    user_table = pq.read_table(folder / "users.parquet").to_pydict()
    out = {}
    for user_id, uidx in zip(user_table["user_id"], user_table["uidx"], strict=True):
        if uidx not in users:
            out[user_id] = fallback
            continue
        scored = [(-float(users[uidx] @ f), i) for i, f in items.items() if i not in seen.get(uidx, set())]
        out[user_id] = [slugs[i] for _, i in sorted(scored)[:20]]
    return out


@pytest.fixture(scope="module")
def published(spark, settings: settings_module.Settings) -> tuple[Path, dict]:
    folder = build_model_folder(spark, settings, VERSION)
    report = job.precompute(settings, VERSION, spark=spark, users_per_task=16, block_users=8)
    return folder, report


def read_file(path: Path) -> tuple[dict[int, str], dict[str, str]]:
    connection = sqlite3.connect(path)
    rows = dict(connection.execute("SELECT user_id, items FROM recs"))
    meta = dict(connection.execute("SELECT key, value FROM meta"))
    connection.close()
    return rows, meta


def test_every_known_user_gets_the_exact_top_20_of_unseen_movies(spark, published, settings) -> None:
    folder, report = published
    rows, _ = read_file(serving_file.file_path(settings.serving_dir, VERSION))
    want = expected_lists(spark, folder)
    users = pq.read_table(folder / "users.parquet").column("user_id").to_pylist()

    assert sorted(rows) == sorted(users) and report["users"] == len(users)
    for user_id, line in rows.items():
        got = line.split(",")
        assert len(got) <= 20 and len(set(got)) == len(got)
        # order matters: best first, as the reference sort (ties are unlikely with float factors)
        assert got == want[user_id], f"user {user_id}"
    uidx_of = dict(zip(users, range(len(users)), strict=True))
    seen = pq.read_table(folder / "seen.parquet").to_pydict()
    slugs = pq.read_table(folder / "movies.parquet").column("movie_id").to_pylist()
    for uidx, iidx in zip(seen["uidx"], seen["iidx"], strict=True):
        user_id = users[uidx]
        assert slugs[iidx] not in rows[user_id].split(",") or uidx == uidx_of[NO_FACTOR_USER]


def test_short_lists_and_users_without_factors(published, settings) -> None:
    folder, report = published
    rows, meta = read_file(serving_file.file_path(settings.serving_dir, VERSION))
    users = pq.read_table(folder / "users.parquet").column("user_id").to_pylist()
    assert len(rows[users[GREEDY_USER_UIDX]].split(",")) == 7  # all that is left unseen
    assert rows[NO_FACTOR_USER] == meta["fallback"]
    assert report["fallback_users"] >= 1


def test_meta_comes_from_the_model_folder_and_the_file_publishes(published, settings) -> None:
    folder, _ = published
    path = serving_file.file_path(settings.serving_dir, VERSION)
    rows, meta = read_file(path)
    assert set(serving_file.REQUIRED_META) <= set(meta)
    assert meta["model_version"] == VERSION
    assert meta["row_count"] == str(len(rows))
    params = json.loads((folder / "params.json").read_text())
    candidate = json.loads((folder / "candidates" / CHOSEN / "train.json").read_text())
    assert json.loads(meta["params"]) == params | {
        "candidate": CHOSEN,
        "model": "als",
        "model_params": candidate["params"],
    }
    assert meta["candidate"] == CHOSEN
    assert json.loads(meta["metrics"])["recall_at_20"] == 0.25
    assert json.loads(meta["data_manifest"])["offsets"] == {"movielog1": {"0": [0, 500]}}
    assert meta["fallback"] == ",".join(json.loads((folder / "fallback.json").read_text())["items"])
    head = subprocess.run(
        ["git", "rev-parse", "HEAD"], capture_output=True, text=True, cwd=settings_module.REPO_ROOT
    )
    assert meta["git_commit"].startswith(head.stdout.strip())
    assert json.loads(meta["model"])["git_commit"] == "feed"

    registry.publish(settings, VERSION)
    assert registry.current_version(settings) == VERSION
    with pytest.raises(RuntimeError, match="immutable"):
        job.precompute(settings, VERSION)  # a published file is never rewritten


def test_bad_model_folders_are_refused_before_any_work(settings) -> None:
    with pytest.raises(FileNotFoundError, match="no model folder"):
        job.precompute(settings, "20261202T000000Z")
    broken = settings.models_dir / "20261203T000000Z"
    broken.mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match=r"lacks users.parquet"):
        job.precompute(settings, "20261203T000000Z")
    with pytest.raises(ValueError, match="not a version id"):
        job.precompute(settings, "../etc")
    assert not serving_file.file_path(settings.serving_dir, "20261203T000000Z").exists()


def test_factor_files_are_scored_where_they_are_read_and_one_file_is_spread_first(
    spark, published, settings, capsys
) -> None:
    """ALS's own factor files (one per user block) need no shuffle before scoring when each is a
    read task, as full-size ones are (spark_jobs/session.py); here the tiny files are made one task
    each with minPartitionNum. The same factors in one file (one read task) are hashed into tasks
    first. Both give the same lists."""
    folder, _ = published
    one_file = settings.models_dir / "20261201T050000Z"
    shutil.copytree(folder, one_file)
    user_factors = one_file / "candidates" / CHOSEN / "all" / "userFactors"
    merged = pq.read_table(user_factors)
    shutil.rmtree(user_factors)
    user_factors.mkdir()
    pq.write_table(merged, user_factors / "part-00000.parquet")
    block_files = len(list((folder / "candidates" / CHOSEN / "all" / "userFactors").glob("*.parquet")))
    assert block_files >= 4

    lists, plans = [], []
    for version, read_tasks in ((VERSION, block_files), (one_file.name, None)):
        if read_tasks:
            spark.conf.set("spark.sql.files.minPartitionNum", str(read_tasks))
        try:
            factors = candidates.load(settings, version, CHOSEN, "all")
            model_folder = settings.models_dir / version
            frame = job.recommend_all(spark, model_folder, factors, "fallback", users_per_task=16)
            lists.append({row.user_id: row.items for row in frame.collect()})
            frame.explain()
        finally:
            spark.conf.unset("spark.sql.files.minPartitionNum")
        plans.append(capsys.readouterr().out)
    assert lists[0] == lists[1] and len(lists[0]) == N_USERS + 1
    assert "hashpartitioning(id" not in plans[0]
    assert "hashpartitioning(id" in plans[1]


def test_score_batches_is_the_pure_core(settings) -> None:
    """The executor function on hand-made Arrow batches: ids to slugs, seen excluded, padding dropped."""
    item_factors, slugs, row_of_iidx = job.item_table(
        np.array([2, 0, 1]),
        np.array([[1.0], [3.0], [2.0]]),
        np.array([0, 1, 2, 3]),
        ["a+1", "b+2", "c+3", "d+4"],
    )
    batch = pa.RecordBatch.from_pydict(
        {"id": pa.array([7, 8], pa.int32()), "features": pa.array([[1.0], [-1.0]], pa.list_(pa.float32()))}
    )
    seen = job.seen_by_user(np.array([7, 7]), np.array([1, 3]), row_of_iidx, 9)  # 3 has no factors: ignored
    (out,) = job.score_batches(iter([batch]), item_factors, slugs, seen, k=20)
    assert out.to_pydict() == {
        "uidx": [7, 8],
        "items": ["a+1,c+3", "c+3,b+2,a+1"],
    }  # scores 3,2,1 and their negatives
    with pytest.raises(ValueError, match=r"not in movies.parquet"):
        job.item_table(np.array([9]), np.zeros((1, 1)), np.array([0]), ["a+1"])


def test_each_line_gets_its_user_id_in_the_task_and_lines_without_a_user_are_dropped() -> None:
    """uidx -> user id by the users table (uidx 2 has no user; 7 is beyond every uidx)."""
    user_of = job.user_id_of_uidx(np.array([3, 0, 1]), np.array([300, 100, 110]))
    assert user_of.tolist() == [100, 110, -1, 300]
    lines = pa.RecordBatch.from_pydict(
        {"uidx": pa.array([1, 2, 3, 7, 0], pa.int32()), "items": ["b", "c", "d", "e", "a"]}
    )
    assert job.with_user_ids(lines, user_of).to_pydict() == {
        "user_id": [110, 300, 100],
        "uidx": [1, 3, 0],
        "items": ["b", "d", "a"],
    }


def test_each_task_picks_its_users_rows_of_the_broadcast_seen_pairs() -> None:
    """The seen CSR is built once by uidx; a batch of users in any order gets exactly its rows."""
    row_of_iidx = np.array([2, -1, 0, 1])  # iidx 1 has no factors
    seen = job.seen_by_user(np.array([3, 0, 3, 1, 3]), np.array([0, 2, 3, 1, 1]), row_of_iidx, 4)
    indptr, rows = job.rows_of(seen, np.array([3, 2, 0, 9]))  # 2: nothing seen; 9: beyond the CSR
    per_user = [sorted(rows[indptr[i] : indptr[i + 1]].tolist()) for i in range(4)]
    assert per_user == [[1, 2], [], [0], []]


def test_spark_submit_runs_the_job(spark, settings) -> None:
    """The way the retrain DAG runs it: spark-submit in a child process, its log kept."""
    version = "20261204T000000Z"
    build_model_folder(spark, settings, version, seed=4)
    report = spark_submit.submit(settings, "precompute", ["--version", version], tag=version)
    assert report["users"] == N_USERS + 1
    assert "users scored" in Path(report["log"]).read_text()  # the progress lines a person reads
    assert report["peak_rss_mb"] > 100  # the driver JVM's peak, as the kernel counted it
    registry.validate_version(settings, version)


def popularity_lists(folder: Path) -> dict[int, list[str]]:
    """The reference answer of the popularity candidate: most viewers first, seen movies left out."""
    users = pq.read_table(folder / "users.parquet").column("user_id").to_pylist()
    slugs = pq.read_table(folder / "movies.parquet").column("movie_id").to_pylist()
    seen: dict[int, set[int]] = {}
    for u, i in zip(*pq.read_table(folder / "seen.parquet").to_pydict().values(), strict=True):
        seen.setdefault(u, set()).add(i)
    ranked = sorted(VIEWERS, key=lambda iidx: -VIEWERS[iidx])
    return {
        user_id: [slugs[i] for i in ranked if i not in seen.get(uidx, set())][:20]
        for uidx, user_id in enumerate(users)
    }


def test_a_chosen_popularity_candidate_serves_the_most_popular_unseen_movies(spark, settings) -> None:
    """When popularity beat ALS offline, model.json names it and precompute ranks by recent viewers."""
    version = "20261205T000000Z"
    folder = build_model_folder(spark, settings, version, seed=5)
    model_json = json.loads((folder / "model.json").read_text())
    (folder / "model.json").write_text(
        json.dumps(model_json | {"model": "popularity", "candidate": "popularity"})
    )
    shutil.rmtree(folder / "candidates" / CHOSEN)  # what precompute reads is the chosen candidate only

    report = job.precompute(settings, version, spark=spark, users_per_task=16, block_users=8)
    rows, meta = read_file(serving_file.file_path(settings.serving_dir, version))
    want = popularity_lists(folder)
    assert {user: line.split(",") for user, line in rows.items()} == want
    assert len(set(rows.values())) > 1  # seen movies differ, so lists differ
    assert meta["candidate"] == "popularity" and json.loads(meta["params"])["model"] == "popularity"
    assert report["serving_id"] == version


def test_any_candidate_of_a_version_becomes_its_own_serving_file(spark, settings) -> None:
    """A challenger (not the chosen one) goes to serving id <version>-<candidate>, which validates,
    holds that candidate's lists and says whose they are; the chosen one's file is untouched."""
    version = "20261206T000000Z"
    folder = build_model_folder(spark, settings, version, seed=6)
    job.precompute(settings, version, spark=spark, users_per_task=16, block_users=8)
    chosen_rows, _ = read_file(serving_file.file_path(settings.serving_dir, version))

    report = job.precompute(settings, version, candidate="popularity", spark=spark, users_per_task=16)
    serving_id = f"{version}-popularity"
    assert report["serving_id"] == serving_id and report["candidate"] == "popularity"
    path = serving_file.file_path(settings.serving_dir, serving_id)
    checked = registry.validate_version(settings, serving_id)  # full depth, against the model folder
    assert checked.row_count == N_USERS + 1
    rows, meta = read_file(path)
    assert {user: line.split(",") for user, line in rows.items()} == popularity_lists(folder)
    assert rows != chosen_rows
    assert meta["model_version"] == serving_id and meta["candidate"] == "popularity"
    assert json.loads(meta["metrics"])["recall_at_20"] == 0.2  # its own offline figure, not the chosen's
    assert json.loads(meta["model"])["candidate"] == "popularity"
    assert read_file(serving_file.file_path(settings.serving_dir, version))[0] == chosen_rows
    figures = json.loads((settings.reports_dir / version / f"serving-{serving_id}.json").read_text())
    assert figures["users"] == N_USERS + 1 and figures["lookup"]["rows"] == N_USERS + 1

    with pytest.raises(
        FileNotFoundError, match=r"no trained candidate 'als_r99' \(it has: als_r4, popularity\)"
    ):
        job.precompute(settings, version, candidate="als_r99", spark=spark)


def test_the_cli_precomputes_any_candidate_through_spark_submit(spark, settings) -> None:
    """`movierec precompute VERSION --candidate NAME`, as a person runs it: spark-submit, one file."""
    version = "20261207T000000Z"
    build_model_folder(spark, settings, version, seed=7)
    env = os.environ | settings_module.as_env(settings)
    done = subprocess.run(
        [CLI, "precompute", version, "--candidate", "popularity"], env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout)["serving_id"] == f"{version}-popularity"
    assert registry.validate_version(settings, f"{version}-popularity").row_count == N_USERS + 1

    refused = subprocess.run([CLI, "precompute", "20261207"], env=env, capture_output=True, text=True)
    assert refused.returncode == 2 and "not a version id" in refused.stderr


# --- the exposure mitigation (docs/fairness.md) --------------------------------------------------


def test_score_batches_with_a_tail_quota_keeps_a_tail_movie_in_each_list(settings) -> None:
    item_factors, slugs, _ = job.item_table(
        np.array([2, 0, 1]), np.array([[1.0], [3.0], [2.0]]), np.array([0, 1, 2]), ["a+1", "b+2", "c+3"]
    )
    batch = pa.RecordBatch.from_pydict(
        {"id": pa.array([7, 8], pa.int32()), "features": pa.array([[1.0], [-1.0]], pa.list_(pa.float32()))}
    )
    tail = np.array([True, False, False])  # factor row 0 is iidx 2, c+3, the lowest score for user 7
    plain = job.score_batches(iter([batch]), item_factors, slugs, k=2)
    assert next(plain).column("items").to_pylist() == ["a+1,b+2", "c+3,b+2"]
    quota = job.TailQuota(tail, min_tail=1, depth=3)
    (out,) = job.score_batches(iter([batch]), item_factors, slugs, k=2, quota=quota)
    assert out.column("items").to_pylist() == ["a+1,c+3", "c+3,b+2"]


def test_precompute_with_tail_slots_serves_that_many_tail_movies(spark, settings) -> None:
    """The tail computed here from seen.parquet by plain counting: the most met movies up to 80% of
    the pairs are the head."""
    from dataclasses import replace

    version = "20261209T000000Z"
    folder = build_model_folder(spark, settings, version, seed=7)
    with pytest.raises(ValueError, match=r"MOVIEREC_FAIRNESS_TAIL_SLOTS must be 0\.\.20"):
        job.precompute(replace(settings, fairness_tail_slots=21), version, spark=spark)
    seen = pq.read_table(folder / "seen.parquet").to_pandas()
    counts = sorted(seen.groupby("iidx")["uidx"].nunique().items(), key=lambda kv: (-kv[1], kv[0]))
    head, before = set(), 0
    for iidx, count in counts:
        if before < 0.8 * len(seen):
            head.add(iidx)
        before += count
    movies = pq.read_table(folder / "movies.parquet").to_pydict()
    iidx_of = dict(zip(movies["movie_id"], movies["iidx"], strict=True))
    tail_slugs = {slug for slug, i in iidx_of.items() if i < TRAINED_MOVIES and i not in head}
    users = pq.read_table(folder / "users.parquet", columns=["user_id", "uidx"]).to_pydict()
    uidx_of = dict(zip(users["user_id"], users["uidx"], strict=True))
    seen_by = seen.groupby("uidx")["iidx"].apply(set).to_dict()

    report = job.precompute(
        replace(settings, fairness_tail_slots=5, fairness_rerank_depth=45),
        version,
        spark=spark,
        users_per_task=16,
    )
    rows, meta = read_file(serving_file.file_path(settings.serving_dir, version))
    assert json.loads(meta["precompute"])["tail_slots"] == 5
    plain = expected_lists(spark, folder)
    changed = 0
    for user, line in rows.items():
        if user == NO_FACTOR_USER:
            continue
        items = line.split(",")
        met = seen_by.get(uidx_of[user], set())
        unseen_tail = {slug for slug in tail_slugs if iidx_of[slug] not in met}
        assert len(set(items) & tail_slugs) >= min(5, len(unseen_tail)), user
        changed += items != plain[user]
    assert changed > 0 and report["users"] == N_USERS + 1


def test_exploration_slots_replace_the_last_places_and_are_logged_in_the_meta(spark, settings) -> None:
    """MOVIEREC_EXPLORATION_SLOTS=3: a personalised list keeps the model's first 17 and holds 3
    movies outside the model's top 20 and the seen; the meta says where they are and how drawn."""
    from dataclasses import replace

    version = "20261208T000000Z"
    folder = build_model_folder(spark, settings, version, seed=8)
    want = expected_lists(spark, folder)
    exploring = replace(settings, exploration_slots=3)
    with pytest.raises(ValueError, match="cannot both be on"):  # before any scoring
        job.precompute(replace(exploring, fairness_tail_slots=2), version, spark=spark)
    with pytest.raises(ValueError, match=r"exploration slots must be within 0\.\.20"):
        job.precompute(replace(settings, exploration_slots=21), version, spark=spark)
    job.precompute(exploring, version, spark=spark, users_per_task=16, block_users=8)
    rows, meta = read_file(serving_file.file_path(settings.serving_dir, version))
    users = pq.read_table(folder / "users.parquet").column("user_id").to_pylist()
    slugs = pq.read_table(folder / "movies.parquet").column("movie_id").to_pylist()
    seen: dict[int, set[str]] = {}
    for uidx, iidx in zip(*pq.read_table(folder / "seen.parquet").to_pydict().values(), strict=True):
        seen.setdefault(users[uidx], set()).add(slugs[iidx])
    explored = 0
    for user_id, line in rows.items():
        got = line.split(",")
        if user_id == NO_FACTOR_USER or len(want[user_id]) < 20:
            continue  # the fallback line and short lists (every unseen movie is already in)
        assert got[:17] == want[user_id][:17], f"user {user_id}"
        extra = got[17:]
        assert len(extra) == 3 and len(set(got)) == 20
        assert not set(extra) & (set(want[user_id][:17]) | seen.get(user_id, set()))
        explored += len(set(extra) - set(want[user_id]))  # outside what the model would have listed
    assert explored > 0
    logged = json.loads(meta["exploration"])
    assert logged["positions"] == [18, 19, 20] and logged["lists"] == "personalised"
    assert logged["movies"] == TRAINED_MOVIES
    registry.validate_version(settings, version)
