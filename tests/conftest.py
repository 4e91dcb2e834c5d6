"""Shared fixtures. The Kafka broker here is the real one, started for the test
session on free ports in a temporary home and stopped at the end, so `make test`
needs nothing running and leaves nothing running."""

from __future__ import annotations

import atexit
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from movierec import settings as settings_module
from movierec.ops import airflow_ops
from movierec.ops.broker import broker
from movierec.ops.broker.broker import free_port

if TYPE_CHECKING:
    from simulator.history import History

__all__ = ["AIRFLOW_TEST_SETTINGS", "broker_settings", "free_port", "topics_on_broker"]


def _private_airflow_home() -> settings_module.Settings:
    """Airflow reads its configuration once, when first imported: point it at a private home with the
    repository's airflow.cfg before any test imports it, so no test touches ~/airflow or var/."""
    home = Path(tempfile.mkdtemp(prefix="movierec-airflow-test-"))
    atexit.register(shutil.rmtree, home, ignore_errors=True)
    settings = settings_module.load({"MOVIEREC_HOME": str(home)})
    if "airflow" not in sys.modules:
        env = airflow_ops.airflow_env(settings)
        os.environ.update({k: v for k, v in env.items() if k.startswith("AIRFLOW")})
    return settings


AIRFLOW_TEST_SETTINGS = _private_airflow_home()
# Every DAG of dags/ (a new DAG file goes here once; test_dags and test_airflow_ops both read it).
DAG_IDS = [
    "catalog",
    "experiments",
    "ingest_movielog",
    "online_metrics",
    "rating_spam",
    "reports",
    "retrain",
]


@pytest.fixture(scope="session")
def airflow_db() -> None:
    """A migrated metadata database in the private Airflow home: dag.test() records its runs there."""
    if os.environ.get("AIRFLOW_HOME") != str(airflow_ops.airflow_home(AIRFLOW_TEST_SETTINGS)):
        pytest.skip("Airflow was imported before conftest could give it a private home")
    airflow_ops.migrate_db(AIRFLOW_TEST_SETTINGS)


@pytest.fixture(scope="session")
def dagbag() -> object:
    """The repository's DAG folder, parsed once."""
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(airflow_ops.DAGS_DIR))


def broker_settings(home: Path) -> settings_module.Settings:
    """Settings for a private embedded broker under ``home`` on free ports.

    Time retention of ten years: tests produce records with their data's time as the Kafka
    timestamp (days in November 2026), and the default 14 days would let any retention check
    (every 5 minutes) delete them mid-test once the data is that old.
    """
    return broker.private_settings(
        home, MOVIEREC_KAFKA_HEAP="512m", MOVIEREC_TOPIC_RETENTION_HOURS=str(10 * 365 * 24)
    )


def topics_on_broker(kafka: settings_module.Settings, home: Path, **topics: str) -> settings_module.Settings:
    """Settings of a fresh ``home`` on the session's broker, with ``topics`` (settings fields, e.g.
    ``topic="ingest.test.1"``) set and created with 3 partitions."""
    settings = replace(
        settings_module.load({"MOVIEREC_HOME": str(home)}), kafka_bootstrap=kafka.kafka_bootstrap, **topics
    )
    for name in topics.values():
        broker.ensure_topic(settings, name, partitions=3)
    return settings


@pytest.fixture(scope="session")
def kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[settings_module.Settings]:
    """A running real broker for the whole test session; its settings."""
    settings = broker_settings(tmp_path_factory.mktemp("kafka-home"))
    broker.start(settings)
    broker.ensure_topics(settings)
    try:
        yield settings
    finally:
        broker.stop(settings)


@pytest.fixture(scope="module")
def spark(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    """A local SparkSession with the learning tests' small settings, one per test module."""
    from spark_jobs.session import build_session
    from tests.learning_data import learning_settings

    name = request.module.__name__.rsplit(".", 1)[-1].replace("_", "-")
    session = build_session(learning_settings(tmp_path_factory.mktemp("spark")), name)
    yield session
    session.stop()


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A private MOVIEREC_HOME for the test module; its small simulated world is cached there."""
    return tmp_path_factory.mktemp("home")


@pytest.fixture(scope="module")
def history(home: Path) -> History:
    """The small simulated site (tests.test_simulator_catalog.small_settings) of the module's home."""
    from simulator.commands import load_history
    from tests.test_simulator_catalog import small_settings

    return load_history(small_settings(home))
