"""The local Spark standalone cluster (``movierec spark start|stop``): a real master and two real
workers, each its own JVM started by the pip package's ``spark-class`` under supervisord, on free
ports in a temporary home. The retrain (prepare, train, evaluate, precompute, publish, all through
``spark-submit`` as the DAG runs them) on that cluster publishes the same list for every user as
the same retrain on ``local[2]``, and both workers ran executors of it. The cluster is stopped by
the module's finalizer whatever happens, and a stop leaves no process behind."""

from __future__ import annotations

import shutil
import socket
import sqlite3
from pathlib import Path

import pytest

from movierec import serving_file
from movierec import settings as settings_module
from movierec.models import registry, versions
from movierec.ops import spark_cluster, spark_submit, supervisor
from movierec.ops.processes import cmdline, descendants, is_alive
from movierec.settings import Settings
from tests.learning_data import build_small_lake

pytestmark = pytest.mark.slow

VERSION = "20261125T000000Z"
JOBS = ("prepare", "train", "evaluate", "precompute")
ALS_CANDIDATE, ALS_OTHER = "als_r16_demo", "als_r16"  # default candidates: ALS with features, without
WORKERS = 2


def free_port_run(count: int) -> int:
    """The first of ``count`` consecutive ports nothing listens on (worker i uses base + i)."""
    for _ in range(50):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            base = probe.getsockname()[1]
        if base + count > 65535:
            continue
        try:
            held = []
            for port in range(base, base + count):
                sock = socket.socket()
                held.append(sock)
                sock.bind(("127.0.0.1", port))
        except OSError:
            continue
        finally:
            for sock in held:
                sock.close()
        return base
    raise RuntimeError(f"no {count} consecutive free ports")


def retrain_env(home: Path, **extra: str) -> dict[str, str]:
    """A small retrain (the learning tests' world, small ranks, few iterations) under ``home``."""
    return {
        "MOVIEREC_HOME": str(home),
        "MOVIEREC_SCALE_USERS": "2000",
        "MOVIEREC_SCALE_MOVIES": "300",
        "MOVIEREC_SPARK_DRIVER_MEMORY": "1g",
        "MOVIEREC_SPARK_EXECUTOR_MEMORY": "1g",
        "MOVIEREC_ALS_ITERATIONS": "3",
        "MOVIEREC_ALS_RANK": "8",
        "MOVIEREC_TEST_DAYS": "1",
        **extra,
    }


