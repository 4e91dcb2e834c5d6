"""`movierec world ...` end to end: real processes, the real broker, clean stops."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from kafka import KafkaConsumer

from movierec import settings as settings_module
from movierec.movielog import Malformed, RecoEvent, parse_line
from movierec.ops.broker import broker
from tests.conftest import free_port
from tests.test_kafka_broker import consume

CLI = str(Path(sys.executable).parent / "movierec")


def world_env(kafka: settings_module.Settings, home: Path, topic: str) -> dict[str, str]:
    return {
        "PATH": os.environ["PATH"],
        "MOVIEREC_HOME": str(home),
        "MOVIEREC_KAFKA_BOOTSTRAP": kafka.kafka_bootstrap,
        "MOVIEREC_TOPIC": topic,
        "MOVIEREC_SCALE_USERS": "2000",
        "MOVIEREC_SCALE_MOVIES": "300",
    }


def read_topic(kafka: settings_module.Settings, topic: str, count: int, timeout: float = 30) -> list[str]:
    consumer = KafkaConsumer(topic, bootstrap_servers=kafka.kafka_bootstrap, auto_offset_reset="earliest")
    try:
        return [line for _, _, line in consume(consumer, count, timeout)]
    finally:
        consumer.close()


@pytest.mark.kafka
def test_backfill_command_reports_and_writes_its_lines(
    kafka: settings_module.Settings, tmp_path: Path
) -> None:
    topic = "cli.backfill"
    broker.ensure_topic(kafka, topic, partitions=2)
    result = subprocess.run(
        [CLI, "world", "backfill", "--days", "0.05", "--sessions-per-day", "4000"],
        env=world_env(kafka, tmp_path, topic),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    written = int(re.search(r"backfill wrote (\d+) lines", result.stderr)[1])
    assert written > 100
    lines = read_topic(kafka, topic, written + 1, timeout=10)
    assert len(lines) == written
    assert all(not isinstance(parse_line(line), Malformed) for line in lines)


@pytest.mark.kafka
def test_live_run_stops_cleanly_on_sigterm(kafka: settings_module.Settings, tmp_path: Path) -> None:
    topic = "cli.live"
    broker.ensure_topic(kafka, topic, partitions=2)
    service = f"http://127.0.0.1:{free_port()}"  # no service: every request is refused
    process = subprocess.Popen(
        [CLI, "world", "run", "--service", service, "--lines-per-second", "400", "--minute-seconds", "0.01"],
        env=world_env(kafka, tmp_path, topic),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        lines = read_topic(kafka, topic, 20, timeout=60)
        assert len(lines) == 20, process.stderr.read() if process.poll() is not None else "too few lines"
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, stderr[-2000:]
    assert "live viewers stopped" in stderr
    recos = [event for event in map(parse_line, lines) if isinstance(event, RecoEvent)]
    assert recos and all(event.status == 0 for event in recos)


def test_the_catalog_api_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    port = free_port()
    env = {
        "PATH": os.environ["PATH"],
        "MOVIEREC_HOME": str(tmp_path),
        "MOVIEREC_SCALE_USERS": "2000",
        "MOVIEREC_SCALE_MOVIES": "300",
        "MOVIEREC_API_PORT": str(port),
    }
    process = subprocess.Popen([CLI, "world", "api"], env=env, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # serving, not just bound: Sanic binds before its startup ends
        try:
            if httpx.get(f"http://127.0.0.1:{port}/user/1", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    else:
        process.kill()
        pytest.fail("the catalog API did not start serving")
    process.send_signal(signal.SIGTERM)  # serves until stopped; SIGTERM must end it without a traceback
    _, stderr = process.communicate(timeout=30)
    assert process.returncode in (0, 130), stderr[-2000:]
    assert "Traceback" not in stderr
