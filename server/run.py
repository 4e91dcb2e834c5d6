"""``movierec serve``: the service in ``settings.server_workers`` Sanic workers until SIGINT/SIGTERM.

Sanic's worker manager runs in this process and starts the workers (spawned
processes, each building the app with ``create_app(settings)``); on SIGINT or
SIGTERM it stops them gracefully (requests in flight finish, producers flush).
"""

from __future__ import annotations

import logging
import os
import shutil
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

from movierec.settings import Settings

if TYPE_CHECKING:
    from sanic import Sanic

log = logging.getLogger(__name__)


def metrics_dir(settings: Settings) -> Path:
    return settings.home / "run" / f"server-metrics-{settings.server_port}"


def prepare_metrics_dir(settings: Settings) -> Path:
    """An empty folder for this run's multiprocess metrics (a previous run's counts must not carry over)."""
    folder = metrics_dir(settings)
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    return folder


def worker_app(settings: Settings) -> Sanic:
    """The app of one worker: a spawned process, so it sets up its own logging first."""
    from server.app import create_app

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return create_app(settings)


def serve(settings: Settings) -> None:
    folder = prepare_metrics_dir(settings)
    # prometheus_client decides at import whether values go to shared files; the spawned workers
    # inherit this variable and import it fresh. (A library switch, not movierec configuration.)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(folder)
    from sanic import Sanic
    from sanic.worker.loader import AppLoader

    workers = max(1, settings.server_workers)
    loader = AppLoader(factory=partial(worker_app, settings))
    app = loader.load()
    app.prepare(
        host=settings.server_host,
        port=settings.server_port,
        workers=workers,
        access_log=False,  # one log line per request would cost more than the lookup
        motd=False,
        dev=False,
    )
    log.info(
        "recommendation service on http://%s:%d (%d workers, serving %s)",
        settings.server_host,
        settings.server_port,
        workers,
        settings.serving_dir / "current",
    )
    Sanic.serve(primary=app, app_loader=loader)
    log.info("recommendation service stopped")
