"""The whole loop from one command (`make up` -> `movierec up`), and its end (`movierec down`).

    Kafka ─► monitoring (node-exporter, Alertmanager, dashboard, Prometheus, probe)
      ─► catalog API (simulator) ─► recommendation service ─► Airflow (DAGs unpaused)
      ─► backfill of history (simulator, first time only), and beside it ingest runs until caught
      up (the catalog run starts after the first) ─► first retrain (if nothing is published yet)
      ─► live viewers

Every step is idempotent: a second `movierec up` finds things running and only starts what is
not. Every long-running part runs under one supervisord per home (``movierec.ops.supervisor``),
which restarts what dies. The simulator is driven through its `movierec world ...` commands in
their own processes: the product never imports it. Each step prints one line when it starts
and one when it ends.
"""

from __future__ import annotations

import logging
import os
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any

from movierec.ops import airflow_ops, processes, services, spark_cluster, supervisor
from movierec.ops.broker import broker
from movierec.settings import Settings, child_env

log = logging.getLogger(__name__)


def busy_share(cpu_seconds: float, wall_seconds: float, cores: int) -> float:
    """How busy the cores were over a span: 1.0 is every core all the time."""
    return cpu_seconds / (wall_seconds * cores) if wall_seconds > 0 else 0.0


@dataclass
class Timeline:
    """When each step of `movierec up` ended, in seconds from the start (for the README's
    figures), and the machine's busy CPU seconds over each step (every process, not only ours):
    near all cores busy, a step is bound by the machine, not by waiting."""

    began: float = field(default_factory=time.monotonic)
    marks: dict[str, float] = field(default_factory=dict)
    cpu: dict[str, float] = field(default_factory=dict)
    cpu_began: float = field(default_factory=processes.busy_cpu_seconds)
    cores: int = field(default_factory=lambda: os.cpu_count() or 1)
    started: dict[str, tuple[float, float]] = field(default_factory=dict)

    @contextmanager
    def step(self, name: str, what: str) -> Iterator[None]:
        self.begin(what)
        yield
        self.end(name, what)

    def begin(self, what: str) -> None:
        self.started[what] = (self.elapsed(), processes.busy_cpu_seconds())
        print(f"[{self.elapsed():6.0f} s] {what} ...", flush=True)

    def end(self, name: str, what: str) -> None:
        began, cpu_began = self.started.pop(what)
        self.marks[name] = self.elapsed()
        self.cpu[name] = processes.busy_cpu_seconds() - cpu_began
        spent = self.spent(self.marks[name] - began, self.cpu[name])
        print(f"[{self.elapsed():6.0f} s] {what}: done ({spent})", flush=True)

    def elapsed(self) -> float:
        return time.monotonic() - self.began

    def spent(self, wall_seconds: float, cpu_seconds: float) -> str:
        share = busy_share(cpu_seconds, wall_seconds, self.cores)
        return f"{cpu_seconds:.0f} CPU s, {self.cores} cores {share:.0%} busy"

    def so_far(self) -> str:
        """Seconds since the start, and the machine's CPU seconds over them."""
        elapsed = self.elapsed()
        return f"{elapsed:.0f} s ({self.spent(elapsed, processes.busy_cpu_seconds() - self.cpu_began)})"


def has_current_model(settings: Settings) -> bool:
    return (settings.serving_dir / "current").exists()


def lake_is_empty(settings: Settings) -> bool:
    from movierec import lake

    return not lake.has_manifests(settings)


def check_history_days(backfill_days: float, test_days: int) -> None:
    """Refuse a backfill too short to train on, before anything starts.

    The retrain holds out the last ``test_days`` and splits at the nearest midnight, so it may take
    up to half a day more: a shorter history would be ingested for minutes and then fail in prepare.
    """
    if backfill_days < test_days + 1:
        raise ValueError(
            f"--days {backfill_days:g} leaves nothing to train on: the retrain holds out the last "
            f"{test_days} day(s) (MOVIEREC_TEST_DAYS) and splits at a midnight; backfill at least "
            f"{test_days + 1} days"
        )


