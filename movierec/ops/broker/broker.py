"""The embedded single-node Apache Kafka broker (KRaft, broker+controller in one JVM).

Lifecycle: resolve the pinned ``org.apache.kafka:kafka_2.13`` and its runtime
dependencies from Maven Central into a cache folder (once; later starts are
offline), format KRaft storage under ``$MOVIEREC_HOME/kafka``, run one JVM under
supervisord (``movierec.ops.supervisor``: restarted if it dies) with its logs in
a file, wait until a message can be produced and consumed, and stop it (SIGTERM
for a controlled shutdown, SIGKILL only after a timeout) so no JVM is left behind.

A user with a real Kafka cluster never calls this: they set
``MOVIEREC_KAFKA_BOOTSTRAP`` and the rest of movierec uses that.
"""

from __future__ import annotations

import base64
import logging
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

from movierec.ops import supervisor
from movierec.ops.supervisor import Program
from movierec.settings import Settings

if TYPE_CHECKING:
    from kafka.admin import KafkaAdminClient

log = logging.getLogger(__name__)

MAIN_CLASS = "kafka.Kafka"
STORAGE_TOOL = "kafka.tools.StorageTool"
HEALTH_TOPIC = "movierec.health"


class BrokerError(RuntimeError):
    """The embedded broker could not be resolved, started or reached."""


# --- paths ------------------------------------------------------------------


def libs_dir(settings: Settings) -> Path:
    return settings.kafka_cache / settings.kafka_version / "libs"


def data_dir(settings: Settings) -> Path:
    return settings.kafka_home / "data"


def logs_dir(settings: Settings) -> Path:
    return settings.kafka_home / "logs"


def listener(settings: Settings) -> tuple[str, int]:
    """The (host, port) the embedded broker listens on: the bootstrap address itself."""
    first = settings.kafka_bootstrap.split(",")[0].strip()
    host, _, port = first.rpartition(":")
    if not host or not port.isdigit():
        raise BrokerError(f"MOVIEREC_KAFKA_BOOTSTRAP={settings.kafka_bootstrap!r} is not host:port")
    if "," in settings.kafka_bootstrap or host not in {"127.0.0.1", "localhost"}:
        raise BrokerError(
            f"MOVIEREC_KAFKA_BOOTSTRAP={settings.kafka_bootstrap} names an external cluster; "
            "the embedded broker only runs on 127.0.0.1 (unset it to use the embedded one)"
        )
    return "127.0.0.1", int(port)


def free_port() -> int:
    """A TCP port nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def private_settings(home: Path, **env: str) -> Settings:
    """Settings for a private embedded broker under ``home`` on free ports (tests, benchmarks)."""
    from movierec.settings import load

    return load(
        {
            "MOVIEREC_HOME": str(home),
            "MOVIEREC_KAFKA_BOOTSTRAP": f"127.0.0.1:{free_port()}",
            "MOVIEREC_KAFKA_CONTROLLER_PORT": str(free_port()),
            **env,
        }
    )


# --- resolving the jars -----------------------------------------------------


def resolve_jars(settings: Settings) -> Path:
    """The broker's jars, resolved by Maven on first use and reused afterwards."""
    target = libs_dir(settings)
    marker = target / ".resolved"
    if marker.exists():
        return target
    if shutil.which("mvn") is None:
        raise BrokerError("Maven (mvn) is needed once to fetch the Kafka broker; install it first")
    log.info(
        "resolving Kafka %s from Maven Central into %s (first time only)", settings.kafka_version, target
    )
    started = time.monotonic()
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix="libs.", dir=target.parent))
    pom = resources.files("movierec.ops.broker").joinpath("pom.xml")
    with resources.as_file(pom) as pom_path:
        command = [
            "mvn", "-B", "-q", "-f", str(pom_path),
            "dependency:copy-dependencies",
            "-DincludeScope=runtime",
            f"-Dkafka.version={settings.kafka_version}",
            f"-DoutputDirectory={staging}",
        ]  # fmt: skip
        result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        shutil.rmtree(staging, ignore_errors=True)
        raise BrokerError(f"Maven could not resolve Kafka {settings.kafka_version}:\n{result.stdout[-3000:]}")
    jars = sorted(staging.glob("*.jar"))
    if not any(jar.name.startswith("kafka_2.13-") for jar in jars):
        shutil.rmtree(staging, ignore_errors=True)
        raise BrokerError(f"Maven ran but no kafka_2.13 jar arrived in {staging}")
    (staging / ".resolved").write_text("\n".join(jar.name for jar in jars) + "\n")
    shutil.rmtree(target, ignore_errors=True)
    staging.rename(target)  # a half-resolved cache is never mistaken for a complete one
    log.info("resolved %d jars in %.1f s", len(jars), time.monotonic() - started)
    return target


# --- configuration and storage ---------------------------------------------


