"""The service as it runs: `movierec serve` in a subprocess with 2 workers, a private home, real HTTP.

Covers what only the real thing shows: swapping under a stream of requests
(and refusing a corrupt file while serving continues), metrics summed across
workers, provenance records on the real broker, Kafka down, experiment
assignment across restarts, `movierec explain` on a served answer, and a clean
shutdown on SIGTERM.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from confluent_kafka import Consumer, TopicPartition
from prometheus_client.parser import text_string_to_metric_families

from bench.serve_process import group_members, serve_env, start_serve
from movierec import settings as settings_module
from movierec.settings import REPO_ROOT
from simulator.client import ask
from simulator.live import scrape
from tests.conftest import free_port
from tests.test_server_store import (
    FALLBACK,
    V1,
    V2,
    V3,
    V4,
    items_of,
    point_current,
    write_experiment,
    write_serving_file,
)

pytestmark = [pytest.mark.kafka, pytest.mark.slow]


@dataclass
class Running:
    url: str
    home: Path
    process: subprocess.Popen
    env: dict[str, str]
    log: Path

    @property
    def ops_url(self) -> str:
        return f"http://127.0.0.1:{self.env['MOVIEREC_SERVER_OPS_PORT']}"

    def get(self, path: str) -> httpx.Response:
        # a new connection per request, so requests spread over the workers
        return httpx.get(f"{self.url}{path}", timeout=5)

    def metric(self, name: str, **labels: str) -> float:
        text = httpx.get(f"{self.ops_url}/metrics", timeout=5).text
        return sum(
            sample.value
            for family in text_string_to_metric_families(text)
            for sample in family.samples
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items())
        )


def service_env(home: Path, port: int, bootstrap: str, **extra: str) -> dict[str, str]:
    return serve_env(home, port, free_port(), bootstrap, **extra)


@contextmanager
def serve(home: Path, bootstrap: str, **extra: str) -> Iterator[Running]:
    port = free_port()
    env = service_env(home, port, bootstrap, **extra)
    log = home / f"serve-{port}.log"
    process = start_serve(env, log)
    running = Running(f"http://127.0.0.1:{port}", home, process, env, log)
    try:
        _wait_until_up(running)
        yield running
    finally:
        stop(running)


def stop(running: Running) -> int:
    if running.process.poll() is None:
        running.process.send_signal(signal.SIGTERM)
        try:
            running.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            running.process.kill()
            running.process.wait()
    return running.process.returncode


def _wait_until_up(running: Running) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if running.process.poll() is not None:
            pytest.fail(f"movierec serve exited: {running.log.read_text()[-3000:]}")
        try:
            # every worker ready (a SIGTERM while workers start is test_a_stop_at_any_moment_...)
            if len(ready_workers(running.log)) >= 2 and running.get("/healthz").status_code in (200, 503):
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    pytest.fail(f"movierec serve did not come up: {running.log.read_text()[-3000:]}")


def ready_workers(log: Path) -> set[str]:
    """Pids of workers that logged Sanic's "Worker ready [pid]" (each line is logged twice)."""
    return set(re.findall(r"Worker ready \[(\d+)\]", log.read_text(errors="replace")))


def wait_for(condition: object, what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():  # type: ignore[operator]
            return
        time.sleep(0.1)
    pytest.fail(f"timed out waiting for {what}")


class Load:
    """Requests in a loop on a keep-alive connection per thread, until stopped; what came back."""

    def __init__(self, running: Running, threads: int = 2) -> None:
        self.running = running
        self.statuses: Counter[object] = Counter()
        self.versions: list[str] = []
        self.wrong_bodies = 0
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._loop, args=(n,)) for n in range(threads)]

    def _loop(self, number: int) -> None:
        user = number * 1000
        with httpx.Client(base_url=self.running.url, timeout=5) as http:
            while not self._stop.is_set():
                user = user % 100 + 1
                try:
                    response = http.get(f"/recommend/{user}")
                except httpx.HTTPError as exc:
                    self.statuses[type(exc).__name__] += 1
                    continue
                self.statuses[response.status_code] += 1
                version = response.headers.get("x-model-version", "")
                self.versions.append(version)
                if response.text != items_of(user, version):
                    self.wrong_bodies += 1

    def __enter__(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join()


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory, kafka: settings_module.Settings) -> Iterator[Running]:
    home = tmp_path_factory.mktemp("serve")
    write_serving_file(home / "serving", V1)
    point_current(home / "serving", V1)
    with serve(home, kafka.kafka_bootstrap, MOVIEREC_SERVED_TOPIC=kafka.served_topic) as running:
        yield running