def lines_waiting(settings: Settings) -> int:
    """Lines on the topic the ingest has not committed yet."""
    from movierec.ingest import consume

    consumer = consume.consumer_of(settings)
    try:
        uncapped = replace(settings, ingest_max_lines=1 << 62)
        return sum(r.end - r.start for r in consume.plan_ranges(uncapped, consumer))
    finally:
        consumer.close()


INGEST, WAIT, CAUGHT_UP = "ingest", "wait", "caught up"
# The tasks of an ingest run that catching up waits for: the batch's files and its days' sessions,
# what the next batch and the first retrain read. Drift and availability end beside the next run
# (triggered now, it starts when this one ends: one run at a time) or beside the retrain's prepare,
# ~5-7 s per run that the loop no longer waits on.
LAKE_TASKS = ("ingest_batch", "update_watch_sessions")
INGEST_DAG, RETRAIN_DAG, ONLINE_DAG = "ingest_movielog", "retrain", "online_metrics"
# How often a run's state is asked for: the next step starts when it is seen to end, and the catch-up
# waits on ~8 runs in a row (at 3 s a poll that was ~1.5 s lost per run; a GET a second costs the
# API server next to nothing).
RUN_POLL_SECONDS = 1.0


def kept_paused(has_model: bool, backfilling: bool) -> tuple[str, ...]:
    """The DAGs ``up`` leaves paused when Airflow starts (each unpaused when its turn comes).

    ``retrain`` until there is a model or data: unpaused, its schedule starts a run at once.
    ``ingest_movielog`` while a backfill begins, until the catch-up's first run: its schedule
    would start a run at once too, on the backfill's first second of lines (~0.1M), a whole run
    (~40 s on the shared cores) that the lines did not need: 21M lines then took 9 runs, not 8
    (two make up runs of 2026-12-03 had it; the last run takes the history's remainder either way).
    ``online_metrics`` until the first model is published (then ``up`` starts one run over the
    whole history): it measures what viewers did after the answers, and its asset trigger would
    start a run after every ingest batch of the catch-up, each recomputing the days the batch
    touched: 9 runs and 283 s of task time in a make up of 2026-12-03, on the 2 cores the backfill
    and ingest keep 95% busy. A paused DAG gets no asset-triggered run (nothing queues)."""
    return ((RETRAIN_DAG, ONLINE_DAG) if not has_model else ()) + ((INGEST_DAG,) if backfilling else ())


def next_ingest(waiting: int, backfilling: bool, batch_lines: int) -> str:
    """What catching up does next, from the lines waiting on the topic: ``INGEST`` a run, ``WAIT``
    while the backfill writes until a whole batch is there (each run pays ~30 s beyond its batch:
    Airflow's start and the DAG's later tasks, so small runs behind the backfill would waste it),
    or ``CAUGHT_UP`` (the backfill, if any, has ended and nothing waits)."""
    if waiting >= batch_lines or (waiting > 0 and not backfilling):
        return INGEST
    return WAIT if backfilling else CAUGHT_UP


def start_run(settings: Settings, dag_id: str, conf: dict[str, Any] | None = None) -> str:
    run_id = airflow_ops.trigger(settings, dag_id, conf)
    print(f"           {dag_id}: run {run_id} (watch it at {airflow_ops.api_url(settings)}/dags/{dag_id})")
    return run_id


def run_dag(settings: Settings, dag_id: str, timeout: float, conf: dict[str, Any] | None = None) -> str:
    run_id = start_run(settings, dag_id, conf)
    return airflow_ops.wait_for_run(settings, dag_id, run_id, timeout=timeout, poll=RUN_POLL_SECONDS)


def first_retrain(settings: Settings, timeout: float, wait_for_schedule: float = 30.0) -> str:
    """Unpause retrain and wait for the run its schedule starts at once (catchup=False starts the
    latest interval), or trigger one if none comes: one retrain, not a scheduled and a manual one."""
    airflow_ops.unpause(settings, RETRAIN_DAG)
    deadline = time.monotonic() + wait_for_schedule
    while not (runs := airflow_ops.active_runs(settings, RETRAIN_DAG)) and time.monotonic() < deadline:
        time.sleep(2.0)
    if not runs:
        return run_dag(settings, RETRAIN_DAG, timeout)
    print(f"           retrain: run {runs[0]} (watch it at {airflow_ops.api_url(settings)}/dags/retrain)")
    return airflow_ops.wait_for_run(settings, RETRAIN_DAG, runs[0], timeout=timeout, poll=RUN_POLL_SECONDS)


