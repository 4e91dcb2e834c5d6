"""train and evaluate with real Spark (local[2]) on a small simulated lake, the ranking metrics
against hand-computed values, a candidate kind registered here that evaluate scores without a
change to its code, and spark_submit's handling of a failing job."""

from __future__ import annotations

import json
import math
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pyarrow.parquet as pq
import pytest

from movierec.models import candidates, registry, versions
from movierec.ops import spark_submit
from movierec.settings import Settings
from spark_jobs import evaluate as evaluate_module
from spark_jobs import files
from spark_jobs import ranking_metrics as metrics
from spark_jobs.evaluate import evaluate
from spark_jobs.prepare import prepare
from spark_jobs.train import candidates_to_fit, train
from tests.learning_data import build_small_lake, learning_settings
from tests.test_registry import write_version

VERSION = "20261125T000000Z"


# --- metrics: pure, against hand-computed values ---------------------------------------------------


def test_metrics_equal_hand_computed_values() -> None:
    recommended = [10, 20, 30, 40]
    relevant = {20, 50}  # one hit at position 1 (0-based), one relevant movie never recommended
    assert metrics.recall_at_k(recommended, relevant) == 0.5
    assert metrics.ndcg_at_k(recommended, relevant) == pytest.approx(
        (1 / math.log2(3)) / (1 + 1 / math.log2(3))
    )
    assert metrics.average_precision_at_k(recommended, relevant) == pytest.approx(0.5 / 2)
    both = {10, 30}  # hits at positions 0 and 2: precision 1/1 and 2/3
    assert metrics.average_precision_at_k(recommended, both) == pytest.approx((1 + 2 / 3) / 2)
    assert metrics.ndcg_at_k(recommended, both) == pytest.approx((1 + 1 / 2) / (1 + 1 / math.log2(3)))
    # only the first k count
    assert metrics.recall_at_k(recommended, {40}, k=3) == 0.0
    # more relevant than k: AP is normalised by k, not by |relevant|
    assert metrics.average_precision_at_k([1, 2], {1, 2, 3}, k=2) == 1.0
    with pytest.raises(ValueError, match="no relevant"):
        metrics.recall_at_k(recommended, set())


def test_snips_recall_weights_each_relevant_movie_by_its_inverse_propensity() -> None:
    import numpy as np

    # Yang et al. 2018, eqn 15 with gamma = 1: P = (n / max n) ** 1; a movie never met counts as 1
    propensity = metrics.popularity_propensity(np.array([100, 10, 1, 0]), gamma=1.0)
    assert propensity.tolist() == pytest.approx([1.0, 0.1, 0.01, 0.01])
    inverse = 1 / propensity  # 1, 10, 100, 100
    # hits 0 and 2 of relevant {0, 1, 2}: (1 + 100) / (1 + 10 + 100), where plain recall says 2/3
    assert metrics.snips_recall_at_k([0, 2], {0, 1, 2}, inverse) == pytest.approx(101 / 111)
    assert metrics.snips_recall_at_k([0, 1], {0, 1, 2}, inverse) == pytest.approx(11 / 111)
    assert metrics.snips_recall_at_k([3], {3}, inverse) == 1.0  # self-normalised per user
    with pytest.raises(ValueError, match="no relevant"):
        metrics.snips_recall_at_k([0], set(), inverse)
    # the exponent: 1 + n / sum(ln(n_i / 0.5)) (Clauset et al. 2009, eqn 3.7, n_min = 1)
    assert metrics.power_law_exponent(np.array([1, 1, 2, 0])) == pytest.approx(1 + 3 / (4 * math.log(2)))
    per_user = metrics.per_user([[0, 2], [1]], [{0, 1, 2}, {1, 3}], inverse_propensity=inverse)
    assert per_user["snips_recall_at_20"].tolist() == pytest.approx([101 / 111, 10 / 110])


def test_coverage_and_mean_popularity() -> None:
    import numpy as np

    lists = [[0, 1], [1, 2]]
    assert metrics.catalog_coverage(lists, 10) == 0.3
    popularity = np.array([0.5, 0.1, 0.3, 0.0])
    assert metrics.mean_popularity(lists, popularity) == pytest.approx((0.5 + 0.1 + 0.1 + 0.3) / 4)
    summary = metrics.summarize({"recall_at_20": np.array([1.0, 0.0, 0.5])}, np.array([True, False, True]))
    assert summary == {"users": 2, "recall_at_20": 0.75}