def server_properties(settings: Settings) -> str:
    """The broker configuration: one combined broker+controller node, replication 1."""
    host, port = listener(settings)
    controller = settings.kafka_controller_port
    retention_ms = settings.topic_retention_hours * 3600 * 1000
    return "\n".join(
        [
            "# written by movierec.ops.broker at every start; edit the settings, not this file",
            "process.roles=broker,controller",
            "node.id=1",
            f"controller.quorum.voters=1@{host}:{controller}",
            f"listeners=PLAINTEXT://{host}:{port},CONTROLLER://{host}:{controller}",
            f"advertised.listeners=PLAINTEXT://{host}:{port}",
            "controller.listener.names=CONTROLLER",
            "inter.broker.listener.name=PLAINTEXT",
            "listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
            f"log.dirs={data_dir(settings)}",
            f"num.partitions={settings.topic_partitions}",
            f"log.retention.ms={retention_ms}",
            # topics are created explicitly (ensure_topics) with their own partitions and retention
            "auto.create.topics.enable=false",
            "offsets.topic.replication.factor=1",
            "offsets.topic.num.partitions=8",
            "transaction.state.log.replication.factor=1",
            "transaction.state.log.min.isr=1",
            "share.coordinator.state.topic.replication.factor=1",
            "share.coordinator.state.topic.min.isr=1",
            "group.initial.rebalance.delay.ms=0",
            "",
        ]
    )


def new_cluster_id() -> str:
    """A Kafka cluster id: 16 random bytes, URL-safe base64 without padding."""
    return base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()


def _java_command(settings: Settings, main_class: str, *args: str) -> list[str]:
    java = shutil.which("java")
    if java is None:
        raise BrokerError("Java 17 is needed to run the Kafka broker; install it first")
    log_config = resources.files("movierec.ops.broker").joinpath("log4j2.yaml")
    return [
        java,
        f"-Xmx{settings.kafka_heap}",
        "-Xms256m",
        "-XX:+UseG1GC",
        "-XX:MaxGCPauseMillis=20",
        "-Djava.awt.headless=true",
        f"-Dkafka.logs.dir={logs_dir(settings)}",
        f"-Dlog4j2.configurationFile={log_config}",
        "-cp",
        str(resolve_jars(settings) / "*"),
        main_class,
        *args,
    ]


