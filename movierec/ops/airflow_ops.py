"""Run Airflow for movierec: its environment, start, stop, status, unpausing our DAGs.

Four components (api-server, scheduler, dag-processor, triggerer), each a supervisord
program ``airflow-<component>`` (``movierec.ops.supervisor``: its own process group,
restarted if it dies) with its output in ``$MOVIEREC_HOME/airflow/logs/<component>.log``.
"Started" means ``/api/v2/monitor/health`` reports every component healthy, not
that the port is open.

Stopping: Airflow shuts down cleanly on SIGINT (SIGTERM alone can leave its
workers behind), so supervisord sends SIGINT to each component's group, the API
server last (running tasks report their end through it), and SIGKILL after a
timeout. Task processes put themselves in process groups of their own, so any
process left whose environment names our ``AIRFLOW_HOME`` is stopped afterwards.

This module never imports Airflow: the CLI stays fast and talks to the
components over HTTP.
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import httpx

from movierec.files import atomic_write
from movierec.ops import supervisor
from movierec.ops.processes import (
    ancestors,
    cmdline,
    descendants,
    port_open,
    signal_groups,
    wait_gone,
)
from movierec.ops.supervisor import Program
from movierec.settings import REPO_ROOT, Settings, as_env

log = logging.getLogger(__name__)

CONFIG_FILE = REPO_ROOT / "airflow.cfg"
DAGS_DIR = REPO_ROOT / "dags"
ADMIN_USER = "admin"  # as in airflow.cfg, [core] simple_auth_manager_users
# Start order: the API first (tasks report through its execution API), scheduler last but one.
COMPONENTS = ("api-server", "dag-processor", "scheduler", "triggerer")
HEALTH_PATH = "/api/v2/monitor/health"
HEALTH_PARTS = ("metadatabase", "scheduler", "triggerer", "dag_processor")


class AirflowOpsError(RuntimeError):
    """Airflow could not be started, reached or stopped."""


# --- paths and environment ----------------------------------------------------


def airflow_home(settings: Settings) -> Path:
    return settings.home / "airflow"


def logs_dir(settings: Settings) -> Path:
    return airflow_home(settings) / "logs"


def password_file(settings: Settings) -> Path:
    return airflow_home(settings) / "simple_auth_manager_passwords.json.generated"


def secrets_file(settings: Settings) -> Path:
    return airflow_home(settings) / "secrets.json"


def api_url(settings: Settings) -> str:
    return f"http://127.0.0.1:{settings.airflow_port}"


def _secrets(settings: Settings) -> dict[str, str]:
    """Keys every component must share, generated once (a restart keeps sessions and
    encrypted connections valid); never in the repository."""
    path = secrets_file(settings)
    with contextlib.suppress(FileNotFoundError, ValueError):
        values = json.loads(path.read_text())
        if isinstance(values, dict) and {"fernet_key", "jwt_secret", "api_secret_key"} <= values.keys():
            return values
    values = {
        # a Fernet key is 32 url-safe base64 bytes
        "fernet_key": base64.urlsafe_b64encode(secrets.token_bytes(32)).decode(),
        "jwt_secret": secrets.token_urlsafe(48),
        "api_secret_key": secrets.token_urlsafe(32),
    }
    with atomic_write(path) as staging:
        fd = os.open(staging, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # never readable by others
        with os.fdopen(fd, "w") as handle:
            json.dump(values, handle)
    return values


def movierec_env(settings: Settings) -> dict[str, str]:
    """Every MOVIEREC_* variable with the value ``settings`` holds, so tasks load the same settings."""
    return as_env(settings)


def airflow_env(settings: Settings) -> dict[str, str]:
    """The variables Airflow (and every task it runs) needs on top of the process environment."""
    home = airflow_home(settings)
    keys = _secrets(settings)
    port = settings.airflow_port
    return {
        **movierec_env(settings),
        "AIRFLOW_HOME": str(home),
        "AIRFLOW_CONFIG": str(CONFIG_FILE),
        "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS_DIR),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(home / "plugins"),
        "AIRFLOW__CORE__PARALLELISM": str(settings.airflow_parallelism),
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(password_file(settings)),
        # the default is http://localhost:8080/execution/, wrong for any other port
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{api_url(settings)}/execution/",
        "AIRFLOW__CORE__FERNET_KEY": keys["fernet_key"],
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
        "AIRFLOW__API__PORT": str(port),
        "AIRFLOW__API__SECRET_KEY": keys["api_secret_key"],
        "AIRFLOW__API_AUTH__JWT_SECRET": keys["jwt_secret"],
        "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(logs_dir(settings)),
        "AIRFLOW__LOGGING__DAG_PROCESSOR_CHILD_PROCESS_LOG_DIRECTORY": str(
            logs_dir(settings) / "dag_processor"
        ),
        # default: $TMPDIR/airflow, shared by every Airflow on the machine
        "AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_STORAGE_PATH": str(home / "bundles"),
    }


def _process_env(settings: Settings) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("MOVIEREC_")}
    return base | airflow_env(settings)


def _airflow_command(*args: str) -> list[str]:
    # the interpreter of this venv, whatever the PATH says
    return [sys.executable, "-m", "airflow", *args]


# --- the metadata database ----------------------------------------------------


def migrate_db(settings: Settings) -> bool:
    """``airflow db migrate`` once per Airflow version (it takes seconds); True if it ran."""
    version = metadata.version("apache-airflow-core")
    stamp = airflow_home(settings) / f".migrated-{version}"
    if stamp.exists() and (airflow_home(settings) / "airflow.db").exists():
        return False
    logs_dir(settings).mkdir(parents=True, exist_ok=True)
    log.info("migrating the Airflow metadata database in %s", airflow_home(settings))
    result = subprocess.run(
        _airflow_command("db", "migrate"),
        env=_process_env(settings),
        capture_output=True,
        text=True,
        check=False,
        cwd=airflow_home(settings),
    )
    if result.returncode != 0:
        raise AirflowOpsError(f"airflow db migrate failed:\n{(result.stdout + result.stderr)[-3000:]}")
    stamp.write_text(f"{version}\n")
    return True


# --- processes -----------------------------------------------------------------


def program_name(component: str) -> str:
    return f"airflow-{component}"


def program(settings: Settings, component: str) -> Program:
    return Program(
        program_name(component),
        _airflow_command(component),
        log=logs_dir(settings) / f"{component}.log",
        cwd=airflow_home(settings),
        env=airflow_env(settings),
        stop_signal="INT",  # Airflow's clean shutdown
        stop_wait=30,
        start_seconds=5,
    )


def running(settings: Settings) -> dict[str, int]:
    """component -> pid of the components of this MOVIEREC_HOME that supervisord runs."""
    pids = {c: supervisor.pid(settings, program_name(c)) for c in COMPONENTS}
    return {c: pid for c, pid in pids.items() if pid is not None}


def processes_of_home(settings: Settings) -> set[int]:
    """Airflow processes whose environment names our AIRFLOW_HOME, or that run inside it: leftovers
    whose parent is gone. A component killed with SIGKILL leaves its log server (``airflow
    serve-logs``) to init, with an environment that no longer names the home but its working
    folder still in it."""
    home = airflow_home(settings)
    marker = f"AIRFLOW_HOME={home}".encode()
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            if b"airflow" not in cmdline(int(entry.name)):
                continue
            inside = (entry / "cwd").resolve().is_relative_to(home.resolve())
            if inside or marker in (entry / "environ").read_bytes().split(b"\0"):
                found.add(int(entry.name))
    return found - ancestors()  # never ourselves or whoever started us (a shell, pytest)


def start(settings: Settings, timeout: float = 300.0) -> dict[str, int]:
    """Start the components that are not running and wait until all are healthy; their pids.
    (~10 s on a quiet box; the API server alone took over 2 minutes with the box's load at 13.)"""
    alive = running(settings)
    if "api-server" not in alive and port_open(settings.airflow_port):
        raise AirflowOpsError(
            f"something else listens on 127.0.0.1:{settings.airflow_port}; "
            "stop it or set MOVIEREC_AIRFLOW_PORT"
        )
    migrate_db(settings)
    logs_dir(settings).mkdir(parents=True, exist_ok=True)
    for component in COMPONENTS:
        if component not in alive:
            pid = supervisor.start(settings, program(settings, component))
            log.info("airflow %s starting (pid %d)", component, pid)
    try:
        wait_until_healthy(settings, timeout, watch=True)
    except (AirflowOpsError, supervisor.SupervisorError):
        stop(settings)
        raise
    return running(settings)


def health(settings: Settings, timeout: float = 5.0) -> dict[str, Any]:
    """The API server's health report (no login needed); raises httpx errors if unreachable."""
    response = httpx.get(f"{api_url(settings)}{HEALTH_PATH}", timeout=timeout)
    response.raise_for_status()
    return response.json()


def _all_healthy(report: Mapping[str, Any]) -> bool:
    return all((report.get(part) or {}).get("status") == "healthy" for part in HEALTH_PARTS)


def wait_until_healthy(settings: Settings, timeout: float, watch: bool = False) -> None:
    deadline = time.monotonic() + timeout
    last: object = "no answer yet"
    while time.monotonic() < deadline:
        for component in COMPONENTS if watch else ():
            try:
                supervisor.check_alive(settings, program_name(component))
            except supervisor.SupervisorError as exc:
                raise AirflowOpsError(f"airflow {component} did not start: {exc}") from None
        try:
            last = health(settings)
            if _all_healthy(last):
                return
        except (httpx.HTTPError, ValueError) as exc:  # still starting
            last = exc
        time.sleep(0.5)
    raise AirflowOpsError(f"airflow was not healthy within {timeout:.0f} s (last: {last})")


def stop(settings: Settings, timeout: float = 60.0) -> bool:
    """Stop every process of this Airflow (components, workers, tasks); True if any was running."""
    roots = running(settings)
    # Scheduler, dag-processor, triggerer and their tasks first, the API last: running
    # tasks report their end through the API's execution endpoint.
    for component in (*(c for c in COMPONENTS if c != "api-server"), "api-server"):
        supervisor.stop(settings, program_name(component), last_out=False)
    strays = processes_of_home(settings)
    had_strays = bool(strays)
    if strays:
        log.info("stopping airflow processes left behind: %s", sorted(strays))
        signal_groups(strays, signal.SIGINT)
        strays = wait_gone(strays | descendants(strays), timeout / 4)
    if strays:
        signal_groups(strays, signal.SIGTERM)
        strays = wait_gone(strays | descendants(strays), timeout / 4)
    if strays:
        log.warning("airflow processes %s did not stop; killing them", sorted(strays))
        signal_groups(strays, signal.SIGKILL)
        for pid in strays:  # a process outside those groups still gets its signal
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        wait_gone(strays, 10.0)
    supervisor.shutdown_if_idle(settings)
    return bool(roots) or had_strays


# --- status --------------------------------------------------------------------


@dataclass
class AirflowStatus:
    url: str
    pids: dict[str, int] = field(default_factory=dict)
    health: dict[str, Any] = field(default_factory=dict)
    error: str = ""
    password_file: Path | None = None

    @property
    def healthy(self) -> bool:
        return not self.error and _all_healthy(self.health)

    def describe(self) -> str:
        login = f"login {ADMIN_USER}, password in {self.password_file}"
        lines = [f"airflow {self.url}: {'up' if self.healthy else 'DOWN'} ({login})"]
        if self.error:
            lines.append(f"  error: {self.error}")
        for component in COMPONENTS:
            pid = self.pids.get(component)
            lines.append(f"  {component}: {f'pid {pid}' if pid else 'not running'}")
        for part in HEALTH_PARTS:
            if part in self.health:
                lines.append(f"  health {part}: {self.health[part].get('status')}")
        return "\n".join(lines)


def status(settings: Settings) -> AirflowStatus:
    state = AirflowStatus(api_url(settings), running(settings), password_file=password_file(settings))
    try:
        state.health = health(settings)
    except (httpx.HTTPError, ValueError) as exc:
        state.error = f"{type(exc).__name__}: {exc}"
    return state


# --- the REST API ----------------------------------------------------------------


def admin_password(settings: Settings) -> str:
    """The admin's password, generated by Airflow on its first start."""
    try:
        return json.loads(password_file(settings).read_text())[ADMIN_USER]
    except (FileNotFoundError, ValueError, KeyError):
        raise AirflowOpsError(
            f"no password for {ADMIN_USER!r} in {password_file(settings)} (has airflow been started?)"
        ) from None


def api_client(settings: Settings, timeout: float = 15.0) -> httpx.Client:
    """An httpx client for the public REST API, logged in as the admin (a JWT from /auth/token)."""
    url = api_url(settings)
    answer = httpx.post(
        f"{url}/auth/token",
        json={"username": ADMIN_USER, "password": admin_password(settings)},
        timeout=timeout,
    )
    if answer.status_code not in (200, 201):
        raise AirflowOpsError(f"airflow login failed: {answer.status_code} {answer.text[:200]}")
    token = answer.json()["access_token"]
    return httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=timeout)


