"""Shared fixtures. The Kafka broker here is the real one, started for the test
session on free ports in a temporary home and stopped at the end, so `make test`
needs nothing running and leaves nothing running."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from movierec import settings as settings_module
from movierec.broker import broker
from movierec.broker.broker import free_port

__all__ = ["broker_settings", "free_port"]


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
