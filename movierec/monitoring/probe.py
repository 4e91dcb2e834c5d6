"""``movierec monitor probe``: what the pipeline's state is *now*, as Prometheus text files that
node-exporter serves (``$MOVIEREC_HOME/metrics/*.prom``), every ``interval`` seconds.

    site_tail.prom    the site's request lines as they arrive on the topic (fresher than the lake):
                      movierec_site_requests_total{server,outcome}, their logged latency
                      (movierec_site_request_latency_seconds histogram), fallback answers
    ingest.prom       ingest lag: lines on the topic the ingest group has not committed, and the
                      age of the oldest of them (seconds)
    kafka.prom        the broker answers a metadata request (movierec_kafka_up), brokers, topics
    model.prom        the serving file `current` points at: version, created time, files kept
    airflow.prom      each DAG's latest finished run (success, end, failed tasks), the catalog
                      sync's progress from its latest report (Airflow's REST API; every 4th round)
    supervisor.prom   each supervised program up or not, its restarts seen by the probe

Every file carries ``movierec_probe_last_success_timestamp_seconds{probe}``; a probe that fails
leaves its previous file (and so a stale timestamp, which an alert watches) and logs why.
The tail follows the topic from its end when the probe starts; when it falls far behind (a
backfill writes history at 100,000 lines/s) it skips to the end and counts what it skipped.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from movierec import serving_file
from movierec.monitoring import availability, textfile
from movierec.movielog import RecoEvent, parse_line
from movierec.settings import Settings

log = logging.getLogger(__name__)

INGEST_GROUP = "movierec-ingest"  # movierec.ingest.consume's consumer group
MONITOR_GROUP = "movierec-monitor"  # never commits: only librdkafka wants a group id
MAX_BEHIND = 200_000  # lines the tail may be behind before it skips to the end
RECO_MARKER = b"recommendation request "
OUTCOMES = ("up", "slow", "timeout", "error")  # movierec.monitoring.availability.outcome
LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.2, 0.4, 0.6, 0.8, 1.0, 2.0)
DAGS = ("ingest_movielog", "catalog", "retrain")
AIRFLOW_EVERY = 4  # rounds between Airflow probes (each logs in through the REST API)


def _consumer(settings: Settings, group: str) -> Any:
    from confluent_kafka import Consumer

    return Consumer(
        {
            "bootstrap.servers": settings.kafka_bootstrap,
            "group.id": group,
            "enable.auto.commit": False,
            "auto.offset.reset": "latest",
            "enable.partition.eof": False,
        },
        logger=log,
    )


def _stamp_gauge(registry: CollectorRegistry) -> Gauge:
    """The success timestamp every probe file carries (an alert watches it go stale)."""
    return Gauge(
        "movierec_probe_last_success_timestamp_seconds",
        "when this probe last succeeded",
        ["probe"],
        registry=registry,
    )


def _stamp(registry: CollectorRegistry, probe: str) -> None:
    _stamp_gauge(registry).labels(probe=probe).set(time.time())


# --- the site's log tail ---------------------------------------------------------------------


class SiteTail:
    """Counts the site's request lines as they arrive (a consumer of its own, from the end)."""

    def __init__(self, settings: Settings, fallbacks: Callable[[], set[str]]) -> None:
        self.settings = settings
        self.fallbacks = fallbacks
        self._fallbacks: set[str] = set()
        self._fallbacks_at = 0.0
        self._servers: set[str] = set()
        self.consumer: Any = None
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "movierec_site_requests",
            "the site's request lines seen on the topic, by server and outcome (up: 200 under 800 ms)",
            ["server", "outcome"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "movierec_site_request_latency_seconds",
            "latency the site logged for each request line seen on the topic",
            ["server"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.fallback = Counter(
            "movierec_site_fallback_answers",
            "answered request lines whose list was a fallback line",
            ["server"],
            registry=self.registry,
        )
        self.skipped = Counter(
            "movierec_site_tail_skipped_lines",
            "lines the tail skipped when it was too far behind (not counted above)",
            registry=self.registry,
        )
        self.last_line = Gauge(
            "movierec_site_tail_last_request_timestamp_seconds",
            "time of the latest request line seen (the site's clock)",
            registry=self.registry,
        )
        self.stamp = _stamp_gauge(self.registry)

    def _assign(self) -> None:
        from confluent_kafka import OFFSET_END, TopicPartition

        self.consumer = _consumer(self.settings, MONITOR_GROUP)
        metadata = self.consumer.list_topics(self.settings.topic, timeout=10)
        topic = metadata.topics.get(self.settings.topic)
        if topic is None or topic.error is not None or not topic.partitions:
            self.consumer.close()
            self.consumer = None
            raise RuntimeError(f"topic {self.settings.topic} is not available")
        partitions = [TopicPartition(self.settings.topic, p, OFFSET_END) for p in sorted(topic.partitions)]
        self.consumer.assign(partitions)

    def _skip_if_far_behind(self) -> None:
        from confluent_kafka import TopicPartition

        for tp in self.consumer.position(self.consumer.assignment()):
            if tp.offset < 0:
                continue
            _, high = self.consumer.get_watermark_offsets(TopicPartition(tp.topic, tp.partition), timeout=5)
            if high - tp.offset > MAX_BEHIND:
                self.skipped.inc(high - tp.offset)
                self.consumer.seek(TopicPartition(tp.topic, tp.partition, high))
                log.info(
                    "site tail: partition %d %d lines behind; skipped to the end",
                    tp.partition,
                    high - tp.offset,
                )

    def count(self, value: bytes) -> None:
        if RECO_MARKER not in value:
            return
        event = parse_line(value)
        if not isinstance(event, RecoEvent):
            return
        server = event.server
        if server not in self._servers:  # every outcome from 0, so a rate of "down" exists while clean
            self._servers.add(server)
            for outcome in OUTCOMES:
                self.requests.labels(server=server, outcome=outcome)
            self.fallback.labels(server=server)
        self.requests.labels(
            server=server, outcome=availability.outcome(event.status, event.latency_ms)
        ).inc()
        self.latency.labels(server=server).observe(event.latency_ms / 1000)
        if event.status == 200 and ",".join(event.items) in self._fallbacks:
            self.fallback.labels(server=server).inc()
        self.last_line.set(event.time.timestamp())

    def poll(self, seconds: float) -> int:
        """Read what arrived for up to ``seconds``; the number of messages read."""
        if self.consumer is None:
            self._assign()
        if time.monotonic() - self._fallbacks_at > 60:
            self._fallbacks, self._fallbacks_at = self.fallbacks(), time.monotonic()
        self._skip_if_far_behind()
        deadline, read = time.monotonic() + seconds, 0
        while time.monotonic() < deadline:
            messages = self.consumer.consume(
                num_messages=10_000, timeout=min(1.0, max(0.05, deadline - time.monotonic()))
            )
            for message in messages:
                if message.error() is None and message.value():
                    self.count(message.value())
            read += len(messages)
        return read

    def write(self) -> None:
        self.stamp.labels(probe="site_tail").set(time.time())
        textfile.write(self.settings, "site_tail.prom", self.registry)

    def close(self) -> None:
        if self.consumer is not None:
            self.consumer.close()


# --- one-shot probes: each builds a registry and writes its file --------------------------------


def ingest_lag(settings: Settings) -> CollectorRegistry:
    """Lines the ingest group has not committed, and how long the oldest of them has waited."""
    from confluent_kafka import TopicPartition

    consumer = _consumer(settings, INGEST_GROUP)  # reads the group's offsets; never joins, never commits
    try:
        metadata = consumer.list_topics(settings.topic, timeout=10)
        topic = metadata.topics.get(settings.topic)
        if topic is None or topic.error is not None:
            raise RuntimeError(f"topic {settings.topic} is not available")
        wanted = [TopicPartition(settings.topic, p) for p in sorted(topic.partitions)]
        committed = consumer.committed(wanted, timeout=10)
        lines, oldest_ms = 0, None
        for tp in committed:
            low, high = consumer.get_watermark_offsets(
                TopicPartition(settings.topic, tp.partition), timeout=10
            )
            start = max(tp.offset if tp.offset >= 0 else low, low)
            if high <= start:
                continue
            lines += high - start
            consumer.assign([TopicPartition(settings.topic, tp.partition, start)])
            for message in consumer.consume(num_messages=1, timeout=5):
                if message.error() is None:
                    stamp = message.timestamp()[1]  # the broker's append time (LogAppendTime)
                    oldest_ms = stamp if oldest_ms is None else min(oldest_ms, stamp)
            consumer.unassign()
    finally:
        consumer.close()
    registry = CollectorRegistry()
    Gauge("movierec_ingest_lag_lines", "lines on the topic not yet ingested", registry=registry).set(lines)
    age = 0.0 if oldest_ms is None else max(0.0, time.time() - oldest_ms / 1000)
    Gauge(
        "movierec_ingest_lag_seconds",
        "age of the oldest line not yet ingested (0: caught up)",
        registry=registry,
    ).set(age)
    _stamp(registry, "ingest")
    return registry


def kafka_health(settings: Settings) -> CollectorRegistry:
    """Whether the broker answers a metadata request; a failure is a 0, not an exception."""
    from confluent_kafka.admin import AdminClient

    registry = CollectorRegistry()
    up = Gauge("movierec_kafka_up", "1 if the broker answered a metadata request", registry=registry)
    took = Gauge("movierec_kafka_probe_duration_seconds", "time the metadata request took", registry=registry)
    began = time.monotonic()
    try:
        metadata = AdminClient({"bootstrap.servers": settings.kafka_bootstrap}).list_topics(timeout=5)
        up.set(1)
        Gauge("movierec_kafka_brokers", "brokers in the cluster", registry=registry).set(
            len(metadata.brokers)
        )
        partitions = Gauge(
            "movierec_kafka_topic_partitions", "partitions per topic", ["topic"], registry=registry
        )
        for name, topic in metadata.topics.items():
            if not name.startswith("__"):
                partitions.labels(topic=name).set(len(topic.partitions))
    except Exception as exc:  # KafkaException, timeouts: the broker is down, which is what we report
        log.warning("kafka probe: %s", exc)
        up.set(0)
    took.set(time.monotonic() - began)
    _stamp(registry, "kafka")
    return registry


def model_state(settings: Settings) -> CollectorRegistry:
    """The serving file ``current`` points at."""
    from movierec.models import registry as models

    registry = CollectorRegistry()
    version = models.current_version(settings)
    kept = Gauge("movierec_serving_files_kept", "serving files kept for rollback", registry=registry)
    kept.set(len(serving_file.serving_ids(settings.serving_dir)))
    if version is not None:
        meta = serving_file.read_meta(serving_file.file_path(settings.serving_dir, version))
        created = datetime.fromisoformat(str(meta["created_at"]))
        Gauge(
            "movierec_serving_model_info", "the version current points at", ["version"], registry=registry
        ).labels(version=version).set(1)
        Gauge(
            "movierec_serving_model_created_timestamp_seconds",
            "when the current model was created",
            ["version"],
            registry=registry,
        ).labels(version=version).set(created.timestamp())
    _stamp(registry, "model")
    return registry


def airflow_state(settings: Settings) -> CollectorRegistry:
    """Each DAG's latest finished run, and the catalog sync's progress from its latest report."""
    from movierec.ops import airflow_ops

    registry = CollectorRegistry()
    success = Gauge(
        "movierec_dag_last_run_success", "1 if the latest finished run succeeded", ["dag"], registry=registry
    )
    ended = Gauge(
        "movierec_dag_last_run_end_timestamp_seconds",
        "when the latest finished run ended",
        ["dag"],
        registry=registry,
    )
    failed_task = Gauge(
        "movierec_dag_last_run_failed_task_info",
        "tasks that failed in the latest finished run",
        ["dag", "task"],
        registry=registry,
    )
    active = Gauge("movierec_dag_active_runs", "runs queued or running", ["dag"], registry=registry)
    catalog_report: dict[str, Any] | None = None
    with airflow_ops.api_client(settings) as client:
        for dag in DAGS:
            answer = client.get(f"/api/v2/dags/{dag}/dagRuns", params={"order_by": "-run_after", "limit": 20})
            if answer.status_code == 404:
                continue
            answer.raise_for_status()
            runs = answer.json()["dag_runs"]
            active.labels(dag=dag).set(sum(run["state"] in ("queued", "running") for run in runs))
            finished = [run for run in runs if run["state"] in ("success", "failed")]
            if not finished:
                continue
            last = finished[0]
            success.labels(dag=dag).set(1 if last["state"] == "success" else 0)
            if last.get("end_date"):
                ended.labels(dag=dag).set(datetime.fromisoformat(last["end_date"]).timestamp())
            if last["state"] == "failed":
                tasks = client.get(
                    f"/api/v2/dags/{dag}/dagRuns/{last['dag_run_id']}/taskInstances",
                    params={"state": ["failed"]},
                )
                tasks.raise_for_status()
                for instance in tasks.json()["task_instances"]:
                    failed_task.labels(dag=dag, task=instance["task_id"]).set(1)
            if dag == "catalog":
                good = next((run for run in finished if run["state"] == "success"), None)
                if good is not None:
                    xcom = client.get(
                        f"/api/v2/dags/catalog/dagRuns/{good['dag_run_id']}/taskInstances/sync_catalog"
                        "/xcomEntries/return_value"
                    )
                    if xcom.status_code == 200:
                        catalog_report = xcom.json().get("value")
    if isinstance(catalog_report, dict):
        progress = Gauge(
            "movierec_catalog_ids",
            "catalog sync: ids by kind and state (latest report)",
            ["kind", "state"],
            registry=registry,
        )
        for kind in ("users", "movies"):
            for state in ("seen", "missing", "fetched"):
                value = (catalog_report.get(kind) or {}).get(state)
                if isinstance(value, int | float):
                    progress.labels(kind=kind, state=state).set(value)
        Gauge("movierec_catalog_remaining", "ids still to fetch after the latest run", registry=registry).set(
            float(catalog_report.get("remaining") or 0)
        )
    _stamp(registry, "airflow")
    return registry


# supervisord's states of a program it was not asked to run (never started, or stopped on
# request: `up --no-live` leaves the viewers so): not down, so no series and no page
NOT_ASKED_TO_RUN = frozenset({"STOPPED", "STOPPING"})


def program_up(statename: str) -> int | None:
    """1 running, 0 down (starting again, exited, given up), None when it was not asked to run."""
    if statename in NOT_ASKED_TO_RUN:
        return None
    return 1 if statename == "RUNNING" else 0


class SupervisorState:
    """Each supervised program up or not; restarts counted when its start time changes."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.registry = CollectorRegistry()
        self.up = Gauge(
            "movierec_supervised_up", "1 while the program runs", ["program"], registry=self.registry
        )
        self.started = Gauge(
            "movierec_supervised_start_timestamp_seconds",
            "when the program last started",
            ["program"],
            registry=self.registry,
        )
        self.restarts = Counter(
            "movierec_supervised_restarts",
            "starts of the program seen after the first",
            ["program"],
            registry=self.registry,
        )
        self.stamp = _stamp_gauge(self.registry)
        self.seen: dict[str, int] = {}

    def probe(self) -> CollectorRegistry:
        from movierec.ops import supervisor

        for record in supervisor.all_info(self.settings):
            name = record["name"]
            if name not in self.seen:
                self.restarts.labels(program=name)  # from 0, so the first restart is an increase
            up = program_up(record["statename"])
            if up is None:
                with contextlib.suppress(KeyError):  # no series yet: nothing to take back
                    self.up.remove(name)
            else:
                self.up.labels(program=name).set(up)
            self.started.labels(program=name).set(record["start"])
            if name in self.seen and record["start"] != self.seen[name] and record["start"]:
                self.restarts.labels(program=name).inc()
            self.seen[name] = record["start"]
        self.stamp.labels(probe="supervisor").set(time.time())
        return self.registry


# --- the loop ---------------------------------------------------------------------------------------


def run(settings: Settings, interval: float | None = None, rounds: int | None = None) -> None:
    """Probe every ``interval`` seconds (default: Prometheus's) until interrupted, or ``rounds`` times."""
    from movierec.monitoring.availability_store import fallback_lines

    every = float(interval or settings.prometheus_interval)
    tail = SiteTail(settings, lambda: fallback_lines(settings))
    supervised = SupervisorState(settings)
    probes: dict[str, tuple[str, Callable[[], CollectorRegistry], int]] = {
        "ingest": ("ingest.prom", lambda: ingest_lag(settings), 1),
        "kafka": ("kafka.prom", lambda: kafka_health(settings), 1),
        "model": ("model.prom", lambda: model_state(settings), 1),
        "airflow": ("airflow.prom", lambda: airflow_state(settings), AIRFLOW_EVERY),
        "supervisor": ("supervisor.prom", supervised.probe, 1),
    }
    log.info("probing every %.0f s into %s", every, textfile.metrics_dir(settings))
    done = 0
    try:
        while rounds is None or done < rounds:
            began = time.monotonic()
            for name, (file, probe, period) in probes.items():
                if done % period:
                    continue
                try:
                    textfile.write(settings, file, probe())
                except Exception as exc:  # one part down must not stop the others
                    log.warning("probe %s failed: %s", name, exc)
            try:
                tail.poll(max(0.5, every - (time.monotonic() - began)))
                tail.write()
            except Exception as exc:
                log.warning("probe site_tail failed: %s", exc)
                tail.close()
                tail.consumer = None
                time.sleep(max(0.0, every - (time.monotonic() - began)))
            done += 1
    finally:
        tail.close()