def dag_files() -> list[str]:
    """Our DAG files, relative to the dags folder."""
    return sorted(path.name for path in DAGS_DIR.glob("*.py") if not path.name.startswith("_"))


def list_dags(client: httpx.Client) -> list[dict[str, Any]]:
    response = client.get("/api/v2/dags", params={"limit": 1000})
    response.raise_for_status()
    return response.json()["dags"]


def import_errors(client: httpx.Client) -> list[dict[str, Any]]:
    response = client.get("/api/v2/importErrors", params={"limit": 1000})
    response.raise_for_status()
    return response.json()["import_errors"]


def unpause_all(settings: Settings, timeout: float = 120.0, keep_paused: Collection[str] = ()) -> list[str]:
    """Unpause every DAG of our dags folder (but ``keep_paused``) once the dag-processor has
    registered them all; the ids unpaused. A DAG file that does not import is an error (after the
    others are on)."""
    wanted = set(dag_files())
    deadline = time.monotonic() + timeout
    with api_client(settings) as client:
        while True:
            dags = list_dags(client)
            errors = import_errors(client)
            seen = {Path(d["fileloc"]).name for d in dags} | {Path(e["filename"]).name for e in errors}
            if wanted <= seen:
                break
            if time.monotonic() >= deadline:
                raise AirflowOpsError(f"DAG files not parsed within {timeout:.0f} s: {sorted(wanted - seen)}")
            time.sleep(1.0)
        unpaused = []
        for dag in dags:
            if Path(dag["fileloc"]).name in wanted and dag["dag_id"] not in keep_paused:
                if dag["is_paused"]:
                    _unpause(client, dag["dag_id"])
                unpaused.append(dag["dag_id"])
    if errors:
        detail = "\n".join(f"{e['filename']}: {e['stack_trace'][-500:]}" for e in errors)
        raise AirflowOpsError(f"DAG import errors:\n{detail}")
    return sorted(unpaused)


