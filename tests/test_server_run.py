"""``movierec serve``'s guards: the stop noted before Sanic's manager, and Sanic's shutdown race."""

from __future__ import annotations

import multiprocessing
import os
import signal
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
from sanic.worker.manager import WorkerManager

from server.run import EarlyStop, StartupWatch, _in_worker_state_bookkeeping

NEVER_STOPPED = "not stopped"  # what a worker of the manager test writes if nobody stops it


def test_a_stop_before_sanics_manager_is_noted_and_never_raised() -> None:
    """A raised KeyboardInterrupt can land in an import's weakref callback and be dropped: never raise."""
    previous = {signum: signal.getsignal(signum) for signum in (signal.SIGTERM, signal.SIGINT)}
    early_stop = EarlyStop()
    try:
        early_stop.install()
        assert not early_stop.requested
        try:
            os.kill(os.getpid(), signal.SIGTERM)
            os.kill(os.getpid(), signal.SIGINT)
            sum(range(10_000))  # Python runs signal handlers between bytecodes: here at the latest
        except KeyboardInterrupt:
            pytest.fail("the stop was raised as KeyboardInterrupt")
        assert early_stop.requested
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def idle_worker(notes: str, patience: float) -> None:
    """A server worker that never acknowledges: it idles until stopped, or notes that it was not."""
    time.sleep(patience)
    (Path(notes) / str(os.getpid())).write_text(NEVER_STOPPED)


def test_a_stop_noted_before_sanics_manager_stops_the_workers_it_spawns_after(tmp_path: Path) -> None:
    """The stop came between our start and Sanic's manager: ``attach`` hands it to the manager, whose
    start then spawns both workers anyway; the wait must stop them (Sanic's manager, real processes)."""
    previous = {signum: signal.getsignal(signum) for signum in (signal.SIGTERM, signal.SIGINT)}
    early_stop = EarlyStop()
    early_stop.note(signal.SIGTERM, None)  # what the handler does when the stop arrives
    try:
        manager = WorkerManager(
            2,
            idle_worker,
            {"notes": str(tmp_path), "patience": 60.0},
            multiprocessing.get_context("spawn"),
            multiprocessing.Pipe(),
            {},
        )
        watch = StartupWatch(limit=120.0, early_stop=early_stop)  # beyond the workers' patience
        watch.attach(SimpleNamespace(manager=manager))  # a stand-in app: attach reads its manager only
        manager.run()  # start, our wait, Sanic's monitor loop, join: returns once the workers are gone
        workers = list(manager.transient_processes)
        assert len(workers) == 2
        assert all(process.pid and not process.is_alive() for process in workers)
        assert list(tmp_path.iterdir()) == [], "a worker was never stopped"
        assert watch.failure is None  # a stop, not a start that failed
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def set_state(worker_state: dict) -> None:  # named as Sanic's WorkerProcess.set_state
    worker_state["Srv 0"] = {**worker_state["Srv 0"], "state": "TERMINATED"}


def _get_process_states(worker_state: dict) -> list:  # named as Sanic's reader of the states
    return [s.get("state") for s in worker_state.values()]


def caught(call: object, *args: object) -> BaseException:
    with pytest.raises((TypeError, AttributeError)) as info:
        call(*args)  # type: ignore[operator]
    return info.value


def test_a_torn_state_read_in_sanics_bookkeeping_is_recognised() -> None:
    assert _in_worker_state_bookkeeping(caught(set_state, {"Srv 0": None}))
    assert _in_worker_state_bookkeeping(caught(_get_process_states, {"Srv 0": "RUNNING"}))


def test_the_race_is_recognised_when_it_interrupted_another_failure() -> None:
    def stop_then_count() -> None:
        try:
            set_state({"Srv 0": None})
        finally:
            len(None)  # type: ignore[arg-type]

    error = caught(stop_then_count)
    assert isinstance(error, TypeError) and "len()" in str(error)
    assert _in_worker_state_bookkeeping(error)


def test_any_other_type_error_is_not_hidden() -> None:
    def create_app(settings: None) -> None:
        settings.server_port  # type: ignore[attr-defined]  # noqa: B018

    assert not _in_worker_state_bookkeeping(caught(create_app, None))