def test_both_workers_answer_and_metrics_sum_over_them(service: Running) -> None:
    pids = {service.get("/healthz").json()["pid"] for _ in range(40)}
    assert len(pids) == 2, "two workers, and new connections reach both"
    before = service.metric("movierec_recommend_requests_total", status="200")
    fallback_before = service.metric("movierec_fallback_answers_total")
    for user in range(1, 61):
        assert service.get(f"/recommend/{user}").text == items_of(user, V1)
    for user in range(5001, 5011):
        assert service.get(f"/recommend/{user}").text == FALLBACK
    # the sum over both workers; each adds its counts at its next flush (0.25 s), so wait for it
    wait_for(
        lambda: service.metric("movierec_recommend_requests_total", status="200") >= before + 70,
        "both workers' answers counted",
    )
    assert service.metric("movierec_recommend_requests_total", status="200") == before + 70
    wait_for(lambda: service.metric("movierec_fallback_answers_total") >= fallback_before + 10, "fallbacks")
    assert service.metric("movierec_fallback_answers_total") == fallback_before + 10
    assert service.metric("movierec_model_info", version=V1, variant="none") == 1


def test_metrics_answer_only_on_the_loopback_operator_port(service: Running) -> None:
    public = service.get("/metrics")
    assert public.status_code == 404 and "movierec_" not in public.text
    ops = httpx.get(f"{service.ops_url}/metrics", timeout=5)
    assert ops.status_code == 200 and "movierec_recommend_requests_total" in ops.text
    elsewhere = service.ops_url.replace("127.0.0.1", "127.0.0.2")  # another address of this machine
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{elsewhere}/metrics", timeout=5)


