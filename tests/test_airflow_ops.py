"""Airflow as `make up` runs it: the four components in a private home on a free port, healthy,
logged in through the REST API, our DAGs registered, unpaused and runnable, then stopped with
nothing left behind.

Kafka and the catalog API point at a port where nothing listens, so the Airflow started here
can never touch a broker or API that `make up` runs on this machine.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import httpx
import pyarrow as pa
import pytest

from movierec import lake, schemas
from movierec import settings as settings_module
from movierec.ops import airflow_ops, supervisor
from movierec.ops.processes import descendants, is_alive, port_open
from movierec.schemas import RATE
from movierec.settings import Settings
from tests.conftest import DAG_IDS as OUR_DAGS
from tests.conftest import free_port

DEAD = "127.0.0.1:9"  # the discard port: nothing listens there


def airflow_settings(home: Path) -> Settings:
    return settings_module.load(
        {
            "MOVIEREC_HOME": str(home),
            "MOVIEREC_AIRFLOW_PORT": str(free_port()),
            "MOVIEREC_KAFKA_BOOTSTRAP": DEAD,
            "MOVIEREC_API_URL": f"http://{DEAD}",
        }
    )


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    settings = airflow_settings(tmp_path_factory.mktemp("airflow-home"))
    airflow_ops.start(settings)
    try:
        yield settings
    finally:
        airflow_ops.stop(settings)


def login(settings: Settings) -> str:
    answer = httpx.post(
        f"{airflow_ops.api_url(settings)}/auth/token",
        json={"username": airflow_ops.ADMIN_USER, "password": airflow_ops.admin_password(settings)},
        timeout=10,
    )
    assert answer.status_code in (200, 201), answer.text
    return answer.json()["access_token"]


@pytest.mark.slow
def test_start_brings_every_component_up_healthy_each_in_its_own_group(running: Settings) -> None:
    health = airflow_ops.health(running)
    for part in ("metadatabase", "scheduler", "triggerer", "dag_processor"):
        assert health[part]["status"] == "healthy", health
    pids = airflow_ops.running(running)
    assert sorted(pids) == sorted(airflow_ops.COMPONENTS)
    for pid in pids.values():
        assert os.getpgid(pid) == pid  # its own process group: stop() signals the whole group
    state = airflow_ops.status(running)
    assert state.healthy
    assert f"http://127.0.0.1:{running.airflow_port}: up" in state.describe()
    for component in airflow_ops.COMPONENTS:
        assert (airflow_ops.logs_dir(running) / f"{component}.log").stat().st_size > 0
    # a second start finds them running and starts nothing
    assert airflow_ops.start(running) == pids


@pytest.mark.slow
def test_the_api_needs_a_login_and_lists_our_dags(running: Settings) -> None:
    url = airflow_ops.api_url(running)
    assert httpx.get(f"{url}/api/v2/dags", timeout=10).status_code == 401
    wrong = httpx.post(
        f"{url}/auth/token", json={"username": "admin", "password": "not-the-password"}, timeout=10
    )
    assert wrong.status_code == 401
    token = login(running)
    deadline = time.monotonic() + 60  # the dag-processor registers the files shortly after start
    while True:
        answer = httpx.get(f"{url}/api/v2/dags", headers={"Authorization": f"Bearer {token}"}, timeout=10)
        assert answer.status_code == 200
        dags = {d["dag_id"]: d for d in answer.json()["dags"]}
        if set(OUR_DAGS) <= dags.keys() or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert sorted(dags) == OUR_DAGS  # no examples
    assert all(d["is_paused"] for d in dags.values())  # new DAGs wait paused until `make up` unpauses
    assert dags["ingest_movielog"]["max_active_runs"] == 1


@pytest.mark.slow
def test_unpause_all_switches_our_dags_on_but_the_ones_kept_paused(running: Settings) -> None:
    # retrain stays off here: unpaused, its schedule would start a real retrain in the test Airflow
    switched = [name for name in OUR_DAGS if name != "retrain"]
    assert airflow_ops.unpause_all(running, keep_paused=["retrain"]) == switched
    with airflow_ops.api_client(running) as client:
        paused = {d["dag_id"]: d["is_paused"] for d in airflow_ops.list_dags(client)}
    assert paused == {name: name == "retrain" for name in OUR_DAGS}
    assert airflow_ops.active_runs(running, "retrain") == []


@pytest.mark.slow
def test_a_task_runs_under_the_scheduler_with_our_settings(running: Settings) -> None:
    """The catalog DAG through the LocalExecutor: the task must see this MOVIEREC_HOME (its lake)."""
    moment = datetime(2026, 11, 28, 9)
    # The catalog is unpaused (the test before), so its scheduled hourly run may read the lake at any
    # moment: the users and the movie are stored before the events that name them, so no state of
    # the lake sends a run to the (unreachable) catalog API, whose failure would mean a 10-minute
    # retry ahead of our run. Users 1 and 2: no lower id to sweep.
    stamp = datetime(2026, 11, 28, tzinfo=UTC)
    users = [
        {"user_id": u, "age": 25, "occupation": "writer", "gender": "F", "fetched_at": stamp} for u in (1, 2)
    ]
    lake.write_parquet_atomically(
        pa.Table.from_pylist(users, schema=schemas.USERS),
        lake.table_dir(running, "users") / "part-x.parquet",
    )
    movie = {"id": "some+film+1999", "title": "Some Film", "genres": ["Drama"], "fetched_at": stamp}
    lake.write_parquet_atomically(
        pa.Table.from_pylist([movie], schema=schemas.MOVIES),
        lake.table_dir(running, "movies") / "part-x.parquet",
    )
    rates = [
        {"time": moment, "user_id": u, "movie_id": "some+film+1999", "rating": 3, "partition": 0, "offset": u}
        for u in (1, 2)
    ]
    path = lake.partition_dir(running, "rate", moment) / lake.batch_file_name("b1")
    lake.write_parquet_atomically(pa.Table.from_pylist(rates, schema=RATE), path)

    run = airflow_ops.trigger(running, "catalog")
    # max_active_runs=1: ours may queue behind the scheduled run, each a fresh task process (a
    # bound against a hang, not a speed check)
    assert airflow_ops.wait_for_run(running, "catalog", run, timeout=300, poll=1) == "success"
    # what catching up waits on: the tasks of a run, not the whole run
    assert airflow_ops.task_states(running, "catalog", run) == {"sync_catalog": "success"}
    assert (
        airflow_ops.wait_for_tasks(running, "catalog", run, ["sync_catalog"], timeout=60, poll=1) == "success"
    )
    # a task the run does not have never succeeds: the ended run answers instead of a wait to the timeout
    assert (
        airflow_ops.wait_for_tasks(running, "catalog", run, ["no_such_task"], timeout=60, poll=1) == "failed"
    )
    with airflow_ops.api_client(running) as client:
        xcom = client.get(
            f"/api/v2/dags/catalog/dagRuns/{run}/taskInstances/sync_catalog/xcomEntries/return_value"
        )
    report = xcom.json()["value"]
    assert report["status"] == "complete"
    assert (report["users"]["seen"], report["movies"]["seen"]) == (2, 1)  # this home's lake
    assert report["requests"] == 0


@pytest.mark.slow
def test_a_component_killed_is_restarted_by_the_supervisor(running: Settings) -> None:
    before = airflow_ops.running(running)["triggerer"]
    os.kill(before, signal.SIGKILL)
    deadline = time.monotonic() + 120
    while airflow_ops.running(running).get("triggerer") in (None, before) and time.monotonic() < deadline:
        time.sleep(0.2)
    after = airflow_ops.running(running).get("triggerer")
    assert after not in (None, before)
    airflow_ops.wait_until_healthy(running, timeout=120)  # and it reports healthy again


@pytest.mark.slow
def test_stop_leaves_no_process_behind(running: Settings) -> None:
    roots = airflow_ops.running(running)
    tree = descendants(roots.values())  # workers, log servers, task processes
    assert len(tree) > len(roots)

    assert airflow_ops.stop(running) is True

    assert not [pid for pid in tree if is_alive(pid)]
    assert airflow_ops.running(running) == {}
    assert not supervisor.is_running(running)  # its last program stopped: supervisord exited too
    home = str(airflow_ops.airflow_home(running)).encode()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            try:
                cmdline = (entry / "cmdline").read_bytes()
                environ = (entry / "environ").read_bytes()
                cwd = str((entry / "cwd").resolve()).encode()
            except OSError:
                continue
            assert home not in cmdline, f"process {entry.name} of this Airflow still runs"
            # e.g. the log server of the component the test before killed, orphaned to init
            assert not cwd.startswith(home), f"process {entry.name} still runs in this Airflow's home"
            assert b"AIRFLOW_HOME=" + home not in environ.split(b"\0"), f"process {entry.name} still runs"
    assert not port_open(running.airflow_port)
    assert airflow_ops.stop(running) is False  # nothing left to stop
    assert not airflow_ops.status(running).healthy


# --- without starting Airflow ---------------------------------------------------------------


def test_nothing_runs_where_nothing_was_started(tmp_path: Path) -> None:
    settings = airflow_settings(tmp_path)
    assert airflow_ops.running(settings) == {}
    assert airflow_ops.stop(settings) is False


def test_start_refuses_a_port_someone_else_uses(tmp_path: Path) -> None:
    settings = airflow_settings(tmp_path)
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", settings.airflow_port))
        squatter.listen()
        with pytest.raises(airflow_ops.AirflowOpsError, match="something else listens"):
            airflow_ops.start(settings)
    assert airflow_ops.running(settings) == {}


def test_the_environment_points_airflow_at_this_home_and_the_repo(tmp_path: Path) -> None:
    settings = airflow_settings(tmp_path)
    env = airflow_ops.airflow_env(settings)
    home = tmp_path / "airflow"
    assert env["AIRFLOW_HOME"] == str(home)
    assert env["AIRFLOW_CONFIG"] == str(settings_module.REPO_ROOT / "airflow.cfg")
    assert env["AIRFLOW__CORE__DAGS_FOLDER"] == str(settings_module.REPO_ROOT / "dags")
    assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] == f"sqlite:///{home}/airflow.db"
    assert env["AIRFLOW__API__PORT"] == str(settings.airflow_port)
    assert (
        env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"]
        == f"http://127.0.0.1:{settings.airflow_port}/execution/"
    )
    assert env["AIRFLOW__CORE__PARALLELISM"] == "4"
    # tasks load the same settings as whoever started Airflow
    assert settings_module.load(env) == settings
    # the shared secrets are made once and kept
    assert (
        airflow_ops.airflow_env(settings)["AIRFLOW__API_AUTH__JWT_SECRET"]
        == env["AIRFLOW__API_AUTH__JWT_SECRET"]
    )
    assert (airflow_ops.secrets_file(settings).stat().st_mode & 0o777) == 0o600
    # the admin of the password file is the one airflow.cfg declares
    config = (settings_module.REPO_ROOT / "airflow.cfg").read_text()
    assert f"simple_auth_manager_users = {airflow_ops.ADMIN_USER}:admin" in config


class LockedAirflow(BaseHTTPRequestHandler):
    """A stand-in for Airflow's REST API (named so: a locked SQLite database cannot be made on
    demand in the real one): logs in, then answers each trigger or unpause with the next planned
    status."""

    planned: ClassVar[list[int]] = []
    bodies: ClassVar[list[dict]] = []

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])) or b"{}")
        if self.path == "/auth/token":
            status, answer = 201, {"access_token": "t"}
        else:
            type(self).bodies.append(body)
            status = type(self).planned.pop(0)
            answer = {"dag_run_id": body.get("dag_run_id"), "detail": {"reason": "Database error"}}
        data = json.dumps(answer).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_PATCH(self) -> None:
        self.do_POST()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def locked_airflow(tmp_path: Path) -> Iterator[tuple[Settings, type[LockedAirflow]]]:
    settings = airflow_settings(tmp_path)
    airflow_ops.password_file(settings).parent.mkdir(parents=True, exist_ok=True)
    airflow_ops.password_file(settings).write_text(json.dumps({airflow_ops.ADMIN_USER: "pw"}))
    handler = type("Handler", (LockedAirflow,), {"planned": [], "bodies": []})
    server = ThreadingHTTPServer(("127.0.0.1", settings.airflow_port), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield settings, handler
    finally:
        server.shutdown()
        server.server_close()


def test_a_trigger_that_finds_the_database_locked_is_repeated_with_the_same_run_id(
    locked_airflow: tuple[Settings, type[LockedAirflow]],
) -> None:
    settings, handler = locked_airflow
    handler.planned = [500, 409]  # the first attempt did create the run before failing
    run = airflow_ops.trigger(settings, "catalog", {"k": 1})
    assert [body["dag_run_id"] for body in handler.bodies] == [run, run]
    assert handler.bodies[0]["conf"] == {"k": 1}


def test_a_trigger_refused_for_another_reason_is_not_repeated(
    locked_airflow: tuple[Settings, type[LockedAirflow]],
) -> None:
    settings, handler = locked_airflow
    handler.planned = [409]  # a run of that id existed before our first attempt: not ours
    with pytest.raises(airflow_ops.AirflowOpsError, match="409"):
        airflow_ops.trigger(settings, "catalog")
    handler.planned = [500, 500]
    with pytest.raises(airflow_ops.AirflowOpsError, match="500"):
        airflow_ops.trigger(settings, "catalog", attempts=2)
    assert len(handler.bodies) == 3


def test_an_unpause_that_finds_the_database_locked_is_repeated(
    locked_airflow: tuple[Settings, type[LockedAirflow]],
) -> None:
    """What ended a make up of 2026-12-03: the last ingest run's tasks held the SQLite database
    while catching up unpaused the DAG (500 after Airflow's 5 s busy timeout)."""
    settings, handler = locked_airflow
    handler.planned = [500, 200]
    airflow_ops.unpause(settings, "ingest_movielog")
    assert handler.bodies == [{"is_paused": False}] * 2
    handler.planned = [500, 500]
    with pytest.raises(airflow_ops.AirflowOpsError, match="unpausing ingest_movielog failed: 500"):
        airflow_ops.unpause(settings, "ingest_movielog", attempts=2)
    handler.planned = [404]  # not a lock: not repeated
    with pytest.raises(airflow_ops.AirflowOpsError, match="404"):
        airflow_ops.unpause(settings, "nope")
    assert len(handler.bodies) == 5
