"""The retrain on ``local[*]`` vs on the local Spark standalone cluster (``movierec spark start``),
side by side on the same lake: seconds per job, the ratio, and whether the lists are the same.

    MOVIEREC_HOME=<a home with a lake> .venv/bin/python bench/bench_spark_cluster.py \\
        [--ports 30400] [--workers 2] [--worker-cores 1] [--executor-memory 4g] [--work /tmp/bench-cluster]
        [--simulate-days D [--sessions-per-day N]]

The home's lake, world and catalog tables are copied into two fresh homes under ``--work`` (the home
itself is not touched). With ``--simulate-days`` the source is made instead: a home under ``--work``
whose lake holds ``D`` days of the simulated site's history (``MOVIEREC_SCALE_*``, full scale by
default) as one committed ingest batch, with its watch sessions and the catalog's tables
(``simulator.spam_check.simulated_lake``), without Kafka or Airflow. The retrain's jobs (prepare,
train, evaluate, precompute, each through ``spark-submit`` as the DAG runs them) run first on
``local[*]``, then on a standalone cluster this script starts on 127.0.0.1 (master ``--ports``,
workers the next ports, web UIs from ``--ports + 10``) and stops at the end, whatever happens.
Prints each job's seconds on both masters and the ratio cluster / local, and how many users'
published lists differ (the test, ``tests/test_spark_cluster.py``, says none on small data). On one
machine the cluster cannot be faster: the same cores, plus executors in separate JVMs that exchange
shuffle data over loopback; the figure is what the distribution costs, the price of being able to
add machines.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import sqlite3
import time
from pathlib import Path
from typing import Any

from movierec import settings as settings_module
from movierec.ops import spark_cluster, spark_submit
from movierec.settings import Settings
from simulator import commands

log = logging.getLogger("bench.spark_cluster")
VERSION = "20261201T000000Z"
JOBS = ("prepare", "train", "evaluate", "precompute")
COPIED = ("lake", "world")  # what the retrain reads (the catalog tables live in the lake)


def home_copy(source: Path, target: Path) -> Path:
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True)
    for name in COPIED:
        if (source / name).exists():
            shutil.copytree(source / name, target / name)
    return target


def simulated_home(home: Path, days: float, sessions_per_day: int) -> Path:
    """A home whose lake holds ``days`` of simulated history, made once (kept for re-runs)."""
    from simulator import spam_check

    ready = home / "simulated.json"
    wanted = {"days": days, "sessions_per_day": sessions_per_day}
    if ready.exists() and json.loads(ready.read_text()) == wanted:
        return home
    shutil.rmtree(home, ignore_errors=True)
    env = {k: v for k, v in os.environ.items() if k.startswith("MOVIEREC_")}
    settings = settings_module.load(env | {"MOVIEREC_HOME": str(home)})
    began = time.monotonic()
    site = commands.load_history(settings)
    spam_check.simulated_lake(settings, site, days=days, sessions_per_day=sessions_per_day)
    log.info("simulated lake: %g days in %.0f s", days, time.monotonic() - began)
    ready.write_text(json.dumps(wanted))
    return home


def run_jobs(settings: Settings) -> dict[str, float]:
    seconds = {}
    for job in JOBS:
        began = time.monotonic()
        spark_submit.submit(settings, job, ["--version", VERSION], tag=VERSION)
        seconds[job] = round(time.monotonic() - began, 1)
        log.info("%s on %s: %.1f s", job, settings.spark_master, seconds[job])
    return seconds


def lists(settings: Settings) -> dict[int, str]:
    path = settings.serving_dir / f"recs-{VERSION}.sqlite"
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as connection:
        return dict(connection.execute("SELECT user_id, items FROM recs"))


def local_home(source: Path, work: Path) -> Settings:
    """The settings of a copy of ``source`` that runs the retrain on ``local[*]``."""
    env = {k: v for k, v in os.environ.items() if k.startswith("MOVIEREC_")}
    home = home_copy(source, work / "local")
    return settings_module.load(env | {"MOVIEREC_HOME": str(home), "MOVIEREC_SPARK_MASTER": "local[*]"})


def measure(source: Path, work: Path, cluster_env: dict[str, str]) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if k.startswith("MOVIEREC_")}
    local = local_home(source, work)
    cluster_home = home_copy(source, work / "cluster")
    cluster = settings_module.load(env | cluster_env | {"MOVIEREC_HOME": str(cluster_home)})
    local_seconds = run_jobs(local)
    try:
        log.info("%s", spark_cluster.start(cluster).describe())
        cluster_seconds = run_jobs(cluster)
    finally:
        spark_cluster.stop(cluster)
    expected, got = lists(local), lists(cluster)
    differ = sum(1 for user, line in expected.items() if got.get(user) != line)
    return {
        "seconds": {"local[*]": local_seconds, "cluster": cluster_seconds},
        "ratio": {job: round(cluster_seconds[job] / local_seconds[job], 2) for job in JOBS},
        "users": len(expected),
        "users_with_other_lists": differ + len(got.keys() - expected.keys()),
        "cluster": cluster_env,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ports", type=int, default=30400, help="master port (workers: the next ports)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--worker-cores", type=int, default=1)
    parser.add_argument("--executor-memory", default="4g")
    parser.add_argument("--work", type=Path, default=Path("/tmp/bench-spark-cluster"))
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("--simulate-days", type=float, help="make the source lake: days of simulated history")
    parser.add_argument("--sessions-per-day", type=int, default=commands.DEFAULT_SESSIONS_PER_DAY)
    parser.add_argument(
        "--local-only",
        action="store_true",
        help="only the retrain on local[*] (its home's model report, e.g. for a longer history)",
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    if args.simulate_days:
        source = simulated_home(args.work / "source", args.simulate_days, args.sessions_per_day)
    else:
        source = settings_module.load().home
    if not (source / "lake").exists():
        parser.error(f"{source} has no lake: point MOVIEREC_HOME at a home with one")
    cluster_env = {
        "MOVIEREC_SPARK_CLUSTER_PORT": str(args.ports),
        "MOVIEREC_SPARK_CLUSTER_UI_PORT": str(args.ports + 10),
        "MOVIEREC_SPARK_WORKERS": str(args.workers),
        "MOVIEREC_SPARK_WORKER_CORES": str(args.worker_cores),
        "MOVIEREC_SPARK_EXECUTOR_MEMORY": args.executor_memory,
        "MOVIEREC_SPARK_MASTER": f"spark://{spark_cluster.HOST}:{args.ports}",
    }
    if args.local_only:
        local = local_home(source, args.work)
        print(json.dumps({"seconds": run_jobs(local), "users": len(lists(local)), "home": str(local.home)}))
        return
    figures = measure(source, args.work, cluster_env)
    print(f"{'job':<12} {'local[*] s':>11} {'cluster s':>10} {'cluster/local':>14}")
    for job in JOBS:
        print(
            f"{job:<12} {figures['seconds']['local[*]'][job]:>11.1f} "
            f"{figures['seconds']['cluster'][job]:>10.1f} {figures['ratio'][job]:>14.2f}"
        )
    print(
        f"users {figures['users']:,}, with another list on the cluster: {figures['users_with_other_lists']}"
    )
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