def test_a_busy_operator_port_fails_the_start_at_once_and_says_which(
    tmp_path: Path, kafka: settings_module.Settings
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        env = service_env(tmp_path, free_port(), kafka.kafka_bootstrap)
        env["MOVIEREC_SERVER_OPS_PORT"] = str(taken.getsockname()[1])
        log = tmp_path / "serve.log"
        process = start_serve(env, log, own_group=True)
        code = process.wait(timeout=60)
    text = log.read_text()
    assert code == 1, text[-3000:]
    assert "MOVIEREC_SERVER_OPS_PORT" in text and "not started" in text
    assert "Starting worker" not in text, "no worker is started for a service that cannot be watched"
    assert not group_members(process.pid)


async def site_beside_scraper(url: str, rate: float, until_throttled: int) -> tuple[Counter, dict, float]:
    """The site's client (from 127.0.0.1, one request at a time) while the simulator's scraper
    enumerates ids from 127.0.0.2; until the scraper was refused ``until_throttled`` times and the
    site made 100 requests (or 60 s). (site statuses, scraper counts, seconds the scraper ran)."""
    counts = {"scraper_requests": 0, "scraper_answered": 0, "scraper_failed": 0, "scraper_throttled": 0}
    site: Counter[int] = Counter()
    began = time.monotonic()
    scraper = asyncio.create_task(scrape(url, 10_000, rate, counts, source="127.0.0.2"))
    async with httpx.AsyncClient() as http:
        user = 0
        while time.monotonic() - began < 60 and (
            counts["scraper_throttled"] < until_throttled or site.total() < 100
        ):
            user = user % 100 + 1
            site[(await ask(http, url, user)).status] += 1
    scraper.cancel()
    await asyncio.gather(scraper, return_exceptions=True)
    return site, counts, time.monotonic() - began


def test_the_scraper_is_throttled_while_the_site_client_sees_no_429(
    tmp_path: Path, kafka: settings_module.Settings
) -> None:
    write_serving_file(tmp_path / "serving", V1)
    point_current(tmp_path / "serving", V1)
    limit = {"MOVIEREC_SERVER_CLIENT_RATE": "2", "MOVIEREC_SERVER_CLIENT_BURST": "4"}
    with serve(tmp_path, kafka.kafka_bootstrap, MOVIEREC_SERVED_TOPIC=kafka.served_topic, **limit) as running:
        site, counts, seconds = asyncio.run(site_beside_scraper(running.url, rate=100.0, until_throttled=100))
        throttled = running.metric("movierec_throttled_requests_total")
    assert site[429] == 0 and site[200] > 0, site  # (a time-out on a loaded machine is status 0)
    assert counts["scraper_throttled"] >= 100, counts
    # never more than the stated rate from the whole service (2 workers, each half of it)
    assert counts["scraper_answered"] <= 4 + 2 * seconds, (counts, seconds)
    assert throttled >= counts["scraper_throttled"]


def test_swap_under_load_and_a_corrupt_file_is_refused(service: Running) -> None:
    serving = service.home / "serving"
    swaps = service.metric("movierec_model_swaps_total")
    refused = service.metric("movierec_refused_files_total", kind="serving_file")
    with Load(service) as load:
        wait_for(lambda: len(load.versions) > 50, "requests flowing")
        write_serving_file(serving, V2)
        point_current(serving, V2)
        wait_for(lambda: load.versions[-40:] == [V2] * 40, "answers from v2")
        # Both keep-alive connections may land on one worker; the other swaps on its own watch,
        # and must have swapped to v2 before v3 is pointed at, or it would skip v2.
        wait_for(lambda: service.metric("movierec_model_swaps_total") == swaps + 2, "both workers on v2")

        corrupt = serving / f"recs-{V3}.sqlite"
        corrupt.write_bytes(b"\x00garbage, not SQLite" * 4096)
        point_current(serving, V3)
        wait_for(
            lambda: service.metric("movierec_refused_files_total", kind="serving_file") == refused + 2,
            "both workers refusing the corrupt file",
        )
        seen = len(load.versions)
        wait_for(lambda: len(load.versions) > seen + 100, "more answers after the refusal")
        assert set(load.versions[seen:]) == {V2}, "the refused file never serves; v2 keeps serving"

        write_serving_file(serving, V4)
        point_current(serving, V4)
        wait_for(lambda: load.versions[-40:] == [V4] * 40, "answers from v4")
        wait_for(lambda: service.metric("movierec_model_swaps_total") >= swaps + 4, "both workers on v4")
    assert set(load.statuses) == {200}, load.statuses
    assert load.wrong_bodies == 0
    assert set(load.versions) <= {V1, V2, V4}
    assert service.metric("movierec_model_swaps_total") == swaps + 4  # 2 swaps x 2 workers
    assert service.get("/healthz").json()["model_version"] == V4
    assert service.metric("movierec_model_info", version=V4, variant="none") == 1
    assert service.metric("movierec_model_info", version=V1, variant="none") == 0
    assert f"refused serving file: recs-{V3}.sqlite" in service.log.read_text()


def served_records(kafka: settings_module.Settings, request_ids: set[str], timeout: float = 30) -> dict:
    """The records with these request ids on the served topic (read from the beginning)."""
    consumer = Consumer(
        {"bootstrap.servers": kafka.kafka_bootstrap, "group.id": "test-served", "enable.auto.commit": False}
    )
    partitions = consumer.list_topics(kafka.served_topic, timeout=10).topics[kafka.served_topic].partitions
    consumer.assign([TopicPartition(kafka.served_topic, p, 0) for p in partitions])
    found: dict[str, dict] = {}
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline and not request_ids <= found.keys():
            for message in consumer.consume(1000, timeout=1):
                if message.error() is None:
                    record = json.loads(message.value())
                    if record["request_id"] in request_ids:
                        found[record["request_id"]] = record | {"_key": message.key()}
    finally:
        consumer.close()
    return found


def test_every_answer_is_recorded_on_the_served_topic(
    service: Running, kafka: settings_module.Settings
) -> None:
    answers = {path: service.get(path) for path in ("/recommend/7", "/recommend/7777", "/recommend/x7")}
    ids = {response.headers["x-request-id"]: path for path, response in answers.items()}
    records = served_records(kafka, set(ids))
    assert set(records) == set(ids)
    by_path = {ids[rid]: record for rid, record in records.items()}
    known = by_path["/recommend/7"]
    assert known["user_id"] == 7 and known["status"] == 200 and known["_key"] == b"7"
    assert known["items"] == answers["/recommend/7"].text
    assert known["model_version"] == answers["/recommend/7"].headers["x-model-version"]
    assert known["variant"] is None and known["fallback"] is False and known["latency_ms"] >= 0
    assert known["time"].endswith("+00:00")
    assert known["client"] == "127.0.0.1", "who asked: the peer's address"
    unknown = by_path["/recommend/7777"]
    assert (unknown["items"], unknown["fallback"]) == (FALLBACK, True)
    malformed = by_path["/recommend/x7"]
    assert (malformed["status"], malformed["user_id"], malformed["items"]) == (400, None, None)
    assert "decimal digits" in malformed["reason"]
    wait_for(lambda: service.metric("movierec_provenance_sent_total") >= 3, "delivery reports counted")


def test_explain_finds_the_answer_and_prints_its_model(
    service: Running, kafka: settings_module.Settings
) -> None:
    response = service.get("/recommend/42")
    version = response.headers["x-model-version"]
    served_records(kafka, {response.headers["x-request-id"]})  # on the broker before explaining
    result = subprocess.run(
        [sys.executable, "-m", "movierec.cli", "explain", "42", "--json"],
        cwd=REPO_ROOT,
        env=service.env | {"MOVIEREC_SERVED_TOPIC": kafka.served_topic},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    found = json.loads(result.stdout)
    assert found["served"]["request_id"] == response.headers["x-request-id"]
    assert found["meta"]["model_version"] == version
    assert found["meta"]["git_commit"] == f"commit-of-{version}"
    assert found["meta"]["params"]["version"] == version
    assert found["meta"]["data_manifest"]["files"][0]["path"] == f"lake/watch/{version}.parquet"


def test_with_kafka_down_answers_continue_and_drops_are_counted(
    tmp_path: Path, kafka: settings_module.Settings
) -> None:
    write_serving_file(tmp_path / "serving", V1)
    point_current(tmp_path / "serving", V1)
    closed = f"127.0.0.1:{free_port()}"  # nothing listens there
    with serve(tmp_path, closed, MOVIEREC_SERVED_BUFFER="10") as running:
        with httpx.Client(base_url=running.url, timeout=5) as http:
            statuses = Counter(http.get(f"/recommend/{n % 100 + 1}").status_code for n in range(200))
        assert statuses == {200: 200}
        dropped = running.metric("movierec_provenance_dropped_total", reason="buffer_full")
        assert dropped >= 200 - 2 * 10  # each worker buffers at most 10
        # bounded: librdkafka's count also holds a few of its own pending requests (metadata, producer id)
        assert running.get("/healthz").json()["provenance_queued"] <= 20


def test_experiment_assignment_is_stable_across_restarts(
    tmp_path: Path, kafka: settings_module.Settings
) -> None:
    serving = tmp_path / "serving"
    for version in (V1, V2):
        write_serving_file(serving, version, range(1, 401))
    point_current(serving, V1)
    write_experiment(tmp_path, V2, name="live", salt="salt-1")

    def assignments() -> dict[int, tuple[str, str]]:
        with serve(tmp_path, kafka.kafka_bootstrap, MOVIEREC_SERVED_TOPIC=kafka.served_topic) as running:
            seen = {}
            for user in range(1, 401):
                response = running.get(f"/recommend/{user}")
                assert response.text == items_of(user, response.headers["x-model-version"])
                seen[user] = (response.headers["x-variant"], response.headers["x-model-version"])
            return seen

    first, second = assignments(), assignments()
    assert first == second
    assert {pair for pair in first.values()} == {("control", V1), ("treatment", V2)}
    treated = sum(variant == "treatment" for variant, _ in first.values())
    assert 150 <= treated <= 250  # 400 users at 50%: 5 standard deviations either side


def test_sigterm_stops_the_service_cleanly(tmp_path: Path, kafka: settings_module.Settings) -> None:
    with serve(tmp_path, kafka.kafka_bootstrap, MOVIEREC_SERVED_TOPIC=kafka.served_topic) as running:
        assert running.get("/recommend/1").status_code == 503  # no file yet: not the input's fault
        code = stop(running)
    assert code == 0, running.log.read_text()[-2000:]
    assert "recommendation service stopped" in running.log.read_text()


MOMENTS = {
    # the main process has not started Sanic's manager yet
    "before_the_workers": lambda log: "recommendation service on" in log.read_text(errors="replace"),
    # one worker is past its imports, the other (usually) still importing: sanic-org/sanic#2997
    "while_the_workers_start": lambda log: "Starting worker" in log.read_text(errors="replace"),
    # both acknowledged, the manager may not have noticed yet (it looks every 0.1 s)
    "as_the_workers_become_ready": lambda log: len(ready_workers(log)) >= 2,
}


@pytest.mark.parametrize("moment", list(MOMENTS))
def test_a_stop_at_any_moment_of_the_start_ends_the_service_and_all_its_processes(
    tmp_path: Path, kafka: settings_module.Settings, moment: str
) -> None:
    """SIGTERM while workers start: exit 0 within the test's patience, no process of the group left.

    Before the fix the manager waited forever for an ack from a worker the stop had killed.
    """
    env = service_env(tmp_path, free_port(), kafka.kafka_bootstrap, MOVIEREC_SERVED_TOPIC=kafka.served_topic)
    log = tmp_path / "serve.log"
    process = start_serve(env, log, own_group=True)  # what is left of its group afterwards is countable
    try:
        wait_for(lambda: MOMENTS[moment](log) or process.poll() is not None, f"the moment {moment}", 60)
        process.send_signal(signal.SIGTERM)
        code = process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        pytest.fail(f"SIGTERM {moment}: the service did not stop: {log.read_text()[-3000:]}")
    assert code == 0, log.read_text()[-3000:]
    assert "recommendation service stopped" in log.read_text()
    deadline = time.monotonic() + 10  # children exit right after the main process, give them a moment
    while group_members(process.pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not group_members(process.pid), f"left running after the stop: {group_members(process.pid)}"


def worker_pids(running: Running) -> set[int]:
    """The live server workers: those that logged "Worker ready [pid]" and are still alive."""
    from movierec.ops.processes import is_alive

    return {int(pid) for pid in ready_workers(running.log) if is_alive(int(pid))}


def test_a_worker_killed_under_load_is_replaced_and_counted(
    tmp_path: Path, kafka: settings_module.Settings
) -> None:
    write_serving_file(tmp_path / "serving", V1)
    point_current(tmp_path / "serving", V1)
    with serve(tmp_path, kafka.kafka_bootstrap, MOVIEREC_SERVED_TOPIC=kafka.served_topic) as running:
        before = worker_pids(running)
        assert len(before) == 2
        with Load(running, threads=2) as load:
            wait_for(lambda: sum(load.statuses.values()) > 200, "requests before the kill")
            victim = min(before)
            killed_at = time.monotonic()
            os.kill(victim, signal.SIGKILL)
            wait_for(
                lambda: len(worker_pids(running) - before) == 1 and len(worker_pids(running)) == 2,
                "a new worker",
            )
            ready_seconds = time.monotonic() - killed_at
            replacement = (worker_pids(running) - before).pop()
            served = sum(load.statuses.values())
            wait_for(lambda: sum(load.statuses.values()) > served + 200, "requests after the replacement")
        assert running.metric("movierec_worker_replacements_total") == 1
        lost = sum(n for status, n in load.statuses.items() if status != 200)
        print(f"WORKER KILL: new worker ready {ready_seconds:.2f} s after SIGKILL; {dict(load.statuses)}")
        # only what was in flight on the killed worker's connections, one per client thread at most twice
        assert lost <= 4, load.statuses
        assert load.wrong_bodies == 0
        assert "replacing it (replacement 1)" in running.log.read_text()
        # and both answer: a fresh connection per request reaches the new worker too
        pids = {running.get("/healthz").json()["pid"] for _ in range(40)}
        assert replacement in pids
    assert running.process.returncode == 0, running.log.read_text()[-2000:]
