"""The long-running parts `make up` keeps in the background besides Kafka and Airflow: the monitoring
stack (node-exporter, Alertmanager, the dashboard and alert receiver, Prometheus, the probe), the
simulator's catalog API, the recommendation service and the simulator's live viewers.

Each is a supervisord program (``movierec.ops.supervisor``: its own process group, restarted when it
dies, a limited number of retries with back-off when it dies at start), its output in
``$MOVIEREC_HOME/logs/<name>.log``. Starting is idempotent and waits until the service is ready
(its port accepts connections); stopping sends its stop signal to the group (our commands stop on
SIGTERM like on Ctrl-C) and SIGKILL only after a grace period.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from movierec.monitoring import stack, textfile
from movierec.ops import supervisor
from movierec.ops.processes import port_open, tail
from movierec.settings import Settings, as_env

log = logging.getLogger(__name__)

CLI = Path(sys.executable).parent / "movierec"


class ServiceError(RuntimeError):
    """A service did not start (its log's tail says why) or its port is taken by someone else."""


@dataclass(frozen=True)
class Service:
    name: str
    command: Callable[[Settings], list[str]]  # built when started (renders configuration)
    port: int | None  # ready when it accepts connections here (None: ready when running)
    what: str
    stop_wait: int = 20


def movierec(*args: str) -> Callable[[Settings], list[str]]:
    return lambda _settings: [str(CLI), *args]


def catalog_of(settings: Settings) -> dict[str, Service]:
    """Every service, in start order (stop in reverse)."""
    return {
        service.name: service
        for service in (
            Service(
                "node-exporter",
                lambda s: stack.node_exporter_command(s, textfile.metrics_dir(s)),
                settings.node_exporter_port,
                "node-exporter (the pipeline's metrics files)",
            ),
            Service("alertmanager", stack.alertmanager_command, settings.alertmanager_port, "Alertmanager"),
            Service(
                "dashboard",
                movierec("monitor", "web"),
                settings.dashboard_port,
                "dashboard and alert receiver",
            ),
            Service(
                "prometheus", stack.prometheus_command, settings.prometheus_port, "Prometheus", stop_wait=60
            ),
            Service("probe", movierec("monitor", "probe"), None, "pipeline probe (lag, broker, model, DAGs)"),
            Service("api", movierec("world", "api"), settings.api_port, "simulator catalog API"),
            Service("server", movierec("serve"), settings.server_port, "recommendation service"),
            Service("viewers", movierec("world", "run"), None, "simulator live viewers"),
        )
    }


MONITORING = ("node-exporter", "alertmanager", "dashboard", "prometheus", "probe")


def log_file(settings: Settings, name: str) -> Path:
    return settings.log_dir / f"{name}.log"


def program(settings: Settings, service: Service) -> supervisor.Program:
    return supervisor.Program(
        service.name,
        service.command(settings),
        log=log_file(settings, service.name),
        cwd=settings.home,
        env=as_env(settings),  # the settings of whoever starts it, even if given programmatically
        stop_wait=service.stop_wait,
    )


def running_pid(settings: Settings, name: str) -> int | None:
    """The pid of service ``name`` if supervisord runs it."""
    return supervisor.pid(settings, name)


def start(settings: Settings, service: Service, timeout: float = 120.0) -> int:
    """Start ``service`` unless it runs; wait until it is ready; its pid."""
    pid = running_pid(settings, service.name)
    if pid is not None:
        return pid
    if service.port is not None and port_open(service.port):
        raise ServiceError(f"{service.what}: something else listens on 127.0.0.1:{service.port}")
    settings.home.mkdir(parents=True, exist_ok=True)
    try:
        pid = supervisor.start(settings, program(settings, service))
    except supervisor.SupervisorError as exc:
        stop(settings, service)
        raise ServiceError(
            f"{service.what} did not start (see {log_file(settings, service.name)}):\n{exc}"
        ) from None
    deadline = time.monotonic() + timeout
    while service.port is not None and not port_open(service.port):
        try:
            supervisor.check_alive(settings, service.name)
            if time.monotonic() > deadline:
                raise supervisor.SupervisorError(f"not ready within {timeout:.0f} s")
        except supervisor.SupervisorError as exc:
            stop(settings, service)
            raise ServiceError(
                f"{service.what} did not start (see {log_file(settings, service.name)}): {exc}\n"
                f"{tail(log_file(settings, service.name))}"
            ) from None
        time.sleep(0.2)
    log.info("%s started (pid %d)", service.what, pid)
    return running_pid(settings, service.name) or pid


def stop(settings: Settings, service: Service) -> bool:
    """Stop ``service`` and every process below it; True if it was running."""
    return supervisor.stop(settings, service.name)
