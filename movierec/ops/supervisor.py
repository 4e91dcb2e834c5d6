"""supervisord (PyPI ``supervisor``) runs every long-running service of a ``MOVIEREC_HOME``.

One supervisord per home, started on the first program and shut down when the last one stops,
so `make down` (and a test's fixture) leaves no process behind. Its files:

    $MOVIEREC_HOME/supervisor/supervisord.conf       written at every start
    $MOVIEREC_HOME/supervisor/programs/<name>.conf   one per program, written when it is started
    $MOVIEREC_HOME/run/supervisor.sock                the XML-RPC socket (supervisorctl speaks it too)
    $MOVIEREC_HOME/logs/supervisord.log                its own log

Every program runs in its own process group (stop and kill signal the group), restarts when it
dies (``autorestart``), and a program that dies during its first ``startsecs`` is retried with
supervisord's growing back-off (1 s, 2 s, 3 s, ...) at most ``startretries`` times, then it is
FATAL and stays down (the operator's alert, not a restart loop). The callers (broker, Airflow,
services) decide when a program is *ready* (a produce/consume round trip, a health answer, a port).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import os
import signal
import subprocess
import sys
import tempfile
import time
import xmlrpc.client
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from movierec.ops.processes import descendants, is_alive, tail, wait_gone
from movierec.settings import Settings, child_env

log = logging.getLogger(__name__)

# supervisord's process states (supervisor.states.ProcessStates), by name
ALIVE = frozenset({"STARTING", "RUNNING", "BACKOFF", "STOPPING"})
FAILED = frozenset({"FATAL", "EXITED", "UNKNOWN"})
SOCKET_LIMIT = 100  # an AF_UNIX path must fit in 108 bytes


class SupervisorError(RuntimeError):
    """supervisord could not be started or reached, or a program failed to start."""


@dataclass(frozen=True)
class Program:
    """A long-running command under supervisord."""

    name: str
    command: Sequence[str]
    log: Path  # stdout and stderr
    cwd: Path | None = None
    env: Mapping[str, str] = field(default_factory=dict)  # on top of supervisord's own (MOVIEREC_*)
    stop_signal: str = "TERM"
    stop_wait: int = 30  # seconds before SIGKILL to the group
    start_seconds: int = 2  # alive this long = started (earlier deaths are retried with back-off)
    start_retries: int = 5


# --- files ---------------------------------------------------------------------------------


def conf_dir(settings: Settings) -> Path:
    return settings.home / "supervisor"


def socket_path(settings: Settings) -> Path:
    path = settings.home / "run" / "supervisor.sock"
    if len(str(path)) <= SOCKET_LIMIT:
        return path
    digest = hashlib.sha256(str(settings.home).encode()).hexdigest()[:16]
    return Path(tempfile.gettempdir()) / f"movierec-supervisor-{digest}.sock"


def log_path(settings: Settings) -> Path:
    return settings.log_dir / "supervisord.log"


def _quote(value: str) -> str:
    """A value for supervisord's INI files: ``%`` is its interpolation, ``"`` ends a quoted value."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"').replace("%", "%%") + '"'


def main_conf(settings: Settings) -> str:
    sock = socket_path(settings)
    return "\n".join(
        [
            "; written by movierec.ops.supervisor at every start; edit the code, not this file",
            "[unix_http_server]",
            f"file={sock}",
            "chmod=0700",
            "",
            "[supervisord]",
            f"logfile={log_path(settings)}",
            "logfile_maxbytes=10MB",
            "logfile_backups=3",
            f"pidfile={settings.home / 'run' / 'supervisord.pid'}",
            "nodaemon=true",
            f"directory={settings.home}",
            f"childlogdir={settings.log_dir}",
            "",
            "[rpcinterface:supervisor]",
            "supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface",
            "",
            "[supervisorctl]",
            f"serverurl=unix://{sock}",
            "",
            "[include]",
            f"files={conf_dir(settings) / 'programs'}/*.conf",
            "",
        ]
    )