def test_the_default_candidates_are_popularities_rank_16_the_given_rank_and_rank_16_with_features(
    tmp_path: Path,
) -> None:
    def described(rank: int) -> dict[str, tuple[str, int | None]]:
        found = candidates.default_candidates(learning_settings(tmp_path), rank=rank)
        return {c.name: (c.kind, c.params.get("rank")) for c in found}

    assert described(64) == {
        "popularity": ("popularity", None),
        "group_popularity": ("group_popularity", None),
        "als_r16": ("als", 16),
        "als_r64": ("als", 64),
        "als_r16_demo": ("als_features", 16),
    }
    assert described(16) == described(64)


def test_a_first_model_leaves_out_the_als_at_the_other_rank_unless_a_rank_is_asked_for(
    tmp_path: Path,
) -> None:
    def names(settings: Settings, **asked: Any) -> list[str]:
        return [c.name for c in candidates.default_candidates(settings, **asked)]

    cheap = ["popularity", "group_popularity", "als_r16", "als_r16_demo"]
    settings = learning_settings(tmp_path)  # rank 32 in the settings
    assert names(settings, first_model=True) == cheap
    assert names(settings) == ["popularity", "group_popularity", "als_r16", "als_r32", "als_r16_demo"]
    assert names(settings, rank=64, first_model=True) == [*cheap[:3], "als_r64", "als_r16_demo"]
    sixteen = learning_settings(tmp_path, MOVIEREC_ALS_RANK="16")  # the other rank is then 64
    assert names(sixteen, first_model=True) == cheap
    assert names(sixteen) == [*cheap[:3], "als_r64", "als_r16_demo"]


def test_the_train_job_fits_the_cheap_candidates_until_a_model_serves(tmp_path: Path) -> None:
    settings = learning_settings(tmp_path)

    def fitted() -> list[str]:
        return [c.name for c in candidates_to_fit(settings, None, 0.1, 10.0, 5)]

    assert "als_r32" not in fitted() and "als_r16_demo" in fitted()
    write_version(settings, "20261201T000000Z")
    registry.publish(settings, "20261201T000000Z")
    assert "als_r32" in fitted()
    assert [c.name for c in candidates_to_fit(settings, 8, 0.1, 10.0, 5)][3] == "als_r8"


# --- Spark ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def trained(spark: Any, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    settings = learning_settings(tmp_path_factory.mktemp("home"))
    build_small_lake(settings)
    prepare(spark, settings, VERSION)
    report = train(spark, settings, VERSION, candidates.default_candidates(settings, iterations=5))
    result = evaluate(settings, VERSION)
    return {"settings": settings, "train": report, "evaluate": result}


def test_every_candidate_is_fitted_before_t_and_on_all_data(trained: dict[str, Any], spark: Any) -> None:
    settings = trained["settings"]
    assert set(trained["train"]) == {"popularity", "group_popularity", "als_r16", "als_r32", "als_r16_demo"}
    for name in ("als_r16", "als_r32", "als_r16_demo"):
        folder = versions.candidate_dir(settings, VERSION, name)
        for window in ("before_t", "all"):
            assert (folder / window / "userFactors").is_dir()
            cost = trained["train"][name]["cost"][window]
            assert cost["wall_seconds"] > 0 and cost["cpu_seconds"] > 0
    checkpoints = spark.sparkContext._jsc.sc().getCheckpointDir()  # ALS cuts its lineage there
    assert checkpoints.isDefined() and "spark-checkpoints" in checkpoints.get()


def test_the_model_folder_holds_the_contract_files(trained: dict[str, Any]) -> None:
    settings = trained["settings"]
    folder = versions.model_dir(settings, VERSION)
    for name in (
        versions.USERS_FILE, versions.MOVIES_FILE, versions.SEEN_FILE, versions.FALLBACK_FILE,
        versions.PARAMS_FILE, versions.DATA_MANIFEST_FILE, versions.METRICS_FILE, versions.MODEL_FILE,
    ):  # fmt: skip
        assert (folder / name).is_file(), name
    model = files.read_json(folder / versions.MODEL_FILE)
    chosen = trained["evaluate"]["chosen"]
    assert model["version"] == VERSION and model["candidate"] == chosen
    assert model["model"] == trained["train"][chosen]["kind"]
    metrics_json = files.read_json(folder / versions.METRICS_FILE)
    assert metrics_json["recall_at_20"] == trained["evaluate"]["recall_at_20"]
    assert set(metrics_json["subgroups"]) == {"tenure", "activity", "age_band", "gender", "occupation"}
    # the served refit knows every user of the index that has an interaction (the index also has
    # the catalog's users without any)
    users = pq.read_table(folder / versions.USERS_FILE).num_rows
    with_history = len(set(pq.read_table(folder / versions.SEEN_FILE, columns=["uidx"])["uidx"].to_pylist()))
    served = versions.candidate_dir(settings, VERSION, "als_r16") / "all" / "userFactors"
    assert sum(pq.read_metadata(p).num_rows for p in served.glob("*.parquet")) == with_history <= users