@pytest.fixture(scope="module")
def cluster_settings(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Settings:
    """Settings naming a private cluster on free ports; the finalizer stops it even after a failure
    (registered before anything starts, so a half-started cluster is stopped too)."""
    home = tmp_path_factory.mktemp("spark-cluster-home")
    settings = settings_module.load(
        retrain_env(
            home,
            MOVIEREC_SPARK_CLUSTER_PORT=str(free_port_run(WORKERS + 1)),
            MOVIEREC_SPARK_CLUSTER_UI_PORT=str(free_port_run(WORKERS + 1)),
            MOVIEREC_SPARK_WORKERS=str(WORKERS),
            MOVIEREC_SPARK_WORKER_CORES="1",
        )
    )
    request.addfinalizer(lambda: spark_cluster.stop(settings))
    return settings


@pytest.fixture
def cluster(cluster_settings: Settings) -> Settings:
    """The cluster running (started on first use; a start while it runs changes nothing)."""
    spark_cluster.start(cluster_settings)
    return cluster_settings


def program_pids(settings: Settings) -> dict[str, int | None]:
    names = [spark_cluster.MASTER, *spark_cluster.worker_names(settings)]
    return {name: supervisor.pid(settings, name) for name in names}


def test_a_master_and_two_workers_run_as_their_own_processes_and_register(cluster: Settings) -> None:
    state = spark_cluster.status(cluster)
    assert state.master == "ALIVE" and state.healthy
    assert state.url == spark_cluster.master_url(cluster)
    assert sorted(w["port"] for w in state.workers) == [
        cluster.spark_cluster_port + i for i in range(1, WORKERS + 1)
    ]
    assert all(w["cores"] == 1 for w in state.workers)
    pids = program_pids(cluster)
    assert None not in pids.values() and len(set(pids.values())) == WORKERS + 1
    assert spark_cluster.MASTER_CLASS.encode() in cmdline(pids[spark_cluster.MASTER])  # type: ignore[arg-type]
    for name in spark_cluster.worker_names(cluster):
        assert spark_cluster.WORKER_CLASS.encode() in cmdline(pids[name])  # type: ignore[arg-type]
    spark_cluster.start(cluster)  # running already: the same processes
    assert program_pids(cluster) == pids


def lists(path: Path) -> dict[int, str]:
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as connection:
        return dict(connection.execute("SELECT user_id, items FROM recs"))


def run_retrain(settings: Settings) -> dict[str, dict[int, str]]:
    """prepare, train, evaluate, precompute (spark-submit on ``settings.spark_master``), publish, as
    the DAG runs them; then an ALS candidate's lists too (a challenger's serving file: on small data
    evaluate may well choose a popularity). The list of every user by serving file, the published
    one under ``current``."""
    for job in JOBS:
        spark_submit.submit(settings, job, ["--version", VERSION], tag=VERSION)
    outcome = registry.publish(settings, VERSION)
    assert registry.current_version(settings) == VERSION, outcome
    found = {"current": lists(settings.serving_dir / "current")}
    chosen = versions.read_model_folder(versions.model_dir(settings, VERSION))["model.json"]["candidate"]  # type: ignore[index]
    als = ALS_CANDIDATE if chosen != ALS_CANDIDATE else ALS_OTHER
    spark_submit.submit(settings, "precompute", ["--version", VERSION, "--candidate", als], tag=als)
    serving_id = serving_file.serving_id(VERSION, als)
    found[serving_id] = lists(serving_file.file_path(settings.serving_dir, serving_id))
    return found


def test_a_retrain_on_the_cluster_publishes_the_same_lists_as_local(
    cluster: Settings, tmp_path: Path
) -> None:
    lake_home = tmp_path / "lake"
    build_small_lake(settings_module.load(retrain_env(lake_home)))
    homes = {"local": tmp_path / "on-local", "cluster": tmp_path / "on-cluster"}
    for home in homes.values():
        shutil.copytree(lake_home, home)  # the same lake, world and catalog in both
    local = settings_module.load(retrain_env(homes["local"], MOVIEREC_SPARK_MASTER="local[2]"))
    on_cluster = settings_module.load(
        retrain_env(homes["cluster"], MOVIEREC_SPARK_MASTER=spark_cluster.master_url(cluster))
    )
    state = spark_cluster.status(cluster)
    finished_before = {w["id"]: len(finished_executors(w)) for w in state.workers}

    expected = run_retrain(local)
    got = run_retrain(on_cluster)

    # it ran on the cluster: the model folder says so, and every worker ran executors of the jobs
    params = versions.read_model_folder(versions.model_dir(on_cluster, VERSION))["params.json"]
    assert params["spark"]["master"] == spark_cluster.master_url(cluster)  # type: ignore[index]
    state = spark_cluster.status(cluster)
    for worker in state.workers:
        assert len(finished_executors(worker)) > finished_before.get(worker["id"], 0), worker["id"]

    assert got.keys() == expected.keys()
    for serving_id, rows in expected.items():
        assert len(rows) > 1000 and rows.keys() == got[serving_id].keys()
        differ = [user for user in rows if got[serving_id][user] != rows[user]]
        assert differ == [], (
            f"{serving_id}: {len(differ)} of {len(rows)} users got another list: {differ[:3]}"
        )
    als_lists = next(rows for serving_id, rows in expected.items() if serving_id != "current")
    assert len(set(als_lists.values())) > len(als_lists) // 10  # personalised, not one list for all


def finished_executors(worker: dict[str, object]) -> list[object]:
    page = spark_cluster.worker_json(worker)  # type: ignore[arg-type]
    assert page is not None, f"worker {worker['id']} does not answer at {worker['webuiaddress']}"
    return list(page.get("finishedexecutors", []))


def test_stop_leaves_no_process_behind(cluster: Settings) -> None:
    pids = {pid for pid in program_pids(cluster).values() if pid is not None}
    tree = descendants(pids)
    supervisord = supervisor.rpc(cluster).supervisor.getPID()
    assert spark_cluster.stop(cluster) is True
    assert [pid for pid in tree if is_alive(pid)] == []
    assert spark_cluster.status(cluster).master is None
    assert not is_alive(supervisord)  # nothing else ran under it: it went with the last program
    assert spark_cluster.stop(cluster) is False
