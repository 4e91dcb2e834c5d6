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
from pathlib import Path

import pytest

from movierec import settings as settings_module
from movierec.ops import airflow_ops
from movierec.ops.broker import broker
from movierec.ops.broker.broker import free_port

__all__ = ["AIRFLOW_TEST_SETTINGS", "broker_settings", "free_port"]


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
    """Settings for a private embedded broker under ``home`` on free ports."""
    return broker.private_settings(home, MOVIEREC_KAFKA_HEAP="512m")


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
