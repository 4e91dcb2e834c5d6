"""The long-running parts `make up` keeps in the background: the simulator's catalog API, the
recommendation service and the simulator's live viewers.

Each is a ``movierec`` subcommand in its own session (process group), its pid and start time in
``$MOVIEREC_HOME/run/<name>.pid``, its output in ``$MOVIEREC_HOME/logs/<name>.log``. Starting is
idempotent; stopping sends SIGTERM to the group (our commands stop on it like on Ctrl-C) and
SIGKILL only to what is still there after a grace period.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from movierec.ops.processes import (
    cmdline,
    descendants,
    is_alive,
    port_open,
    signal_groups,
    start_time,
    tail,
    wait_gone,
)
from movierec.settings import Settings

log = logging.getLogger(__name__)

CLI = Path(sys.executable).parent / "movierec"


class ServiceError(RuntimeError):
    """A service did not start (its log's tail says why) or its port is taken by someone else."""


@dataclass(frozen=True)
class Service:
    name: str
    args: tuple[str, ...]  # of the movierec command
    port: int | None  # ready when it accepts connections here (None: ready when started)
    what: str


def catalog_of(settings: Settings) -> dict[str, Service]:
    """Every service, in start order (stop in reverse)."""
    return {
        service.name: service
        for service in (
            Service("api", ("world", "api"), settings.api_port, "simulator catalog API"),
            Service("server", ("serve",), settings.server_port, "recommendation service"),
            Service("viewers", ("world", "run"), None, "simulator live viewers"),
        )
    }


def run_dir(settings: Settings) -> Path:
    return settings.home / "run"


def pid_file(settings: Settings, name: str) -> Path:
    return run_dir(settings) / f"{name}.pid"


def log_file(settings: Settings, name: str) -> Path:
    return settings.log_dir / f"{name}.log"


def running_pid(settings: Settings, name: str) -> int | None:
    """The pid of service ``name`` if it is alive and really ours (not a reused pid)."""
    try:
        pid_text, started = pid_file(settings, name).read_text().split()
        pid = int(pid_text)
    except (FileNotFoundError, ValueError):
        return None
    if not is_alive(pid) or str(start_time(pid)) != started or b"movierec" not in cmdline(pid):
        return None
    return pid


def start(settings: Settings, service: Service, env: dict[str, str], timeout: float = 120.0) -> int:
    """Start ``service`` unless it runs; wait until it is ready; its pid."""
    pid = running_pid(settings, service.name)
    if pid is not None:
        return pid
    if service.port is not None and port_open(service.port):
        raise ServiceError(f"{service.what}: something else listens on 127.0.0.1:{service.port}")
    run_dir(settings).mkdir(parents=True, exist_ok=True)
    settings.log_dir.mkdir(parents=True, exist_ok=True)
    with log_file(settings, service.name).open("ab") as out:
        process = subprocess.Popen(
            [str(CLI), *service.args],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    pid_file(settings, service.name).write_text(f"{process.pid} {start_time(process.pid)}\n")
    deadline = time.monotonic() + timeout
    while service.port is not None and not port_open(service.port):
        if process.poll() is not None or time.monotonic() > deadline:
            stop(settings, service)
            raise ServiceError(
                f"{service.what} did not start (see {log_file(settings, service.name)}):\n"
                f"{tail(log_file(settings, service.name))}"
            )
        time.sleep(0.2)
    log.info("%s started (pid %d)", service.what, process.pid)
    return process.pid


def stop(settings: Settings, service: Service, grace: float = 20.0) -> bool:
    """Stop ``service`` and every process below it; True if it was running."""
    pid = running_pid(settings, service.name)
    pid_file(settings, service.name).unlink(missing_ok=True)
    if pid is None:
        return False
    tree = descendants([pid])
    signal_groups(tree, signal.SIGTERM)
    left = wait_gone(tree, grace)
    if left:
        log.warning("%s did not stop within %.0f s; killing %s", service.what, grace, sorted(left))
        signal_groups(left, signal.SIGKILL)
        for stray in left:
            with contextlib.suppress(ProcessLookupError):
                os.kill(stray, signal.SIGKILL)
        wait_gone(left, 5.0)
    return True