def program_conf(program: Program) -> str:
    lines = [
        f"[program:{program.name}]",
        "command=" + " ".join(_quote(part) for part in program.command),
        "autostart=false",  # `movierec up` starts programs in order, each once the previous is ready
        "autorestart=true",
        f"startsecs={program.start_seconds}",
        f"startretries={program.start_retries}",
        f"stopsignal={program.stop_signal}",
        f"stopwaitsecs={program.stop_wait}",
        "stopasgroup=true",
        "killasgroup=true",
        "redirect_stderr=true",
        f"stdout_logfile={program.log}",
        "stdout_logfile_maxbytes=50MB",
        "stdout_logfile_backups=2",
    ]
    if program.cwd is not None:
        lines.append(f"directory={program.cwd}")
    if program.env:
        lines.append("environment=" + ",".join(f"{k}={_quote(v)}" for k, v in sorted(program.env.items())))
    return "\n".join(lines) + "\n"


# --- supervisord itself ----------------------------------------------------------------------


def rpc(settings: Settings, timeout: float = 30.0) -> Any:
    """The XML-RPC proxy of this home's supervisord (``.supervisor.*`` methods)."""
    from supervisor.xmlrpc import SupervisorTransport

    transport = SupervisorTransport(None, None, f"unix://{socket_path(settings)}")
    transport.timeout = timeout  # type: ignore[attr-defined]
    return xmlrpc.client.ServerProxy("http://127.0.0.1", transport=transport)


def is_running(settings: Settings) -> bool:
    try:
        return rpc(settings, timeout=5).supervisor.getState()["statename"] == "RUNNING"
    except (OSError, xmlrpc.client.Error):
        return False


