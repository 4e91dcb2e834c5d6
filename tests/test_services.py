"""Background services (what `make up` keeps running): started once, ready when their port answers,
stopped with every process below them, and a pid file is never trusted for somebody else's process."""

from __future__ import annotations

import socket
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from movierec.ops import services
from movierec.ops.processes import descendants, is_alive, start_time
from movierec.settings import Settings, child_env
from tests.conftest import free_port
from tests.test_simulator_catalog import small_settings


@pytest.fixture
def site(tmp_path: Path) -> Settings:
    settings = replace(small_settings(tmp_path), api_port=free_port())
    return settings


def test_the_catalog_api_service_starts_once_and_stops_with_its_children(site: Settings) -> None:
    api = services.catalog_of(site)["api"]
    pid = services.start(site, api, child_env(site))
    try:
        assert services.running_pid(site, "api") == pid
        with socket.create_connection(("127.0.0.1", site.api_port), timeout=5):
            pass
        assert services.start(site, api, child_env(site)) == pid  # already running: the same one
        tree = descendants([pid])
    finally:
        assert services.stop(site, api) is True
    assert not [p for p in tree if is_alive(p)]
    assert services.running_pid(site, "api") is None
    assert services.stop(site, api) is False  # nothing left to stop


def test_a_pid_file_naming_another_process_is_not_trusted(site: Settings) -> None:
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        services.run_dir(site).mkdir(parents=True)
        services.pid_file(site, "server").write_text(f"{other.pid} {start_time(other.pid)}\n")
        assert services.running_pid(site, "server") is None  # alive, but not a movierec command
        assert services.stop(site, services.catalog_of(site)["server"]) is False
        assert other.poll() is None  # and it was not touched
    finally:
        other.kill()
        other.wait()


def test_a_taken_port_is_a_clear_error(site: Settings) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", site.api_port))
        taken.listen()
        with pytest.raises(services.ServiceError, match="something else listens"):
            services.start(site, services.catalog_of(site)["api"], child_env(site))


def test_a_service_that_dies_at_start_reports_its_log(site: Settings) -> None:
    broken = services.Service("broken", ("no-such-command",), free_port(), "a broken service")
    with pytest.raises(services.ServiceError, match="did not start") as failure:
        services.start(site, broken, child_env(site), timeout=30)
    assert "invalid choice" in str(failure.value)  # argparse's complaint, from the log's tail
    assert services.running_pid(site, "broken") is None