def start_catalog(settings: Settings, say: Callable[[str], None]) -> None:
    run_id = airflow_ops.trigger(settings, "catalog")
    say(f"           catalog: run {run_id} started (users and movies; it goes on in the background)")


def world(settings: Settings, *args: str) -> subprocess.Popen:
    """A `movierec world ...` command started beside us, its progress lines passed through."""
    return subprocess.Popen([str(services.CLI), "world", *args], env=child_env(settings))


def catch_up(
    settings: Settings,
    timeline: Timeline,
    backfill: subprocess.Popen | None,
    backfill_what: str,
    say: Callable[[str], None],
    poll: float = 5.0,
) -> None:
    """``ingest_movielog`` runs until the lake has caught up with the topic, while the backfill (if
    any) still writes: the backfill is one process and an ingest run another, so on 2 cores they
    overlap instead of adding up (at full scale 644 s for both, 713 s one after the other). The
    catalog run starts after the first ingest run (it stores users as it goes, so the first
    retrain finds those fetched while the rest is ingested). ``ingest_movielog`` is unpaused (its
    schedule on) before the first run: it is paused while a backfill begins (``kept_paused``)."""
    catalog_started = False
    while True:
        if backfill is not None and "backfill" not in timeline.marks and backfill.poll() is not None:
            if backfill.returncode != 0:
                raise subprocess.CalledProcessError(backfill.returncode, backfill.args)
            timeline.end("backfill", backfill_what)
        backfilling = backfill is not None and backfill.returncode is None
        waiting = lines_waiting(settings)
        action = next_ingest(waiting, backfilling, settings.ingest_max_lines)
        if action == CAUGHT_UP:
            break
        if action == WAIT:
            time.sleep(poll)
            continue
        say(f"           {waiting:,} lines to ingest" + (" (the backfill goes on)" if backfilling else ""))
        airflow_ops.unpause(settings, INGEST_DAG)  # a paused DAG's runs wait; a no-op once on
        run_id = start_run(settings, INGEST_DAG)
        state = airflow_ops.wait_for_tasks(
            settings, INGEST_DAG, run_id, LAKE_TASKS, timeout=3600, poll=RUN_POLL_SECONDS
        )
        if state != "success":
            raise airflow_ops.AirflowOpsError("an ingest_movielog run failed (its log: Airflow UI)")
        if not catalog_started:
            start_catalog(settings, say)
            catalog_started = True
    airflow_ops.unpause(settings, INGEST_DAG)  # caught up without a run: the schedule takes over
    if not catalog_started:
        with timeline.step("catalog", "catalog run"):
            start_catalog(settings, say)


