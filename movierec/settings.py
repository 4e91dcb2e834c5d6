"""The one settings module: every knob of movierec, read from ``MOVIEREC_*`` variables.

Nothing else in the project reads the environment for its own configuration;
parts call ``load()`` and get a frozen ``Settings``. ``movierec config`` prints
the effective values with where each came from.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
OPS_PORT_OFFSET = 10  # default operator port: 8082 -> 8092 (8083 is the catalog API's)


def _setting(env: str, default: Any, doc: str) -> Any:
    return field(default=default, metadata={"env": env, "doc": doc})


@dataclass(frozen=True)
class Settings:
    home: Path = _setting(
        "MOVIEREC_HOME", REPO_ROOT / "var", "state folder (lake, serving files, Kafka data, logs)"
    )
    kafka_bootstrap: str = _setting(
        "MOVIEREC_KAFKA_BOOTSTRAP", "127.0.0.1:9092", "Kafka bootstrap servers (host:port[,...])"
    )
    kafka_controller_port: int = _setting(
        "MOVIEREC_KAFKA_CONTROLLER_PORT", 9093, "KRaft controller port of the embedded broker"
    )
    kafka_version: str = _setting(
        "MOVIEREC_KAFKA_VERSION", "4.1.1", "org.apache.kafka:kafka_2.13 version of the embedded broker"
    )
    kafka_heap: str = _setting("MOVIEREC_KAFKA_HEAP", "1g", "JVM heap of the embedded broker")
    kafka_cache: Path = _setting(
        "MOVIEREC_KAFKA_CACHE",
        Path.home() / ".cache" / "movierec" / "kafka",
        "where the broker's jars resolved by Maven are kept (survives `make clean`)",
    )
    topic: str = _setting("MOVIEREC_TOPIC", "movielog1", "the site's movielog topic")
    topic_partitions: int = _setting(
        "MOVIEREC_TOPIC_PARTITIONS", 4, "partitions of topics the embedded broker creates"
    )
    topic_retention_hours: int = _setting(
        "MOVIEREC_TOPIC_RETENTION_HOURS", 14 * 24, "retention of the movielog topic"
    )
    served_topic: str = _setting(
        "MOVIEREC_SERVED_TOPIC", "movierec.served", "provenance records of every answer served"
    )
    spark_master: str = _setting("MOVIEREC_SPARK_MASTER", "local[*]", "Spark master URL")
    server_host: str = _setting("MOVIEREC_SERVER_HOST", "127.0.0.1", "recommendation service bind address")
    server_port: int = _setting("MOVIEREC_SERVER_PORT", 8082, "recommendation service port")
    server_ops_port: int = _setting(
        "MOVIEREC_SERVER_OPS_PORT",
        0,
        "recommendation service's operator port (/metrics; 0: the service port + 10)",
    )
    server_ops_host: str = _setting(
        "MOVIEREC_SERVER_OPS_HOST",
        "127.0.0.1",
        "operator port bind address (loopback or an internal network only, never the public one)",
    )
    server_site_clients: str = _setting(
        "MOVIEREC_SERVER_SITE_CLIENTS",
        "127.0.0.1,::1",
        "addresses or networks (comma separated) of the site's request client: never rate-limited",
    )
    server_client_rate: float = _setting(
        "MOVIEREC_SERVER_CLIENT_RATE",
        1.0,
        "/recommend requests/s any other client may make, service-wide (0: no limit)",
    )
    server_client_burst: int = _setting(
        "MOVIEREC_SERVER_CLIENT_BURST", 20, "/recommend requests any other client may make at once"
    )
    server_proxies: int = _setting(
        "MOVIEREC_SERVER_PROXIES",
        0,
        "trusted proxies in front of the service (their X-Forwarded-For names the client; 0: none)",
    )
    api_host: str = _setting("MOVIEREC_API_HOST", "127.0.0.1", "simulator catalog API bind address")
    api_port: int = _setting("MOVIEREC_API_PORT", 8083, "simulator catalog API port")
    api_rate: float = _setting("MOVIEREC_API_RATE", 50.0, "catalog API: requests/s each client may make")
    api_burst: int = _setting("MOVIEREC_API_BURST", 100, "catalog API: burst a client may make at once")
    api_url: str = _setting(
        "MOVIEREC_API_URL", "", "catalog API base URL (default: the simulator's http://<api_host>:<api_port>)"
    )
    airflow_port: int = _setting("MOVIEREC_AIRFLOW_PORT", 8080, "Airflow API server / UI port")
    airflow_parallelism: int = _setting(
        "MOVIEREC_AIRFLOW_PARALLELISM", 4, "Airflow: task instances running at once (about 2 per core)"
    )
    catalog_rate: float = _setting(
        "MOVIEREC_CATALOG_RATE", 40.0, "catalog sync: requests/s we make to the catalog API (below its limit)"
    )
    catalog_max_fetches: int = _setting(
        "MOVIEREC_CATALOG_MAX_FETCHES", 100_000, "catalog sync: most users+movies fetched in one run"
    )
    catalog_sweep_users: bool = _setting(
        "MOVIEREC_CATALOG_SWEEP_USERS",
        True,
        "catalog sync: spend a run's spare fetches on users never seen (ids up to the largest seen)",
    )
    ingest_max_lines: int = _setting(
        "MOVIEREC_INGEST_MAX_LINES", 3_000_000, "ingest: most lines in one batch (it is held in memory whole)"
    )
    quality_max_bad_share: float = _setting(
        "MOVIEREC_QUALITY_MAX_BAD_SHARE",
        0.05,
        "ingest: share of a table's rows failing expectations above which the batch fails (else quarantined)",
    )
    drift_psi_threshold: float = _setting(
        "MOVIEREC_DRIFT_PSI_THRESHOLD", 0.25, "drift: PSI above which a signal is flagged as strong drift"
    )
    drift_reference_days: int = _setting(
        "MOVIEREC_DRIFT_REFERENCE_DAYS", 7, "drift: days of lake data before a batch that form its reference"
    )
    shilling_defence: bool = _setting(
        "MOVIEREC_SHILLING_DEFENCE",
        True,
        "prepare: leave out of training every account the rating-spam detector flagged (shilling_flags)",
    )
    fairness_tail_slots: int = _setting(
        "MOVIEREC_FAIRNESS_TAIL_SLOTS",
        0,
        "precompute: at least this many long-tail movies in each personalised list (tail-quota "
        "re-ranking, docs/fairness.md); 0: off",
    )
    fairness_rerank_depth: int = _setting(
        "MOVIEREC_FAIRNESS_RERANK_DEPTH", 100, "precompute: best-scored movies the tail quota re-ranks from"
    )
    exploration_slots: int = _setting(
        "MOVIEREC_EXPLORATION_SLOTS",
        0,
        "precompute: last slots of each personalised list drawn at random outside the model's top "
        "(logged in the serving file's meta; a feedback-loop mitigation)",
    )
    spark_driver_memory: str = _setting("MOVIEREC_SPARK_DRIVER_MEMORY", "4g", "Spark driver memory")
    spark_executor_memory: str = _setting(
        "MOVIEREC_SPARK_EXECUTOR_MEMORY",
        "2g",
        "Spark executor memory on a cluster master (and what each local standalone worker offers)",
    )
    spark_cluster_port: int = _setting(
        "MOVIEREC_SPARK_CLUSTER_PORT",
        7077,
        "`movierec spark start`: the standalone master's port (worker i: this + i)",
    )
    spark_cluster_ui_port: int = _setting(
        "MOVIEREC_SPARK_CLUSTER_UI_PORT",
        7080,
        "`movierec spark start`: the master's web UI and /json/ status (worker i's UI: this + i)",
    )
    spark_workers: int = _setting("MOVIEREC_SPARK_WORKERS", 2, "`movierec spark start`: worker processes")
    spark_worker_cores: int = _setting(
        "MOVIEREC_SPARK_WORKER_CORES", 1, "`movierec spark start`: cores each worker offers"
    )
    als_rank: int = _setting("MOVIEREC_ALS_RANK", 64, "ALS: latent factors")
    als_reg: float = _setting("MOVIEREC_ALS_REG", 0.05, "ALS: regularization (regParam)")
    als_alpha: float = _setting("MOVIEREC_ALS_ALPHA", 10.0, "ALS: implicit confidence scale (alpha)")
    als_iterations: int = _setting("MOVIEREC_ALS_ITERATIONS", 10, "ALS: iterations (maxIter)")
    als_blocks: int = _setting(
        "MOVIEREC_ALS_BLOCKS", 0, "ALS: user and item blocks (0: from the data, als.block_count)"
    )
    test_days: int = _setting(
        "MOVIEREC_TEST_DAYS", 1, "evaluation: days after the split time T held out as the test window"
    )
    gate_margin: float = _setting(
        "MOVIEREC_GATE_MARGIN", 0.02, "publish: a new model may lose at most this much Recall@20 (absolute)"
    )
    keep_versions: int = _setting("MOVIEREC_KEEP_VERSIONS", 5, "publish: serving files kept for rollback")
    server_workers: int = _setting(
        "MOVIEREC_SERVER_WORKERS", os.cpu_count() or 1, "recommendation service worker processes"
    )
    experiment_file: str = _setting(
        "MOVIEREC_EXPERIMENT_FILE",
        "",
        "A/B experiment config (JSON); default <home>/experiments/current.json, absent = no experiment",
    )
    served_buffer: int = _setting(
        "MOVIEREC_SERVED_BUFFER", 100_000, "server: provenance records buffered while Kafka is unreachable"
    )
    quality_keep_runs: int = _setting(
        "MOVIEREC_QUALITY_KEEP_RUNS", 300, "quality: GX results and data docs pages kept per suite"
    )
    online_window_minutes: float = _setting(
        "MOVIEREC_ONLINE_WINDOW_MINUTES",
        30.0,
        "online metrics: an answer counts as followed if a listed movie starts within this many minutes",
    )
    online_match_seconds: float = _setting(
        "MOVIEREC_ONLINE_MATCH_SECONDS",
        60.0,
        "online metrics: most seconds between a site's reco line and our served record of the same answer",
    )
    site_timezone: str = _setting(
        "MOVIEREC_SITE_TIMEZONE",
        "",
        "IANA time zone of the movielog's local times (default: this machine's, as the simulator writes)",
    )
    prometheus_port: int = _setting("MOVIEREC_PROMETHEUS_PORT", 9090, "Prometheus port")
    alertmanager_port: int = _setting("MOVIEREC_ALERTMANAGER_PORT", 9094, "Alertmanager port")
    prometheus_interval: int = _setting(
        "MOVIEREC_PROMETHEUS_INTERVAL", 15, "Prometheus: seconds between scrapes and between rule evaluations"
    )
    node_exporter_port: int = _setting(
        "MOVIEREC_NODE_EXPORTER_PORT",
        9100,
        "node-exporter: the pipeline's metrics/*.prom files, the machine",
    )
    dashboard_port: int = _setting(
        "MOVIEREC_DASHBOARD_PORT", 9096, "the dashboard page and the alert receiver Alertmanager calls"
    )
    scale_users: int = _setting("MOVIEREC_SCALE_USERS", 1_000_000, "users in the simulated site")
    scale_movies: int = _setting("MOVIEREC_SCALE_MOVIES", 27_000, "movies in the simulated site")
    seed: int = _setting("MOVIEREC_SEED", 17645, "seed of the simulated world")

    @property
    def catalog_api_url(self) -> str:
        return self.api_url or f"http://{self.api_host}:{self.api_port}"

    @property
    def ops_port(self) -> int:
        """The operator port: loopback only, apart from the public recommendation port."""
        return self.server_ops_port or self.server_port + OPS_PORT_OFFSET

    @property
    def serving_dir(self) -> Path:
        return self.home / "serving"

    @property
    def models_dir(self) -> Path:
        return self.home / "models"

    @property
    def reports_dir(self) -> Path:
        return self.home / "reports"

    @property
    def experiment_path(self) -> Path:
        if self.experiment_file:
            return Path(self.experiment_file).expanduser().resolve()
        return self.home / "experiments" / "current.json"

    @property
    def kafka_home(self) -> Path:
        return self.home / "kafka"

    @property
    def log_dir(self) -> Path:
        return self.home / "logs"


class SettingsError(ValueError):
    """A MOVIEREC_* variable holds a value of the wrong type."""


def _convert(name: str, text: str, default: Any) -> Any:
    if isinstance(default, bool):
        return text.lower() in {"1", "true", "yes", "on"}
    if isinstance(default, int):
        try:
            return int(text)
        except ValueError:
            raise SettingsError(f"{name}={text!r} is not an integer") from None
    if isinstance(default, float):
        try:
            return float(text)
        except ValueError:
            raise SettingsError(f"{name}={text!r} is not a number") from None
    if isinstance(default, Path):
        return Path(text).expanduser().resolve()
    return text


def load(env: Mapping[str, str] | None = None) -> Settings:
    """Settings from ``env`` (default: the process environment) over the defaults."""
    env = os.environ if env is None else env
    values = {}
    for spec in fields(Settings):
        name = spec.metadata["env"]
        if name in env and env[name] != "":
            values[spec.name] = _convert(name, env[name], spec.default)
    return Settings(**values)


def describe(settings: Settings, env: Mapping[str, str] | None = None) -> list[dict[str, str]]:
    """One row per knob: variable, effective value, whether it is the default, and what it does."""
    env = os.environ if env is None else env
    return [
        {
            "env": spec.metadata["env"],
            "value": str(getattr(settings, spec.name)),
            "source": "env" if env.get(spec.metadata["env"]) else "default",
            "doc": spec.metadata["doc"],
        }
        for spec in fields(Settings)
    ]


def as_env(settings: Settings) -> dict[str, str]:
    """Every MOVIEREC_* variable with the value ``settings`` holds: a child process loads the same."""
    return {spec.metadata["env"]: str(getattr(settings, spec.name)) for spec in fields(Settings)}


def child_env(settings: Settings) -> dict[str, str]:
    """The environment of a child process: ours, with every MOVIEREC_* set from ``settings``."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("MOVIEREC_")}
    return base | as_env(settings)
