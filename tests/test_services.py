"""Background services (what `make up` keeps running) under supervisord: started once, ready when
their port answers, restarted when they die, given up after their retries when they die at start,
and stopped with every process below them and the supervisor itself."""

from __future__ import annotations

import os
import signal
import socket
import time
from dataclasses import replace
from pathlib import Path

import pytest

from movierec.ops import services, supervisor
from movierec.ops.processes import descendants, is_alive
from movierec.settings import Settings
from tests.conftest import free_port
from tests.test_simulator_catalog import small_settings


@pytest.fixture
def site(tmp_path: Path) -> Settings:
    return replace(small_settings(tmp_path), api_port=free_port())


def wait_for(condition: object, what: str, timeout: float = 60.0) -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()  # type: ignore[operator]
        if value:
            return value
        time.sleep(0.1)
    pytest.fail(f"timed out waiting for {what}")


def test_the_catalog_api_service_starts_once_and_stops_with_its_children(site: Settings) -> None:
    api = services.catalog_of(site)["api"]
    pid = services.start(site, api)
    try:
        assert services.running_pid(site, "api") == pid
        with socket.create_connection(("127.0.0.1", site.api_port), timeout=5):
            pass
        assert services.start(site, api) == pid  # already running: the same one
        assert os.getpgid(pid) == pid  # its own process group: a stop signals all of it
        tree = descendants([pid])
        supervisord = supervisor.rpc(site).supervisor.getPID()
    finally:
        assert services.stop(site, api) is True
    assert not [p for p in tree if is_alive(p)]
    assert services.running_pid(site, "api") is None
    assert not is_alive(supervisord) and not supervisor.is_running(site)  # its last program stopped
    assert services.stop(site, api) is False  # nothing left to stop


def test_a_service_killed_is_restarted_by_the_supervisor(site: Settings) -> None:
    api = services.catalog_of(site)["api"]
    first = services.start(site, api)
    try:
        os.kill(first, signal.SIGKILL)
        second = wait_for(
            lambda: (p := services.running_pid(site, "api")) not in (None, first) and p, "a restart"
        )
        wait_for(lambda: socket.socket().connect_ex(("127.0.0.1", site.api_port)) == 0, "the port again")
        assert second != first
    finally:
        services.stop(site, api)


def test_a_taken_port_is_a_clear_error(site: Settings) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", site.api_port))
        taken.listen()
        with pytest.raises(services.ServiceError, match="something else listens"):
            services.start(site, services.catalog_of(site)["api"])


def test_a_service_that_dies_at_start_is_retried_then_given_up_with_its_log(site: Settings) -> None:
    broken = services.Service("broken", services.movierec("no-such-command"), free_port(), "a broken service")
    with pytest.raises(services.ServiceError, match="did not start") as failure:
        services.start(site, broken, timeout=120)
    assert "invalid choice" in str(failure.value)  # argparse's complaint, from the log's tail
    assert services.running_pid(site, "broken") is None
    # supervisord's back-off: it tried again, several times, before it gave up (FATAL)
    assert (site.log_dir / "broken.log").read_text().count("invalid choice") >= 2
    assert not supervisor.is_running(site)


def test_the_probe_pages_for_a_program_that_died_not_for_one_stopped_on_request(site: Settings) -> None:
    from movierec.monitoring.probe import SupervisorState, program_up

    # supervisord's own state names: the ones after an unexpected end are down
    assert [program_up(s) for s in ("RUNNING", "STARTING", "BACKOFF", "EXITED", "FATAL", "UNKNOWN")] == [
        1, 0, 0, 0, 0, 0,
    ]  # fmt: skip
    state = SupervisorState(site)
    api = services.catalog_of(site)["api"]
    services.start(site, api)

    def up() -> float | None:
        return state.probe().get_sample_value("movierec_supervised_up", {"program": "api"})

    try:
        # the port answers before supervisord calls it RUNNING (after startsecs): STARTING is 0
        wait_for(lambda: up() == 1, "supervisord to call the api RUNNING")
        supervisor.rpc(site).supervisor.stopProcess("api")  # an operator's stop (or `up --no-live`)
        assert up() is None
        supervisor.rpc(site).supervisor.startProcess("api")
        wait_for(lambda: up() == 1, "the api RUNNING again")
    finally:
        services.stop(site, api)
