"""The service's operator listener: ``/metrics`` on ``settings.ops_port``, apart from the public port.

The recommendation port is public: anyone who can ask for lists can reach it. Operator routes
(today ``/metrics``: request counts per variant, model versions, provenance drops, clients
throttled) tell an attacker how the service is doing and how it is watched, so they never answer
there (docs/security-serving.md). ``movierec serve``'s main process, the one that supervises the
workers, runs this listener: prometheus_client's own exporter (a daemon thread) over the workers'
shared metrics files, bound to ``settings.server_ops_host`` (127.0.0.1 by default). A worker that
is being replaced therefore never takes the metrics with it, and a scrape costs the workers nothing.
"""

from __future__ import annotations

import logging
from pathlib import Path
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, multiprocess, start_http_server

from movierec.settings import Settings

log = logging.getLogger(__name__)


class OpsPortBusy(OSError):
    """The operator port could not be bound; the message says which and why."""


def start(settings: Settings, metrics_folder: Path) -> WSGIServer:
    """Serve the sum of every worker's metrics under ``metrics_folder`` on the operator port."""
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=str(metrics_folder))
    try:
        host, port = settings.server_ops_host, settings.ops_port
        server, _thread = start_http_server(port, addr=host, registry=registry)
    except OSError as exc:
        raise OpsPortBusy(
            f"operator port {settings.server_ops_host}:{settings.ops_port} (MOVIEREC_SERVER_OPS_PORT): {exc}"
        ) from None
    log.info("operator port: metrics on http://%s:%d/metrics", settings.server_ops_host, settings.ops_port)
    return server


def stop(server: WSGIServer) -> None:
    server.shutdown()
    server.server_close()