def test_als_beats_random_and_the_choice_is_the_best_recall(trained: dict[str, Any]) -> None:
    report = files.read_json(versions.report_dir(trained["settings"], VERSION) / versions.REPORT_JSON)
    recall = {name: r["overall"]["recall_at_20"] for name, r in report["models"].items()}
    assert set(recall) == {"popularity", "group_popularity", "als_r16", "als_r32", "als_r16_demo", "random"}
    assert recall["als_r16"] > 1.5 * recall["random"]
    assert recall["popularity"] > recall["random"]
    candidates = {n: v for n, v in recall.items() if n != "random"}
    assert report["chosen"] == max(candidates, key=candidates.get)
    # new users get their group's list (or the fallback), so every model scores them alike
    new = {
        n: r["subgroups"]["tenure"].get("new", {}).get("recall_at_20") for n, r in report["models"].items()
    }
    assert new["als_r16"] == new["als_r32"] == new["als_r16_demo"] == new["popularity"]
    assert new["popularity"] == new["group_popularity"]


def test_the_demographic_candidate_is_shaped_by_its_features_and_saves_movie_factors_only(
    trained: dict[str, Any],
) -> None:
    settings = trained["settings"]
    movies = pq.read_metadata(versions.model_dir(settings, VERSION) / versions.MOVIES_FILE).num_rows
    prepared = versions.prepared_dir(settings, VERSION)
    train_users = set(pq.read_table(prepared / "train.parquet", columns=["uidx"])["uidx"].to_pylist())

    def user_factors(name: str) -> dict[int, list[float]]:
        table = pq.read_table(versions.candidate_dir(settings, VERSION, name) / "before_t" / "userFactors")
        return dict(zip(table["id"].to_pylist(), table["features"].to_pylist(), strict=True))

    for window in ("before_t", "all"):
        folder = versions.candidate_dir(settings, VERSION, "als_r16_demo") / window
        items = pq.read_table(folder / "itemFactors", columns=["id"])["id"].to_pylist()
        assert items and max(items) < movies  # pseudo-items shaped the fit but are not saved
    demo, plain = user_factors("als_r16_demo"), user_factors("als_r16")
    assert set(demo) == set(plain) == train_users  # no user who only appears after T gets factors
    # same seed, rank and interactions: only the feature rows can make the factors differ
    assert any(demo[u] != pytest.approx(plain[u], abs=1e-4) for u in demo)
    params = trained["train"]["als_r16_demo"]["params"]
    assert params["rank"] == 16 and "gender" in params["demographic_features"]


def test_the_report_has_all_models_definitions_and_the_argument(trained: dict[str, Any]) -> None:
    folder = versions.report_dir(trained["settings"], VERSION)
    text = (folder / versions.REPORT_MD).read_text()
    needles = ["als_r16", "als_r32", "popularity", "Recall@20", "NDCG@20", "MAP@20", "coverage"]
    needles += ["SNIPS Recall@20", "Yang et al. 2018"]
    needles += ["operationalization", "µs/user", "factor bytes", "new vs returning", "Chosen:"]
    for needle in needles:
        assert needle in text, needle
    report = files.read_json(folder / versions.REPORT_JSON)
    listed = report["data"]["counts"]["test_pairs_listed"]
    assert 0 < listed < report["data"]["counts"]["test_pairs"]  # some test watches no list caused
    for name in ("popularity", "als_r16", "als_r32"):
        model = report["models"][name]
        overall = model["overall"]
        assert 0 <= overall["snips_recall_at_20"] <= 1 and overall["propensity_gamma"] > 1
        assert overall["unlisted_users"] > 0 and 0 <= overall["unlisted_recall_at_20"] <= 1
        assert model["inference"]["topk_us_per_user"] > 0
        assert model["training"]["before_t"]["cpu_seconds"] > 0
    assert (
        report["models"]["als_r32"]["size"]["factor_bytes"]
        == 2 * report["models"]["als_r16"]["size"]["factor_bytes"]
    )
    assert report["chosen"] in report["argument"]