def prepare(settings: Settings) -> Path:
    """Write the configuration and format KRaft storage once; returns the properties file."""
    settings.kafka_home.mkdir(parents=True, exist_ok=True)
    logs_dir(settings).mkdir(parents=True, exist_ok=True)
    properties = settings.kafka_home / "server.properties"
    properties.write_text(server_properties(settings))
    if not (data_dir(settings) / "meta.properties").exists():
        cluster_id = new_cluster_id()
        log.info("formatting KRaft storage in %s (cluster %s)", data_dir(settings), cluster_id)
        # "=" forms: a cluster id may start with "-", which would read as an option
        command = _java_command(
            settings, STORAGE_TOOL, "format", f"--cluster-id={cluster_id}", f"--config={properties}"
        )
        result = subprocess.run(command, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise BrokerError(f"formatting Kafka storage failed:\n{result.stdout}{result.stderr}")
    return properties


# --- process lifecycle ------------------------------------------------------

PROGRAM = "kafka"  # its name under supervisord


def program(settings: Settings) -> Program:
    """The broker JVM as a supervisord program (SIGTERM is Kafka's controlled shutdown)."""
    properties = settings.kafka_home / "server.properties"
    return Program(
        PROGRAM,
        _java_command(settings, MAIN_CLASS, str(properties)),
        log=logs_dir(settings) / "kafka.out",
        cwd=settings.kafka_home,
        stop_wait=60,
        start_seconds=5,
    )


def running_pid(settings: Settings) -> int | None:
    """The pid of our broker JVM if supervisord runs it."""
    return supervisor.pid(settings, PROGRAM)


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def start(settings: Settings, timeout: float = 90.0) -> int:
    """Start the broker under supervisord (if not already running) and wait until it serves; its pid."""
    pid = running_pid(settings)
    if pid is not None:
        log.info("kafka already running (pid %d)", pid)
        wait_until_serving(settings, timeout)
        return pid
    host, port = listener(settings)
    if port_open(host, port):
        raise BrokerError(f"something else already listens on {host}:{port}; stop it or change the port")
    prepare(settings)
    pid = supervisor.start(settings, program(settings))
    log.info("kafka starting (pid %d), log %s", pid, logs_dir(settings) / "server.log")
    try:
        wait_until_serving(settings, timeout, watch=True)
    except (BrokerError, supervisor.SupervisorError):
        stop(settings)
        raise
    return running_pid(settings) or pid


def wait_until_serving(settings: Settings, timeout: float, watch: bool = False) -> None:
    """Block until a produce+consume round trip succeeds, the JVM gives up (``watch``), or time runs out."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    host, port = listener(settings)
    while time.monotonic() < deadline:
        if watch:
            try:
                supervisor.check_alive(settings, PROGRAM)
            except supervisor.SupervisorError as exc:
                raise BrokerError(f"kafka did not start; see {logs_dir(settings)}: {exc}") from None
        if port_open(host, port):
            try:
                round_trip(settings)
                return
            except Exception as exc:  # broker still electing its controller, etc.
                last_error = exc
        time.sleep(0.5)
    raise BrokerError(f"kafka did not serve within {timeout:.0f} s (last error: {last_error})")


def stop(settings: Settings) -> bool:
    """Controlled shutdown of our broker (SIGKILL after 60 s); True if one was running."""
    return supervisor.stop(settings, PROGRAM)


# --- talking to it ----------------------------------------------------------


def round_trip(settings: Settings, timeout: float = 10.0) -> None:
    """Produce one message to the health topic and read it back (raises if that fails)."""
    from kafka import KafkaConsumer, KafkaProducer, TopicPartition

    ensure_topic(settings, HEALTH_TOPIC, partitions=1, config={"retention.ms": str(3600 * 1000)})
    token = uuid.uuid4().hex.encode()
    producer = KafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all")
    try:
        metadata = producer.send(HEALTH_TOPIC, token).get(timeout=timeout)
    finally:
        producer.close()
    consumer = KafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, enable_auto_commit=False)
    try:
        partition = TopicPartition(HEALTH_TOPIC, metadata.partition)
        consumer.assign([partition])
        consumer.seek(partition, metadata.offset)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=500).values():
                if any(record.value == token for record in records):
                    return
    finally:
        consumer.close()
    raise BrokerError("produced a health message but could not consume it back")


def ensure_topic(
    settings: Settings, name: str, partitions: int, config: dict[str, str] | None = None
) -> bool:
    """Create ``name`` if it does not exist (an existing topic is left as it is); True if created."""
    from kafka.admin import KafkaAdminClient, NewTopic
    from kafka.errors import TopicAlreadyExistsError

    admin = KafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap, client_id="movierec-admin")
    try:
        if name in admin.list_topics():
            return False
        try:
            admin.create_topics([NewTopic(name, partitions, 1, topic_configs=config or {})])
        except TopicAlreadyExistsError:
            return False
        log.info("created topic %s (%d partitions, %s)", name, partitions, config)
        _wait_for_leaders(admin, name)
        return True
    finally:
        admin.close()


def _wait_for_leaders(admin: KafkaAdminClient, name: str, timeout: float = 15.0) -> None:
    """A new topic is usable once each partition has a leader; clients that come
    earlier back off for seconds, so wait here instead."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        described = admin.describe_topics([name])
        partitions = described[0].get("partitions") or []
        if partitions and all(p.get("error_code") == 0 and p.get("leader_id", -1) >= 0 for p in partitions):
            return
        time.sleep(0.1)


def ensure_topics(settings: Settings) -> None:
    """The topics movierec uses, with explicit partitions and retention."""
    retention = str(settings.topic_retention_hours * 3600 * 1000)
    # LogAppendTime: the event time is inside each line; the Kafka timestamp is when
    # we received it, so backfilled history is not deleted at once by time retention.
    movielog_config = {"retention.ms": retention, "message.timestamp.type": "LogAppendTime"}
    ensure_topic(settings, settings.topic, settings.topic_partitions, movielog_config)
    ensure_topic(settings, settings.served_topic, settings.topic_partitions, {"retention.ms": retention})


@dataclass
class BrokerStatus:
    bootstrap: str
    pid: int | None
    reachable: bool
    topics: dict[str, int] = field(default_factory=dict)  # name -> partitions
    error: str = ""

    @property
    def healthy(self) -> bool:
        return self.reachable and not self.error

    def describe(self) -> str:
        owner = f"embedded, pid {self.pid}" if self.pid else "not started by movierec"
        lines = [f"kafka {self.bootstrap} ({owner}): {'up' if self.healthy else 'DOWN'}"]
        if self.error:
            lines.append(f"  error: {self.error}")
        lines += [f"  topic {name}: {count} partitions" for name, count in sorted(self.topics.items())]
        return "\n".join(lines)


def status(settings: Settings) -> BrokerStatus:
    """What is running and reachable, and which topics exist."""
    from kafka import KafkaConsumer

    try:
        pid = running_pid(settings)
    except BrokerError:
        pid = None
    state = BrokerStatus(settings.kafka_bootstrap, pid, reachable=False)
    addresses = [part.strip().rpartition(":") for part in settings.kafka_bootstrap.split(",")]
    if not any(port.isdigit() and port_open(host, int(port)) for host, _, port in addresses):
        state.error = "no bootstrap server accepts connections"
        return state
    try:
        consumer = KafkaConsumer(
            bootstrap_servers=settings.kafka_bootstrap, request_timeout_ms=5000, enable_auto_commit=False
        )
    except Exception as exc:  # NoBrokersAvailable and friends
        state.error = f"{type(exc).__name__}: {exc}"
        return state
    try:
        state.reachable = True
        for name in consumer.topics():
            if not name.startswith("__"):
                state.topics[name] = len(consumer.partitions_for_topic(name) or ())
    except Exception as exc:
        state.error = f"{type(exc).__name__}: {exc}"
    finally:
        consumer.close()
    return state