FINISHED_STATES = ("success", "failed")


def _repeated_while_locked(
    send: Callable[[], httpx.Response], what: str, attempts: int, done: Callable[[httpx.Response, int], bool]
) -> httpx.Response:
    """``send()`` until ``done(answer, attempt)``; repeated while Airflow answers 5xx.

    On SQLite a write can find the database locked by the scheduler or a task (Airflow answers 500,
    "Database error" after its 5 s busy timeout), e.g. while a run's last tasks store their states.
    Any other answer, or the last attempt's, is an ``AirflowOpsError``."""
    for attempt in range(1, attempts + 1):
        answer = send()
        if done(answer, attempt):
            return answer
        if answer.status_code < 500 or attempt == attempts:
            raise AirflowOpsError(f"{what} failed: {answer.status_code} {answer.text[:300]}")
        log.warning("%s: %s, attempt %d of %d", what, answer.status_code, attempt, attempts)
        time.sleep(2.0 * attempt)
    raise AssertionError("unreachable")


def trigger(settings: Settings, dag_id: str, conf: Mapping[str, Any] | None = None, attempts: int = 5) -> str:
    """Start a run of ``dag_id`` now (as the UI's trigger button does); its run id.

    Repeated while the database is locked, with the same run id, so a run the first attempt did
    create is found (409) rather than started twice."""
    run_id = f"manual__{datetime.now(UTC).isoformat()}"
    # Airflow 3 wants logical_date in the body; null means "now, no data interval"
    body = {"dag_run_id": run_id, "logical_date": None, "conf": dict(conf or {})}
    with api_client(settings) as client:
        _repeated_while_locked(
            lambda: client.post(f"/api/v2/dags/{dag_id}/dagRuns", json=body),
            f"triggering {dag_id}",
            attempts,
            lambda answer, attempt: (
                answer.status_code in (200, 201) or (answer.status_code == 409 and attempt > 1)
            ),
        )
    return run_id