@contextlib.contextmanager
def _lock(settings: Settings) -> Iterator[None]:
    """One caller at a time starts supervisord or changes its programs."""
    conf_dir(settings).mkdir(parents=True, exist_ok=True)
    with open(conf_dir(settings) / ".lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def ensure_running(settings: Settings, timeout: float = 30.0) -> None:
    """Start this home's supervisord unless it runs; wait until it answers."""
    if is_running(settings):
        return
    for folder in (conf_dir(settings) / "programs", settings.home / "run", settings.log_dir):
        folder.mkdir(parents=True, exist_ok=True)
    conf = conf_dir(settings) / "supervisord.conf"
    conf.write_text(main_conf(settings))
    socket_path(settings).unlink(missing_ok=True)  # left by a supervisord that was killed
    out = settings.log_dir / "supervisord.out"
    with out.open("ab") as handle:
        # its own session, so a Ctrl-C in the shell that ran `make up` does not reach the services
        process = subprocess.Popen(
            [sys.executable, "-m", "supervisor.supervisord", "-c", str(conf)],
            env=child_env(settings),
            stdout=handle,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            cwd=settings.home,
        )
    deadline = time.monotonic() + timeout
    while not is_running(settings):
        if process.poll() is not None or time.monotonic() > deadline:
            raise SupervisorError(
                f"supervisord did not start (see {out}):\n{tail(out)}\n{tail(log_path(settings))}"
            )
        time.sleep(0.1)
    log.info("supervisord started (pid %d, socket %s)", process.pid, socket_path(settings))


def shutdown(settings: Settings, timeout: float = 120.0) -> bool:
    """Stop every program and supervisord itself; True if it was running."""
    if not is_running(settings):
        return False
    proxy = rpc(settings, timeout=timeout)
    pid = proxy.supervisor.getPID()
    with contextlib.suppress(xmlrpc.client.Fault):
        proxy.supervisor.stopAllProcesses(True)
    with contextlib.suppress(OSError, xmlrpc.client.Error):
        proxy.supervisor.shutdown()
    if wait_gone({pid}, timeout):
        raise SupervisorError(f"supervisord (pid {pid}) did not exit within {timeout:.0f} s")
    log.info("supervisord stopped")
    return True


# --- programs -------------------------------------------------------------------------------


def info(settings: Settings, name: str) -> dict[str, Any] | None:
    """supervisord's record of program ``name`` (statename, pid, ...), or None if it has none."""
    if not is_running(settings):
        return None
    try:
        return rpc(settings).supervisor.getProcessInfo(name)
    except xmlrpc.client.Fault:
        return None


def pid(settings: Settings, name: str) -> int | None:
    """The pid of program ``name`` while it runs (supervisord's RUNNING or STARTING)."""
    record = info(settings, name)
    if record is None or record["statename"] not in ("RUNNING", "STARTING") or not record["pid"]:
        return None
    return int(record["pid"])


def all_info(settings: Settings) -> list[dict[str, Any]]:
    if not is_running(settings):
        return []
    return list(rpc(settings).supervisor.getAllProcessInfo())


def _register(settings: Settings, program: Program) -> None:
    """Write the program's file and make supervisord (re)load it."""
    path = conf_dir(settings) / "programs" / f"{program.name}.conf"
    text = program_conf(program)
    proxy = rpc(settings)
    known = {p["name"] for p in proxy.supervisor.getAllProcessInfo()}
    if path.exists() and path.read_text() == text and program.name in known:
        return
    path.write_text(text)
    added, changed, removed = proxy.supervisor.reloadConfig()[0]
    for name in changed + removed:
        with contextlib.suppress(xmlrpc.client.Fault):
            proxy.supervisor.stopProcessGroup(name, True)
        with contextlib.suppress(xmlrpc.client.Fault):
            proxy.supervisor.removeProcessGroup(name)
    for name in added + changed:
        proxy.supervisor.addProcessGroup(name)


def start(settings: Settings, program: Program) -> int:
    """Start ``program`` under supervisord unless it runs; its pid (not yet *ready*: the caller waits)."""
    with _lock(settings):
        ensure_running(settings)
        running = pid(settings, program.name)
        if running is not None:
            return running
        _register(settings, program)
        program.log.parent.mkdir(parents=True, exist_ok=True)
        try:
            rpc(settings).supervisor.startProcess(program.name, False)
        except xmlrpc.client.Fault as fault:
            if "ALREADY_STARTED" not in fault.faultString:
                raise SupervisorError(f"{program.name}: {fault.faultString}\n{tail(program.log)}") from None
    deadline = time.monotonic() + 30
    while (current := pid(settings, program.name)) is None:
        state = (info(settings, program.name) or {}).get("statename")
        if state in FAILED or time.monotonic() > deadline:
            raise SupervisorError(f"{program.name} did not start ({state}):\n{tail(program.log)}")
        time.sleep(0.1)
    log.info("%s started under supervisord (pid %d)", program.name, current)
    return current


def check_alive(settings: Settings, name: str) -> None:
    """Raise if program ``name`` gave up (FATAL after its retries) or was stopped: for readiness waits."""
    record = info(settings, name)
    if record is None or record["statename"] in FAILED or record["statename"] == "STOPPED":
        state = record["statename"] if record else "not registered"
        log_file = Path(record["stdout_logfile"]) if record else None
        raise SupervisorError(f"{name} is {state}:\n{tail(log_file) if log_file else ''}")


def stop(settings: Settings, name: str, *, last_out: bool = True) -> bool:
    """Stop program ``name`` (its stop signal, then SIGKILL to its group after its wait); True if it
    was running. With ``last_out``, supervisord exits too once no program is alive."""
    if not is_running(settings):
        return False
    with _lock(settings):
        record = info(settings, name)
        was_alive = record is not None and record["statename"] in ALIVE
        if record is not None:
            group = descendants_of(record)
            with contextlib.suppress(xmlrpc.client.Fault):
                rpc(settings, timeout=600).supervisor.stopProcess(name, True)
            left = wait_gone(group, 10.0)
            if left:
                log.warning("%s left %s behind; killing them", name, sorted(left))
                for stray in left:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(stray, signal.SIGKILL)
        if last_out:
            shutdown_if_idle(settings)
    return was_alive


def shutdown_if_idle(settings: Settings) -> bool:
    """Stop supervisord if none of its programs is alive; True if it stopped."""
    if is_running(settings) and not any(p["statename"] in ALIVE for p in all_info(settings)):
        return shutdown(settings)
    return False


def descendants_of(record: Mapping[str, Any]) -> set[int]:
    """The program's process and every process below it (a stop must leave none of them)."""
    return descendants([record["pid"]]) if record.get("pid") and is_alive(record["pid"]) else set()
