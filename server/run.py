"""``movierec serve``: the service in ``settings.server_workers`` Sanic workers until SIGINT/SIGTERM.

Sanic's worker manager runs in this process and starts the workers (spawned
processes, each building the app with ``create_app(settings)``); on SIGINT or
SIGTERM it stops them gracefully (requests in flight finish, producers flush).
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import shutil
import traceback
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

from movierec.settings import Settings

if TYPE_CHECKING:
    from sanic import Sanic

log = logging.getLogger(__name__)

WORKER_STATE_FUNCTIONS = {"set_state", "_get_process_states"}  # Sanic's readers of its shared states


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
    try:
        Sanic.serve(primary=app, app_loader=loader)
    except (TypeError, AttributeError) as exc:
        # Sanic 25.12's manager can read a torn entry of its shared worker-state dict while it stops
        # the workers (seen under load in CI: "'NoneType' object is not a mapping" in set_state, then
        # "'str' object has no attribute 'get'"), and gives up before signalling every worker.
        # Finish the stop here instead of leaving workers and the state manager behind; any other
        # failure is not ours to hide.
        if not _in_worker_state_bookkeeping(exc):
            raise
        log.warning("Sanic's worker bookkeeping failed while stopping (%s); stopping workers directly", exc)
        _stop_children()
    log.info("recommendation service stopped")


def _in_worker_state_bookkeeping(exc: BaseException) -> bool:
    """Whether ``exc`` (or the exception it interrupted) was raised reading Sanic's worker states."""
    current: BaseException | None = exc
    while current is not None:
        frames = traceback.extract_tb(current.__traceback__)
        if any(frame.name in WORKER_STATE_FUNCTIONS for frame in frames):
            return True
        current = current.__context__
    return False


def _stop_children(timeout: float = 10.0) -> None:
    """SIGTERM every child process left (workers finish in-flight requests on it), then wait."""
    children = multiprocessing.active_children()
    for child in children:
        child.terminate()
    for child in children:
        child.join(timeout)
        if child.is_alive():
            child.kill()