def unpause(settings: Settings, dag_id: str, attempts: int = 5) -> None:
    """Switch ``dag_id``'s schedule on."""
    with api_client(settings) as client:
        _unpause(client, dag_id, attempts)


def _unpause(client: httpx.Client, dag_id: str, attempts: int = 5) -> None:
    """Repeated while the database is locked: unpausing is idempotent."""
    _repeated_while_locked(
        lambda: client.patch(f"/api/v2/dags/{dag_id}", json={"is_paused": False}),
        f"unpausing {dag_id}",
        attempts,
        lambda answer, _: answer.status_code == 200,
    )


def active_runs(settings: Settings, dag_id: str) -> list[str]:
    """Run ids of ``dag_id`` that are queued or running, oldest first."""
    with api_client(settings) as client:
        answer = client.get(
            f"/api/v2/dags/{dag_id}/dagRuns",
            params={"state": ["queued", "running"], "order_by": "id", "limit": 100},
        )
        answer.raise_for_status()
        return [run["dag_run_id"] for run in answer.json()["dag_runs"]]


def run_state(settings: Settings, dag_id: str, run_id: str) -> str:
    with api_client(settings) as client:
        answer = client.get(f"/api/v2/dags/{dag_id}/dagRuns/{run_id}")
        answer.raise_for_status()
        return answer.json()["state"]


