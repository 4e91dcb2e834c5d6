"""`movierec replay FILE` through the real broker: byte for byte, plain or gzip."""

from __future__ import annotations

import gzip
import io
import itertools
import os
import subprocess
import sys
from pathlib import Path

import pytest
from kafka import KafkaConsumer

from movierec import settings as settings_module
from movierec.ingest.replay import archive_lines, user_key
from movierec.ops.broker import broker
from tests.test_kafka_broker import movielog_lines

CLI = str(Path(sys.executable).parent / "movierec")
ODD_LINES = [b"", b"\xff\xfe,12,GET", b"2026-11-28T10:00:00,5,GET /rate/up+2009", b"garbage without commas"]
_topics = itertools.count()


def archive(tmp_path: Path, compress: bool) -> tuple[Path, list[bytes]]:
    lines = [line.encode() for line in movielog_lines(3_000, seed=21)]
    lines[100:100] = ODD_LINES
    body = b"".join(line + b"\n" for line in lines)
    path = tmp_path / ("movielog.txt.gz" if compress else "movielog.txt")
    path.write_bytes(gzip.compress(body) if compress else body)
    return path, lines


@pytest.mark.kafka
@pytest.mark.parametrize("compress", [False, True], ids=["plain", "gzip"])
def test_replay_sends_every_line_byte_for_byte(
    kafka: settings_module.Settings, tmp_path: Path, compress: bool
) -> None:
    topic = f"replay.test.{next(_topics)}"
    broker.ensure_topic(kafka, topic, partitions=2)
    path, lines = archive(tmp_path, compress)
    env = {
        "PATH": os.environ["PATH"],
        "MOVIEREC_HOME": str(tmp_path),
        "MOVIEREC_KAFKA_BOOTSTRAP": kafka.kafka_bootstrap,
    }
    result = subprocess.run(
        [CLI, "replay", str(path), "--topic", topic], env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert f"{len(lines)} lines replayed" in result.stdout

    consumer = KafkaConsumer(topic, bootstrap_servers=kafka.kafka_bootstrap, auto_offset_reset="earliest")
    got: list[tuple[int, bytes | None, bytes]] = []
    try:
        while len(got) < len(lines) + 1:
            batch = consumer.poll(timeout_ms=3_000)
            if not batch:
                break
            got += [(r.partition, r.key, r.value) for records in batch.values() for r in records]
    finally:
        consumer.close()
    assert sorted(value for _, _, value in got) == sorted(lines)
    # one user's lines keep their archive order (same key -> same partition)
    for key in {k for _, k, _ in got if k}:
        mine = [value for _, k, value in got if k == key]
        assert mine == [line for line in lines if user_key(line) == key]


def test_archive_lines_strip_line_endings_only() -> None:
    text = b"a,1,x\r\nb,2,y\n\nc,3,z"
    assert list(archive_lines(io.BytesIO(text))) == [b"a,1,x", b"b,2,y", b"", b"c,3,z"]
    assert user_key(b"2026-11-28T10:00:00,42,GET /rate/up+2009=4") == b"42"
    assert user_key(b"no commas") is None
