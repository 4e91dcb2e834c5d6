"""``movierec serve``: the service in ``settings.server_workers`` Sanic workers until SIGINT/SIGTERM.

The main process also serves the workers' metrics on the operator port (server.ops), never on the
public one.

Sanic's worker manager runs in this process and starts the workers (spawned
processes, each building the app with ``create_app(settings)``); on SIGINT or
SIGTERM it stops them gracefully (requests in flight finish, producers flush).
A stop is honoured at any moment: noted before Sanic's manager exists
(``EarlyStop``), handled while workers are still starting (``StartupWatch``),
and never waiting for a worker that is gone. A worker that
dies once serving is replaced (``WorkerKeeper``) and counted in
``movierec_worker_replacements_total``; the process supervisor above sees only
this main process.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import shutil
import signal
import threading
import time
import traceback
from collections import deque
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

from movierec.settings import Settings

if TYPE_CHECKING:
    from wsgiref.simple_server import WSGIServer

    from sanic import Sanic
    from sanic.worker.manager import WorkerManager

log = logging.getLogger(__name__)

WORKER_STATE_FUNCTIONS = {"set_state", "_get_process_states"}  # Sanic's readers of its shared states
STARTUP_SECONDS = 30.0  # a worker not ready by then failed to start (Sanic's own limit)
ACKED = "ACKED"  # sanic.worker.constants.ProcessState.ACKED.name: a worker that is serving
STOP_MESSAGES = (None, "__TERMINATE__")  # what the manager's monitor loop ends on
FAILED_START = "__TERMINATE_EARLY__"  # a worker's start-up raised
REPLACEMENTS_LIMIT = (
    5  # more worker deaths than this within REPLACEMENTS_WINDOW: stop, let the supervisor act
)
REPLACEMENTS_WINDOW = 60.0
KEEPER_POLL = 0.2  # seconds between the keeper's looks at the workers


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


def serve(settings: Settings) -> int:
    """Run the service until stopped; the exit code (1 when the workers could not start)."""
    # Until Sanic's manager installs its own handlers, a SIGTERM or SIGINT is noted, and the start
    # looks at the note before each step that starts something (see EarlyStop).
    early_stop = EarlyStop()
    early_stop.install()
    exporter = None
    watch = None
    try:
        from server.clients import SiteClients

        SiteClients(settings.server_site_clients)  # a bad list fails here, not in every worker
        folder = prepare_metrics_dir(settings)
        # prometheus_client decides at import whether values go to shared files; the spawned workers
        # inherit this variable and import it fresh. (A library switch, not movierec configuration.)
        # This process imports it only after this line too: the keeper's counter lives in the folder.
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(folder)
        from server import ops

        if not early_stop.requested:
            exporter = ops.start(settings, folder)  # before any worker: a busy port fails the start at once
            watch = _serve(settings, early_stop)
    except (ValueError, OSError) as exc:  # a bad site list, a busy port, an unwritable folder
        log.error("recommendation service not started: %s", exc)
        _stop_children()
        _stop_exporter(exporter)
        return 1
    _stopping()
    _stop_children()  # normally none is left; a worker that missed the stop while it started may be
    _stop_exporter(exporter)
    if watch is None:
        log.info("recommendation service stopped before its workers started")
        return 0
    failure = watch.failure or (watch.keeper.failure if watch.keeper else None)
    if failure:
        log.error("recommendation service stopped: %s", failure)
        return 1
    log.info("recommendation service stopped")
    return 0


class EarlyStop:
    """A SIGTERM or SIGINT that arrives before Sanic's manager handles them: noted, never raised.

    Raising KeyboardInterrupt from the handler (Python's SIGINT default) cannot be trusted while
    the start imports and spawns: the exception lands on whatever bytecode runs, and inside a
    weakref callback of the import machinery it is printed as "Exception ignored" and dropped, so
    the stop is lost and the service starts anyway (seen with strace attached); elsewhere the
    process exited by SIGINT (-2) after its clean stop, or left Sanic's state manager running: 6
    of 150 stops 0-15 ms into Sanic's start under load (bench/drill_stop_during_start.py), 0 of
    150 since. The start reads ``requested`` before
    the operator port, before Sanic, and once Sanic's manager exists (``StartupWatch.attach``),
    whose own handlers take over from there.
    """

    def __init__(self) -> None:
        self.requested = False

    def install(self) -> None:
        signal.signal(signal.SIGTERM, self.note)
        signal.signal(signal.SIGINT, self.note)

    def note(self, _signum: int, _frame: object) -> None:
        self.requested = True  # only this: a handler runs between any two bytecodes, also in logging


def _stop_exporter(exporter: WSGIServer | None) -> None:
    if exporter is not None:  # then server.ops was imported
        from server import ops

        ops.stop(exporter)


def _serve(settings: Settings, early_stop: EarlyStop) -> StartupWatch | None:
    """Sanic's manager and its workers until they stop; None when a stop came before the manager."""
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
    watch = StartupWatch(keeper=WorkerKeeper(), early_stop=early_stop)
    app.main_process_ready(watch.attach)
    log.info(
        "recommendation service on http://%s:%d (%d workers, serving %s)",
        settings.server_host,
        settings.server_port,
        workers,
        settings.serving_dir / "current",
    )
    if early_stop.requested:
        return None
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
    return watch


class StartupWatch:
    """Sanic's wait for the workers' start-up acks, made to end when the service stops or a worker is gone.

    Sanic 25.12's ``WorkerManager.wait_for_ack`` loops until every server worker has acknowledged.
    A stop signal that arrives meanwhile is put back on the monitor pipe and read again, forever,
    if a worker never acknowledges, and the stop itself ensures that: its SIGINT reaches a
    worker still importing as KeyboardInterrupt, which Sanic's start-up handler does not catch,
    so the worker dies silently (sanic-org/sanic#2997). ``attach`` replaces that wait, on this
    one manager, with one that ends on the first of: every worker ready; a stop (handed back to
    the monitor loop, which stops the workers still alive); a worker gone or failed before it was
    ready, or none ready after ``STARTUP_SECONDS`` (then the others are stopped gracefully and
    ``failure`` says why). It never SIGKILLs the process group, as Sanic's own time-out does.
    A stop noted by ``early_stop`` before the manager existed is handed to the monitor loop here.
    """

    def __init__(
        self,
        limit: float = STARTUP_SECONDS,
        keeper: WorkerKeeper | None = None,
        early_stop: EarlyStop | None = None,
    ) -> None:
        self.limit = limit
        self.failure: str | None = None
        self.keeper = keeper  # started once every worker is ready
        self.early_stop = early_stop

    def attach(self, app: Sanic) -> None:
        """A ``main_process_ready`` listener: the manager exists, no worker has started yet."""
        manager = app.manager
        manager.wait_for_ack = partial(self.wait, manager)  # type: ignore[method-assign]
        if self.keeper is not None:
            self.keeper.watch_stops(manager)
        if self.early_stop is not None and self.early_stop.requested:
            log.info("stopped while Sanic's manager was set up: the workers are stopped as they start")
            manager.monitor_publisher.send(None)  # the wait below reads it first and stops the workers

    def wait(self, manager: WorkerManager) -> None:
        deadline = time.monotonic() + self.limit
        held: list[object] = []  # the monitor loop's messages, handed back when the wait ends
        try:
            while True:
                if manager.monitor_subscriber.poll(0.1):
                    message = manager.monitor_subscriber.recv()
                    if message == FAILED_START:
                        self._fail(manager, "a worker failed while starting (its traceback is above)", held)
                        return
                    held.append(message)
                    if message in STOP_MESSAGES:
                        # Also the workers spawned after a stop that came before them: Sanic's
                        # shutdown signals only the processes alive at that moment.
                        manager.shutdown()
                        return
                    continue
                if _all_ready(manager):
                    if self.keeper is not None:
                        self.keeper.start(manager)
                    return
                problem = _gone_before_ready(manager)
                if problem is None and time.monotonic() > deadline:
                    problem = f"not every worker was ready after {self.limit:.0f} s"
                # A stop sends its message before it signals the workers: a worker gone because of
                # a stop is never mistaken for one that failed.
                if problem is not None and not manager.monitor_subscriber.poll(0):
                    self._fail(manager, problem, held)
                    return
        finally:
            for message in held:
                manager.monitor_publisher.send(message)

    def _fail(self, manager: WorkerManager, problem: str, held: list[object]) -> None:
        log.error("stopping the service: %s", problem)
        self.failure = problem
        manager.shutdown()  # SIGINT to the workers still alive: they finish and exit
        held.append(None)  # ... and the monitor loop ends


class WorkerKeeper:
    """Replaces a server worker that dies after it was serving, which Sanic's manager does not do.

    A thread of the main process looks at the workers every ``KEEPER_POLL`` seconds. A worker that
    is gone without having been told to stop (its state is not TERMINATED: Sanic marks every worker
    so before it signals it, and ``watch_stops`` notes any stop of the manager) is restarted the
    way Sanic supports: its process name sent on the manager's monitor channel, exactly what
    ``app.m.restart`` sends from a worker, so the manager's own loop spawns the new process.
    Each replacement is logged and counted (``movierec_worker_replacements_total``), and the dead
    worker's live gauges are dropped. More than ``REPLACEMENTS_LIMIT`` within
    ``REPLACEMENTS_WINDOW`` seconds means replacing does not help: the service stops with exit
    code 1 and its process supervisor takes over (with its back-off).
    """

    def __init__(self, limit: int = REPLACEMENTS_LIMIT, window: float = REPLACEMENTS_WINDOW) -> None:
        self.limit = limit
        self.window = window
        self.failure: str | None = None
        self.replaced = 0
        self._stopping = threading.Event()
        self._recent: deque[float] = deque()
        self._pending: dict[str, int] = {}  # worker name -> pid of the dead process being replaced
        self._counter: object = None

    def watch_stops(self, manager: WorkerManager) -> None:
        """Note every stop of the manager (a signal, a worker's request, a failed start)."""
        shutdown = manager.shutdown

        def noted_shutdown() -> None:
            self._stopping.set()
            shutdown()

        manager.shutdown = noted_shutdown  # type: ignore[method-assign]

    def start(self, manager: WorkerManager) -> None:
        # prometheus_client is imported here, after serve() pointed it at the shared folder
        from prometheus_client import Counter

        self._counter = Counter(
            "movierec_worker_replacements", "server workers that died after start and were replaced"
        )
        threading.Thread(target=self._run, args=(manager,), name="worker-keeper", daemon=True).start()

    def _run(self, manager: WorkerManager) -> None:
        while not self._stopping.wait(KEEPER_POLL):
            try:
                self.check(manager)
            except (BrokenPipeError, EOFError, OSError):  # the manager is going away
                return

    def check(self, manager: WorkerManager) -> None:
        from sanic.worker.constants import ProcessState

        for process in list(manager.transient_processes):
            name = process.name
            if name in self._pending:
                if process.pid != self._pending[name]:
                    del self._pending[name]  # the replacement was spawned
                continue
            if not process.pid or process.is_alive() or self._stopping.is_set():
                continue
            if process.state in (ProcessState.TERMINATED, ProcessState.RESTARTING, ProcessState.IDLE):
                continue
            self._replace(manager, name, process.pid, process.exitcode)

    def _replace(self, manager: WorkerManager, name: str, pid: int, code: int | None) -> None:
        now = time.monotonic()
        self._recent.append(now)
        while self._recent and now - self._recent[0] > self.window:
            self._recent.popleft()
        if len(self._recent) > self.limit:
            self.failure = (
                f"{len(self._recent)} workers died within {self.window:.0f} s; replacing does not help"
            )
            log.error("stopping the service: %s", self.failure)
            manager.shutdown()
            manager.monitor_publisher.send(None)
            return
        self.replaced += 1
        log.warning(
            "worker %s (pid %d) died with %s; replacing it (replacement %d)", name, pid, code, self.replaced
        )
        from prometheus_client import multiprocess

        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            multiprocess.mark_process_dead(pid)  # it could not: its live gauges would linger
        self._counter.inc()  # type: ignore[attr-defined]
        self._pending[name] = pid
        manager.monitor_publisher.send(name)  # the manager's loop restarts the named process


def _all_ready(manager: WorkerManager) -> bool:
    states = [entry.get("state") for entry in manager.worker_state.values() if (entry or {}).get("server")]
    return len(states) == manager.num_server and all(state == ACKED for state in states)


def _gone_before_ready(manager: WorkerManager) -> str | None:
    for process in manager.transient_processes:
        if not process.pid or process.is_alive():
            continue
        if (manager.worker_state.get(process.name) or {}).get("state") != ACKED:
            code = process.exitcode
            return f"worker {process.name} (pid {process.pid}) exited with {code} before it was ready"
    return None


def _in_worker_state_bookkeeping(exc: BaseException) -> bool:
    """Whether ``exc`` (or the exception it interrupted) was raised reading Sanic's worker states."""
    current: BaseException | None = exc
    while current is not None:
        frames = traceback.extract_tb(current.__traceback__)
        if any(frame.name in WORKER_STATE_FUNCTIONS for frame in frames):
            return True
        current = current.__context__
    return False


def _stopping() -> None:
    """The stop is under way: a repeated SIGTERM/SIGINT must not cut the clean-up short.

    Seen once in ~20 stops during the start: the service logged its clean stop and was then ended
    by a second interrupt (exit -2), its children left to be reaped by others.
    """
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _stop_children(timeout: float = 10.0) -> None:
    """SIGTERM every child process left (workers finish in-flight requests on it), then wait."""
    children = multiprocessing.active_children()
    for child in children:
        child.terminate()
    for child in children:
        child.join(timeout)
        if child.is_alive():
            child.kill()