def task_states(settings: Settings, dag_id: str, run_id: str) -> dict[str, str | None]:
    """Each task of the run and its state (None: not scheduled yet)."""
    with api_client(settings) as client:
        answer = client.get(f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances", params={"limit": 100})
        answer.raise_for_status()
        return {ti["task_id"]: ti["state"] for ti in answer.json()["task_instances"]}


def wait_for_tasks(
    settings: Settings,
    dag_id: str,
    run_id: str,
    task_ids: Collection[str],
    timeout: float,
    poll: float = 5.0,
    report_every: float = 30.0,
) -> str:
    """Wait until ``task_ids`` of the run have succeeded ("success"), one of them cannot ("failed":
    failed, upstream_failed or skipped, retries spent), or the run has ended without them (its
    state); the run's other tasks may still be running. Progress in the log."""
    began = time.monotonic()
    next_report = began + report_every
    while True:
        states = task_states(settings, dag_id, run_id)
        wanted = [states.get(task_id) for task_id in task_ids]
        if all(state == "success" for state in wanted):
            log.info(
                "%s run %s: %s succeeded after %.0f s",
                dag_id,
                run_id,
                ", ".join(task_ids),
                time.monotonic() - began,
            )
            return "success"
        if any(state in ("failed", "upstream_failed", "skipped") for state in wanted):
            return "failed"
        if (state := run_state(settings, dag_id, run_id)) in FINISHED_STATES:
            return state if state != "success" else "failed"  # a run that succeeded without them
        if time.monotonic() - began > timeout:
            raise AirflowOpsError(
                f"{dag_id} run {run_id}: {', '.join(task_ids)} not done after {timeout:.0f} s"
            )
        if time.monotonic() >= next_report:
            log.info("%s run %s: %s (%.0f s)", dag_id, run_id, state, time.monotonic() - began)
            next_report += report_every
        time.sleep(poll)


def wait_for_run(
    settings: Settings,
    dag_id: str,
    run_id: str,
    timeout: float,
    poll: float = 5.0,
    report_every: float = 30.0,
) -> str:
    """Wait until the run ends (success or failed) and return its state; progress in the log."""
    began = time.monotonic()
    next_report = began + report_every
    while True:
        state = run_state(settings, dag_id, run_id)
        if state in FINISHED_STATES:
            log.info("%s run %s: %s after %.0f s", dag_id, run_id, state, time.monotonic() - began)
            return state
        if time.monotonic() - began > timeout:
            raise AirflowOpsError(f"{dag_id} run {run_id} still {state} after {timeout:.0f} s")
        if time.monotonic() >= next_report:
            log.info("%s run %s: %s (%.0f s)", dag_id, run_id, state, time.monotonic() - began)
            next_report += report_every
        time.sleep(poll)
