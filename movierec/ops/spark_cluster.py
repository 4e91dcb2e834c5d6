"""A local Spark standalone cluster: one master and ``MOVIEREC_SPARK_WORKERS`` workers, each its own
JVM started with the pip package's ``spark-class`` (no Spark download), under supervisord.

    movierec spark start      # master spark://127.0.0.1:<MOVIEREC_SPARK_CLUSTER_PORT>, then the workers
    MOVIEREC_SPARK_MASTER=spark://127.0.0.1:7077 movierec ...   # the jobs run on it
    movierec spark status     # the master's /json/: its state and the ALIVE workers
    movierec spark stop

Ports (127.0.0.1): the master on ``spark_cluster_port``, worker *i* (1..n) on ``spark_cluster_port + i``;
the master's web UI (and its ``/json/`` status, which tells when the cluster is ready: the master
ALIVE and every worker registered ALIVE) on ``spark_cluster_ui_port``, worker *i*'s UI on
``spark_cluster_ui_port + i``. Each worker offers ``spark_worker_cores`` cores and
``spark_executor_memory`` (one executor per application per worker). Files under
``$MOVIEREC_HOME``: the daemons' logs in ``logs/spark-<name>.log``, each worker's scratch (shuffle,
spill) and work folder (the executors' stdout/stderr, per application) in
``spark-cluster/<worker>/``. A user with a cluster of their own never calls this: they set
``MOVIEREC_SPARK_MASTER`` (README: what the driver and the executors must share).
"""

from __future__ import annotations

import json
import logging
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from movierec.ops import supervisor
from movierec.ops.processes import port_open, tail
from movierec.settings import Settings

log = logging.getLogger(__name__)

HOST = "127.0.0.1"
MASTER_CLASS = "org.apache.spark.deploy.master.Master"
WORKER_CLASS = "org.apache.spark.deploy.worker.Worker"
MASTER = "spark-master"
DAEMON_MEMORY = "512m"  # the master's and workers' own heaps (executors get spark_executor_memory)
APP_DATA_DAYS = 7  # a worker deletes finished applications' folders (executor logs, jars) after this


class ClusterError(RuntimeError):
    """The cluster did not start (a daemon's log tail says why) or its ports are someone else's."""


def spark_home() -> Path:
    """The pip package's Spark: its ``bin/spark-class`` and ``jars/`` are a full Spark runtime."""
    import pyspark

    return Path(pyspark.__file__).parent


def master_url(settings: Settings) -> str:
    return f"spark://{HOST}:{settings.spark_cluster_port}"


def ui_url(settings: Settings) -> str:
    return f"http://{HOST}:{settings.spark_cluster_ui_port}"


def worker_names(settings: Settings) -> list[str]:
    return [f"spark-worker-{i}" for i in range(1, settings.spark_workers + 1)]


def cluster_dir(settings: Settings) -> Path:
    return settings.home / "spark-cluster"


def log_file(settings: Settings, name: str) -> Path:
    return settings.log_dir / f"{name}.log"


def ports(settings: Settings) -> dict[str, tuple[int, int]]:
    """(port, web UI port) of the master and of every worker, by program name."""
    found = {MASTER: (settings.spark_cluster_port, settings.spark_cluster_ui_port)}
    for i, name in enumerate(worker_names(settings), start=1):
        found[name] = (settings.spark_cluster_port + i, settings.spark_cluster_ui_port + i)
    return found


def daemon_env(settings: Settings, scratch: Path | None = None) -> dict[str, str]:
    """What spark-class needs (SPARK_HOME: the pip package has no launcher config of its own)."""
    env = {
        "SPARK_HOME": str(spark_home()),
        "SPARK_LOCAL_IP": HOST,  # bind and advertise loopback, never the machine's public address
        "SPARK_DAEMON_MEMORY": DAEMON_MEMORY,
        "SPARK_LOG_DIR": str(settings.log_dir),
        # executors start Python workers (precompute's mapInArrow) with this venv's numpy/pyarrow
        "PYSPARK_PYTHON": sys.executable,
    }
    if scratch is not None:
        env["SPARK_LOCAL_DIRS"] = str(scratch)
        env["SPARK_WORKER_OPTS"] = (
            "-Dspark.worker.cleanup.enabled=true "
            f"-Dspark.worker.cleanup.appDataTtl={APP_DATA_DAYS * 24 * 3600}"
        )
    return env


def worker_command(settings: Settings, name: str, spark_class: str) -> list[str]:
    port, ui_port = ports(settings)[name]
    command = [
        spark_class, WORKER_CLASS,
        "--host", HOST, "--port", str(port), "--webui-port", str(ui_port),
        "--cores", str(settings.spark_worker_cores),
        "--memory", settings.spark_executor_memory,
        "--work-dir", str(cluster_dir(settings) / name / "work"),
        master_url(settings),
    ]  # fmt: skip
    return command


def programs(settings: Settings) -> list[supervisor.Program]:
    """The master, then the workers, as supervisord programs (start in this order, stop reversed)."""
    spark_class = str(spark_home() / "bin" / "spark-class")
    port, ui_port = ports(settings)[MASTER]
    found = [
        supervisor.Program(
            MASTER,
            [spark_class, MASTER_CLASS, "--host", HOST, "--port", str(port), "--webui-port", str(ui_port)],
            log=log_file(settings, MASTER),
            cwd=settings.home,
            env=daemon_env(settings),
            start_seconds=1,
        )
    ]
    for name in worker_names(settings):
        folder = cluster_dir(settings) / name
        found.append(
            supervisor.Program(
                name,
                worker_command(settings, name, spark_class),
                log=log_file(settings, name),
                cwd=settings.home,
                env=daemon_env(settings, scratch=folder / "local"),
                start_seconds=1,
            )
        )
    return found


