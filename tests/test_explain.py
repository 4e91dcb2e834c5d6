"""`movierec explain`: records written by the service's own producer to the real broker, found again.

Records are produced with server.provenance.ServedRecorder (what the service
uses) to a fresh topic, with hand-set times, so `--at` can pick an older answer.
"""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
from confluent_kafka.admin import AdminClient, NewTopic

from movierec import settings as settings_module
from movierec.models.explain import ExplainError, explain, latest_served, partition_of
from movierec.settings import REPO_ROOT
from server.provenance import ServedRecorder
from tests.test_server_store import V0, V1, V2, write_serving_file

pytestmark = pytest.mark.kafka
USER = 4242


def record(request_id: str, user: int, version: str, time: str, status: int = 200) -> dict[str, object]:
    return {
        "request_id": request_id,
        "time": time,
        "user_id": user,
        "variant": None,
        "model_version": version if status == 200 else None,
        "items": f"x+{version}+2000" if status == 200 else None,
        "fallback": False,
        "latency_ms": 0.2,
        "status": status,
    }


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory, kafka: settings_module.Settings) -> Path:
    home = tmp_path_factory.mktemp("explain")
    topic = "test-explain-served"
    admin = AdminClient({"bootstrap.servers": kafka.kafka_bootstrap})  # kept alive until the topic exists
    admin.create_topics([NewTopic(topic, num_partitions=4, replication_factor=1)])[topic].result(30)
    settings = settings_module.load(
        {"MOVIEREC_HOME": str(home), "MOVIEREC_KAFKA_BOOTSTRAP": kafka.kafka_bootstrap,
         "MOVIEREC_SERVED_TOPIC": topic}
    )  # fmt: skip
    write_serving_file(settings.serving_dir, V1)
    write_serving_file(settings.serving_dir, V2)
    recorder = ServedRecorder(settings)
    for rec in (  # in time order, as the service writes them
        record("r5", USER, V0, "2026-11-20T09:00:00.000+00:00"),  # a version no longer kept
        record("r1", USER, V1, "2026-11-28T10:00:00.000+00:00"),
        record("r2", USER, V2, "2026-11-28T12:00:00.000+00:00"),
        record("r3", USER, V2, "2026-11-28T13:00:00.000+00:00", status=400),  # not an answer with a model
        record("r4", USER + 1, V1, "2026-11-28T14:00:00.000+00:00"),
    ):
        recorder.record(rec, int(datetime.fromisoformat(str(rec["time"])).timestamp() * 1000))
    assert recorder.close(30) == 0
    return home


def run_explain(home: Path, kafka: settings_module.Settings, *args: str) -> subprocess.CompletedProcess:
    env = {
        "PATH": "/usr/bin:/bin",
        "MOVIEREC_HOME": str(home),
        "MOVIEREC_KAFKA_BOOTSTRAP": kafka.kafka_bootstrap,
        "MOVIEREC_SERVED_TOPIC": "test-explain-served",
    }
    return subprocess.run(
        [sys.executable, "-m", "movierec.cli", "explain", *args],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def test_the_latest_answer_and_its_model_meta_are_printed(
    home: Path, kafka: settings_module.Settings
) -> None:
    result = run_explain(home, kafka, str(USER))
    assert result.returncode == 0, result.stderr
    assert "request r2" in result.stdout
    assert f"model version  {V2}" in result.stdout
    assert f"git commit     commit-of-{V2}" in result.stdout
    assert f'"path": "lake/watch/{V2}.parquet"' in result.stdout  # the data manifest, pretty-printed
    assert '"regParam": 0.05' in result.stdout  # the parameters


def test_at_picks_the_latest_answer_at_or_before_it(home: Path, kafka: settings_module.Settings) -> None:
    result = run_explain(home, kafka, str(USER), "--at", "2026-11-28T11:30:00+00:00", "--json")
    assert result.returncode == 0, result.stderr
    found = json.loads(result.stdout)
    assert found["served"]["request_id"] == "r1"
    assert found["meta"]["git_commit"] == f"commit-of-{V1}"
    assert found["meta"]["params"]["version"] == V1


def test_a_version_no_longer_kept_is_a_clear_error(home: Path, kafka: settings_module.Settings) -> None:
    result = run_explain(home, kafka, str(USER), "--at", "2026-11-21T00:00:00+00:00")
    assert result.returncode == 1
    assert f"model {V0}" in result.stderr and "no longer kept" in result.stderr


def test_nothing_served_and_bad_input_are_clear_errors(home: Path, kafka: settings_module.Settings) -> None:
    nothing = run_explain(home, kafka, "999")
    assert nothing.returncode == 1 and "no answer served to user 999" in nothing.stderr
    bad_user = run_explain(home, kafka, "-3")
    assert bad_user.returncode == 2 and "not a user id" in bad_user.stderr
    bad_time = run_explain(home, kafka, "5", "--at", "noon")
    assert bad_time.returncode == 1 and "not an ISO 8601 time" in bad_time.stderr


def test_the_user_records_sit_in_the_partition_explain_reads(
    home: Path, kafka: settings_module.Settings
) -> None:
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer(
        {"bootstrap.servers": kafka.kafka_bootstrap, "group.id": "t", "enable.auto.commit": False}
    )
    consumer.assign([TopicPartition("test-explain-served", p, 0) for p in range(4)])
    where = {}
    for message in consumer.consume(100, timeout=10):
        where[json.loads(message.value())["request_id"]] = message.partition()
    consumer.close()
    assert where["r1"] == where["r2"] == partition_of(USER, 4)
    assert where["r4"] == partition_of(USER + 1, 4)


def test_latest_served_ignores_other_users_errors_and_later_answers() -> None:
    records = [
        record("a", 1, V1, "2026-11-28T10:00:00+00:00"),
        record("b", 1, V2, "2026-11-28T09:00:00+00:00"),  # earlier, though read later
        record("c", 1, V2, "2026-11-28T11:00:00+00:00", status=503),
        record("d", 2, V2, "2026-11-28T12:00:00+00:00"),
    ]
    assert latest_served(records, 1, None)["request_id"] == "a"
    assert latest_served(records, 1, datetime(2026, 11, 28, 9, 30, tzinfo=UTC))["request_id"] == "b"
    assert latest_served(records, 3, None) is None


def test_explain_raises_when_the_topic_is_missing(tmp_path: Path, kafka: settings_module.Settings) -> None:
    settings = settings_module.load(
        {"MOVIEREC_HOME": str(tmp_path), "MOVIEREC_KAFKA_BOOTSTRAP": kafka.kafka_bootstrap,
         "MOVIEREC_SERVED_TOPIC": "no-such-topic"}
    )  # fmt: skip
    with pytest.raises(ExplainError, match="does not exist"):
        explain(settings, 1)