def up(
    settings: Settings,
    *,
    backfill_days: float,
    sessions_per_day: int,
    live: bool = True,
    retrain_timeout: float = 4 * 3600,
    say: Callable[[str], None] = print,
) -> Timeline:
    if not has_current_model(settings) and lake_is_empty(settings):
        check_history_days(backfill_days, settings.test_days)
    timeline = Timeline()
    catalog = services.catalog_of(settings)
    with timeline.step("kafka", f"Kafka broker on {settings.kafka_bootstrap}"):
        broker.start(settings)
        broker.ensure_topics(settings)
    what = f"monitoring: Prometheus :{settings.prometheus_port}, dashboard :{settings.dashboard_port}"
    with timeline.step("monitoring", what):
        for name in services.MONITORING:
            services.start(settings, catalog[name])
    with timeline.step("api", f"simulator catalog API on {settings.catalog_api_url}"):
        services.start(settings, catalog["api"], timeout=300)  # first start builds the world
    # the service before Airflow: it needs neither, and Prometheus pages when it is missing for a minute
    with timeline.step("server", f"recommendation service on {settings.server_host}:{settings.server_port}"):
        services.start(settings, catalog["server"])
    will_backfill = lake_is_empty(settings) and lines_waiting(settings) == 0
    with timeline.step("airflow", f"Airflow on {airflow_ops.api_url(settings)}"):
        airflow_ops.start(settings)
        airflow_ops.unpause_all(settings, keep_paused=kept_paused(has_current_model(settings), will_backfill))
    backfill, backfill_what = None, f"backfill of {backfill_days:g} days of history into {settings.topic}"
    if will_backfill:
        timeline.begin(backfill_what)
        days, sessions = f"{backfill_days:g}", str(sessions_per_day)
        backfill = world(settings, "backfill", "--days", days, "--sessions-per-day", sessions)
    try:
        with timeline.step("ingest", "ingest_movielog runs until the lake has caught up with the topic"):
            catch_up(settings, timeline, backfill, backfill_what, say)
    finally:
        if backfill is not None and backfill.poll() is None:  # an ingest failed or we were interrupted
            backfill.terminate()
            backfill.wait()
    if not has_current_model(settings):
        with timeline.step("retrain", "first retrain: prepare, train, evaluate, precompute, publish"):
            state = first_retrain(settings, timeout=retrain_timeout)
            if state != "success" or not has_current_model(settings):
                raise airflow_ops.AirflowOpsError("the first retrain did not publish a model: see its log")
        # kept paused until now (kept_paused): one run over the whole history, in the background
        airflow_ops.unpause(settings, ONLINE_DAG)
        start_run(settings, ONLINE_DAG)
    if live:
        with timeline.step("viewers", "simulator live viewers calling the service"):
            services.start(settings, catalog["viewers"])
    return timeline


def down(settings: Settings) -> list[str]:
    """Stop everything `up` started, the viewers first and Kafka last; what was running."""
    stopped = []
    for name, service in reversed(services.catalog_of(settings).items()):
        if services.stop(settings, service):
            stopped.append(name)
    if airflow_ops.stop(settings):
        stopped.append("airflow")
    if spark_cluster.stop(settings):  # `movierec spark start`, if the operator ran it in this home
        stopped.append("spark-cluster")
    if broker.stop(settings):
        stopped.append("kafka")
    if supervisor.shutdown(settings):  # normally gone with its last program
        stopped.append("supervisord")
    return stopped


def where(settings: Settings) -> list[str]:
    """Where each thing is, for a newcomer."""
    return [
        f"service      http://{settings.server_host}:{settings.server_port}/recommend/<userid>"
        f"  (/healthz; metrics http://{settings.server_ops_host}:{settings.ops_port}/metrics;"
        f" log {services.log_file(settings, 'server')})",
        f"Airflow UI   {airflow_ops.api_url(settings)}  login {airflow_ops.ADMIN_USER}, "
        f"password in {airflow_ops.password_file(settings)}",
        f"data docs    {settings.home / 'gx' / 'uncommitted' / 'data_docs' / 'local_site' / 'index.html'}",
        f"reports      {settings.reports_dir}/<version>/report.md",
        f"models       {settings.serving_dir}/current -> the file being served",
        f"kafka        {settings.kafka_bootstrap}  topic {settings.topic} (log {broker.logs_dir(settings)})",
        f"viewers      log {services.log_file(settings, 'viewers')} (the request client's lines)",
        f"dashboard    http://127.0.0.1:{settings.dashboard_port}/  (alerts: {settings.home / 'alerts'})",
        f"Prometheus   http://127.0.0.1:{settings.prometheus_port}/  Alertmanager "
        f"http://127.0.0.1:{settings.alertmanager_port}/",
        f"supervisor   {supervisor.conf_dir(settings) / 'supervisord.conf'} (supervisorctl -c <that> status)",
        "stop with    make down",
    ]


def status(settings: Settings) -> dict[str, bool]:
    state = {"kafka": broker.status(settings).healthy, "airflow": airflow_ops.status(settings).healthy}
    for name in services.catalog_of(settings):
        state[name] = services.running_pid(settings, name) is not None
    state["model"] = has_current_model(settings)
    return state