# --- state ------------------------------------------------------------------------------------


def master_json(settings: Settings, timeout: float = 5.0) -> dict[str, Any] | None:
    """The master's status page as JSON (``/json/``), or None when nothing answers there."""
    try:
        with urllib.request.urlopen(f"{ui_url(settings)}/json/", timeout=timeout) as answer:
            return json.load(answer)
    except (OSError, urllib.error.URLError, ValueError):
        return None


@dataclass(frozen=True)
class ClusterState:
    url: str
    ui: str
    master: str | None  # the master's status (ALIVE, STANDBY, ...), None when it does not answer
    workers: list[dict[str, Any]] = field(default_factory=list)  # the ALIVE ones, as /json/ lists them
    expected: int = 0
    applications: list[str] = field(default_factory=list)  # running applications' names

    @property
    def healthy(self) -> bool:
        return self.master == "ALIVE" and len(self.workers) >= self.expected

    def describe(self) -> str:
        if self.master is None:
            return f"spark cluster: no master answers at {self.ui}"
        alive = f"{len(self.workers)}/{self.expected} workers ALIVE"
        lines = [f"spark cluster: master {self.url} {self.master}, {alive}  (UI {self.ui})"]
        lines += [
            f"  worker {w['host']}:{w['port']}  {w['cores']} cores ({w['coresused']} used), "
            f"{w['memory']} MB ({w['memoryused']} used)  UI {w['webuiaddress']}"
            for w in self.workers
        ]
        if self.applications:
            lines.append(f"  running: {', '.join(self.applications)}")
        return "\n".join(lines)


def status(settings: Settings) -> ClusterState:
    page = master_json(settings)
    if page is None:
        return ClusterState(master_url(settings), ui_url(settings), None, expected=settings.spark_workers)
    return ClusterState(
        page.get("url", master_url(settings)),
        ui_url(settings),
        page.get("status"),
        [w for w in page.get("workers", []) if w.get("state") == "ALIVE"],
        settings.spark_workers,
        [app.get("name", "?") for app in page.get("activeapps", [])],
    )


def worker_json(worker: dict[str, Any], timeout: float = 5.0) -> dict[str, Any] | None:
    """A worker's own status page (``<its web UI>/json/``: its executors, running and finished)."""
    try:
        with urllib.request.urlopen(f"{worker['webuiaddress']}/json/", timeout=timeout) as answer:
            return json.load(answer)
    except (OSError, urllib.error.URLError, ValueError):
        return None


# --- start and stop ---------------------------------------------------------------------------


def _wait(settings: Settings, name: str, ready: Any, what: str, timeout: float) -> None:
    """Wait until ``ready()`` holds; fail at once when program ``name`` died (its log's tail)."""
    deadline = time.monotonic() + timeout
    while not ready():
        try:
            supervisor.check_alive(settings, name)
        except supervisor.SupervisorError as exc:
            raise ClusterError(f"{name} died before {what}: {exc}") from None
        if time.monotonic() > deadline:
            raise ClusterError(
                f"{name}: not {what} within {timeout:.0f} s (log {log_file(settings, name)}):\n"
                f"{tail(log_file(settings, name))}"
            )
        time.sleep(0.2)


def _check_ports_free(settings: Settings) -> None:
    taken = [
        f"{port} ({name})"
        for name, pair in ports(settings).items()
        for port in pair
        if supervisor.pid(settings, name) is None and port_open(port)
    ]
    if taken:
        raise ClusterError(f"something else listens on 127.0.0.1: {', '.join(taken)}")


def start(settings: Settings, timeout: float = 180.0) -> ClusterState:
    """Start the master and the workers unless they run; return once every worker is ALIVE at the
    master. A daemon that dies, or a cluster not ready in ``timeout`` seconds, stops the rest."""
    if settings.spark_workers < 1 or settings.spark_worker_cores < 1:
        raise ClusterError("MOVIEREC_SPARK_WORKERS and MOVIEREC_SPARK_WORKER_CORES must be at least 1")
    _check_ports_free(settings)
    master, *workers = programs(settings)
    try:
        supervisor.start(settings, master)
        _wait(
            settings,
            MASTER,
            lambda: status(settings).master == "ALIVE",
            f"ALIVE at {ui_url(settings)}/json/",
            timeout,
        )
        for worker in workers:
            cluster_dir(settings).joinpath(worker.name).mkdir(parents=True, exist_ok=True)
            supervisor.start(settings, worker)
        for worker in workers:
            port = ports(settings)[worker.name][0]
            _wait(
                settings,
                worker.name,
                lambda port=port: any(w["port"] == port for w in status(settings).workers),
                "registered ALIVE at the master",
                timeout,
            )
    except (ClusterError, supervisor.SupervisorError) as exc:
        stop(settings)
        raise ClusterError(str(exc)) from None
    state = status(settings)
    log.info("spark cluster ready: %s with %d workers", state.url, len(state.workers))
    return state


def stop(settings: Settings) -> bool:
    """Stop the workers, then the master (each with every process below it: executors, Python
    workers); True if any was running. supervisord exits too when it has nothing else to run."""
    names = [*reversed(worker_names(settings)), MASTER]
    stopped = [supervisor.stop(settings, name, last_out=False) for name in names]
    supervisor.shutdown_if_idle(settings)
    return any(stopped)
