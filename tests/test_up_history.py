"""`movierec up` refuses a first backfill too short to train on, before it starts anything.

Seen at full scale: `make up --days 1` backfilled and ingested for eight minutes, then the first
retrain failed in prepare (the last day is held out as the test window, split at a midnight).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from movierec.ops.loop import check_history_days
from tests.conftest import free_port

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(("days", "test_days"), [(1, 1), (1.5, 1), (1.99, 1), (2.5, 2)])
def test_a_history_without_a_day_before_the_test_window_is_refused(days: float, test_days: int) -> None:
    with pytest.raises(ValueError, match="nothing to train on"):
        check_history_days(days, test_days)


@pytest.mark.parametrize(("days", "test_days"), [(2, 1), (3, 1), (7, 3)])
def test_a_history_with_a_day_before_the_test_window_is_accepted(days: float, test_days: int) -> None:
    check_history_days(days, test_days)


def test_up_with_too_short_a_history_exits_before_starting_anything(tmp_path: Path) -> None:
    dead = "127.0.0.1:9"  # nothing listens: a wrong `up` could not reach a broker of `make up`
    env = {
        **os.environ,
        "MOVIEREC_HOME": str(tmp_path / "home"),
        "MOVIEREC_KAFKA_BOOTSTRAP": dead,
        "MOVIEREC_KAFKA_CONTROLLER_PORT": str(free_port()),
        "MOVIEREC_SERVER_PORT": str(free_port()),
        "MOVIEREC_API_PORT": str(free_port()),
        "MOVIEREC_AIRFLOW_PORT": str(free_port()),
        "MOVIEREC_PROMETHEUS_PORT": str(free_port()),
        "MOVIEREC_ALERTMANAGER_PORT": str(free_port()),
        "MOVIEREC_NODE_EXPORTER_PORT": str(free_port()),
        "MOVIEREC_DASHBOARD_PORT": str(free_port()),
    }
    cli = [sys.executable, "-m", "movierec.cli"]
    try:
        done = subprocess.run(
            [*cli, "up", "--days", "1"], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120
        )
    finally:
        subprocess.run([*cli, "down"], cwd=REPO_ROOT, env=env, capture_output=True, timeout=300)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "--days 1 leaves nothing to train on" in done.stderr
    assert "backfill at least 2 days" in done.stderr
    assert "[" not in done.stdout, f"a step started: {done.stdout}"  # steps print "[   0 s] ..."
    assert not (tmp_path / "home" / "supervisor").exists(), "supervisord was started"