# --- a candidate kind evaluate has never heard of ------------------------------------------------


@dataclass(frozen=True)
class SavedIds:
    ids: list[int]

    def save(self, target: Path) -> None:
        target.mkdir(parents=True)
        (target / "ids.json").write_text(json.dumps(self.ids))


@dataclass(frozen=True)
class LowestIndexScores(candidates.Factors):
    ids: np.ndarray

    def items(self) -> tuple[np.ndarray, np.ndarray]:
        return self.ids, -self.ids.astype(np.float32).reshape(-1, 1)  # rank 1: lower index, higher score

    def users(self, uidx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return uidx, np.ones((len(uidx), 1), np.float32)

    def user_frame(self, spark: Any, users: Any) -> Any:
        from pyspark.sql import functions as F

        return users.select(F.col("uidx").alias("id"), F.array(F.lit(1.0).cast("float")).alias("features"))

    @property
    def stored_rows(self) -> int:
        return len(self.ids)


@dataclass(frozen=True)
class LowestIndexFirst(candidates.Candidate):
    """Lists the unseen movies of lowest index among those met in training: a fake, known only here."""

    kind: ClassVar[str] = "lowest_index_first"
    name: str = "lowest_first"

    def fit(self, spark: Any, window: candidates.TrainingWindow) -> SavedIds:
        rows = window.interactions.select("iidx").distinct().collect()
        return SavedIds(sorted(row["iidx"] for row in rows))

    def load(self, saved: Path) -> candidates.Factors:
        return LowestIndexScores(np.array(json.loads((saved / "ids.json").read_text()), np.int64))


def test_a_candidate_registered_in_a_test_is_trained_evaluated_and_chosen_by_the_unchanged_jobs(
    trained: dict[str, Any], spark: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(candidates.KINDS, LowestIndexFirst.kind, LowestIndexFirst)
    settings = learning_settings(tmp_path)
    shutil.copytree(versions.model_dir(trained["settings"], VERSION), versions.model_dir(settings, VERSION))

    train(spark, settings, VERSION, [LowestIndexFirst()])
    result = evaluate(settings, VERSION)

    # By hand: each test user's list is the 20 lowest movie indices met before T that they had not met.
    prepared = versions.prepared_dir(settings, VERSION)
    before = pq.read_table(prepared / "train.parquet", columns=["uidx", "iidx"]).to_pylist()
    test = pq.read_table(prepared / "test.parquet", columns=["uidx", "iidx"]).to_pylist()
    known = sorted({row["iidx"] for row in before})
    met: dict[int, set[int]] = {}
    for row in before:
        met.setdefault(row["uidx"], set()).add(row["iidx"])
    relevant: dict[int, set[int]] = {}
    for row in test:
        relevant.setdefault(row["uidx"], set()).add(row["iidx"])
    shares = []
    for user, wanted in relevant.items():
        listed = [i for i in known if i not in met.get(user, set())][:20]
        shares.append(len(set(listed) & wanted) / len(wanted))
    assert result["chosen"] == "lowest_first"
    assert result["recall_at_20"] == pytest.approx(sum(shares) / len(shares))
    model = files.read_json(versions.model_dir(settings, VERSION) / versions.MODEL_FILE)
    assert (model["candidate"], model["model"]) == ("lowest_first", "lowest_index_first")
    report = files.read_json(versions.report_dir(settings, VERSION) / versions.REPORT_JSON)
    served = set(pq.read_table(prepared / "all.parquet", columns=["iidx"])["iidx"].to_pylist())
    assert report["models"]["lowest_first"]["size"]["factor_bytes"] == 4 * len(served)  # the refit's, rank 1


# --- spark_submit ---------------------------------------------------------------------------------


def test_spark_submit_refuses_an_unknown_job(tmp_path: Path) -> None:
    with pytest.raises(spark_submit.SparkJobFailed, match=r"no Spark job 'nope'.*prepare"):
        spark_submit.submit(learning_settings(tmp_path), "nope", [])


def test_train_refuses_a_negative_block_count_before_spark_starts(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from spark_jobs import train as train_job

    monkeypatch.setenv("MOVIEREC_ALS_BLOCKS", "-2")
    with pytest.raises(SystemExit) as stopped:
        train_job.main(["--version", "20261201T000000Z"])
    assert stopped.value.code == 2
    assert "MOVIEREC_ALS_BLOCKS must be 0 (from the data) or a block count, got -2" in capsys.readouterr().err


def test_the_spark_jvms_collect_garbage_with_the_throughput_collector(spark: Any, tmp_path: Path) -> None:
    # ParallelGC's two collectors (G1, the JVM's default, would name "G1 Young Generation", ...)
    beans = spark.sparkContext._jvm.java.lang.management.ManagementFactory.getGarbageCollectorMXBeans()
    assert {bean.getName() for bean in beans} == {"PS Scavenge", "PS MarkSweep"}
    # and a submitted job's driver and a cluster's executors get the same option
    cmd = spark_submit.command(learning_settings(tmp_path), "prepare", ["--version", "20261201T000000Z"])
    confs = dict(cmd[i + 1].split("=", 1) for i, part in enumerate(cmd) if part == "--conf")
    for side in ("driver", "executor"):
        assert "-XX:+UseParallelGC" in confs[f"spark.{side}.extraJavaOptions"].split()


def test_a_failing_job_raises_with_its_log(tmp_path: Path) -> None:
    settings = learning_settings(tmp_path)
    with pytest.raises(spark_submit.SparkJobFailed, match="exit code") as failure:
        spark_submit.submit(settings, "prepare", ["--version", "not-a-version"], tag="bad")
    assert "invalid check_version value: 'not-a-version'" in str(failure.value)  # the log's tail
    log = spark_submit.log_path(settings, "prepare", "bad")
    assert "not-a-version" in log.read_text()


def test_the_random_floor_never_lists_what_a_user_met_across_blocks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Drawn block by block (memory), each list is k distinct unseen movies, rows in user order."""
    monkeypatch.setattr(evaluate_module, "RANDOM_BLOCK_USERS", 3)
    # only the fields random_lists reads
    data = evaluate_module.EvaluationData.__new__(evaluate_module.EvaluationData)
    data.users = np.arange(7)
    data.n_movies = 12
    data.seen_rows = np.array([0, 0, 4, 6, 6, 6])
    data.seen_items = np.array([1, 2, 5, 0, 3, 11])
    lists = evaluate_module.random_lists(data, 5, seed=3)
    assert len(lists) == 7 and all(len(set(row)) == 5 for row in lists)
    seen = {0: {1, 2}, 4: {5}, 6: {0, 3, 11}}
    assert all(not set(lists[user]) & met for user, met in seen.items())
    assert lists == evaluate_module.random_lists(data, 5, seed=3)  # seeded


# --- the fairness section (docs/fairness.md) ---------------------------------------------------


def test_the_model_report_has_a_fairness_section_and_the_quota_moves_slots_to_the_tail(
    trained: dict[str, Any],
) -> None:
    settings = trained["settings"]
    metrics = files.read_json(versions.model_dir(settings, VERSION) / versions.METRICS_FILE)
    section = metrics["fairness"]
    assert section["as_evaluated"]["recall_at_20"] == pytest.approx(metrics["recall_at_20"])
    assert section["mitigation"] is None  # MOVIEREC_FAIRNESS_TAIL_SLOTS is off by default
    assert set(section["as_evaluated"]["quality"]["attributes"]) == {"gender", "age_band", "occupation"}
    assert "## Fairness" in (versions.report_dir(settings, VERSION) / versions.REPORT_MD).read_text()

    data = evaluate_module.EvaluationData(settings, VERSION)
    factors = candidates.load(settings, VERSION, metrics["model"], "before_t")
    ranked, _ = evaluate_module.candidate_lists(data, factors, 100)
    quota = evaluate_module.fairness_section(data, ranked, {}, 20, 5, 100)
    # the tail by plain counting: the most met movies before T up to 80% of the meetings are the head
    head, before, total = set(), 0.0, data.popularity.sum()
    for i in sorted(range(data.n_movies), key=lambda i: (-data.popularity[i], i)):
        if data.popularity[i] > 0 and before < 0.8 * total:
            head.add(i)
        before += data.popularity[i]
    tail = set(range(data.n_movies)) - head
    assert quota["long_tail"]["movies"] == len(tail)
    slots = sum(len(c[:20]) for c in ranked)
    share_before = sum(1 for c in ranked for i in c[:20] if i in tail) / slots
    found = quota["as_evaluated"]["exposure"]["segments"]["long_tail"]["slot_share"]["value"]
    assert found == pytest.approx(share_before)
    after = quota["mitigation"]["exposure"]["segments"]["long_tail"]["slot_share"]["value"]
    # every list holds at least 5 tail movies where its top 100 has them
    assert after >= sum(min(5, sum(1 for i in c if i in tail)) for c in ranked) / slots - 1e-12
    assert after > share_before
