"""`movierec up` ingests while the backfill writes: what its catch-up loop does next, and the
machine's CPU seconds each step prints.

The loop itself drives Airflow and the broker (measured on `make up`, README); the decision it
takes from the lines waiting is a pure function, checked here on every case.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from movierec.ops import processes
from movierec.ops.loop import CAUGHT_UP, INGEST, WAIT, Timeline, busy_share, kept_paused, next_ingest

BATCH = 3_000_000


@pytest.mark.parametrize(
    ("waiting", "backfilling", "expected"),
    [
        (0, True, WAIT),  # the backfill has not written a line yet
        (BATCH - 1, True, WAIT),  # a run now would take less than a batch and pay a run's overhead
        (BATCH, True, INGEST),
        (5 * BATCH, True, INGEST),  # ingest fell behind: a run takes a batch, the next one follows
        (1, False, INGEST),  # the backfill ended: the rest, however little
        (BATCH + 1, False, INGEST),
        (0, False, CAUGHT_UP),
    ],
)
def test_ingest_runs_take_whole_batches_while_the_backfill_writes_and_the_rest_after(
    waiting: int, backfilling: bool, expected: str
) -> None:
    assert next_ingest(waiting, backfilling, BATCH) == expected


@pytest.mark.parametrize(
    ("has_model", "backfilling", "expected"),
    [
        # a fresh clone: each waits for its turn (online metrics: until a model is published)
        (False, True, {"retrain", "online_metrics", "ingest_movielog"}),
        (False, False, {"retrain", "online_metrics"}),  # lines are waiting already: ingest may take them
        (True, True, {"ingest_movielog"}),
        (True, False, set()),  # a restart of a running system: every schedule on at once
    ],
)
def test_up_leaves_retrain_paused_until_there_is_data_and_ingest_until_the_backfill_has_a_batch(
    has_model: bool, backfilling: bool, expected: set[str]
) -> None:
    paused = kept_paused(has_model, backfilling)
    assert set(paused) == expected
    dags = {path.stem for path in (Path(__file__).parents[1] / "dags").glob("*.py")}
    assert set(paused) <= dags  # the ids of real DAG files (a typo would leave nothing paused)


def test_the_machine_busy_seconds_are_every_column_of_the_cpu_line_but_idle_and_iowait() -> None:
    # user nice system idle iowait irq softirq steal guest guest_nice, in clock ticks
    line = "cpu  100 20 30 5000 400 5 5 40 7 0\ncpu0 50 10 15 2500 200 2 3 20 3 0\n"
    assert processes.busy_cpu_seconds(line) == pytest.approx(200 / os.sysconf("SC_CLK_TCK"))
    with pytest.raises(ValueError, match="cpu line"):
        processes.busy_cpu_seconds("intr 12345 0 0\n")


def test_the_machine_was_busy_at_least_as_long_as_this_process() -> None:
    before, mine_before = processes.busy_cpu_seconds(), os.times()
    total = sum(i * i for i in range(3_000_000))  # CPU work of our own
    after, mine_after = processes.busy_cpu_seconds(), os.times()
    ours = (mine_after.user + mine_after.system) - (mine_before.user + mine_before.system)
    assert total > 0 and ours > 0
    assert after - before >= ours - 2 / os.sysconf("SC_CLK_TCK")  # ticks round each figure


def test_each_step_prints_its_machine_cpu_seconds_and_how_busy_the_cores_were(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert busy_share(60.0, 30.0, 2) == 1.0 and busy_share(30.0, 60.0, 2) == 0.25
    assert busy_share(5.0, 0.0, 2) == 0.0
    timeline = Timeline()
    with timeline.step("work", "some work"):
        sum(i * i for i in range(1_000_000))
    printed = capsys.readouterr().out.splitlines()
    assert printed[0].endswith("some work ...")
    assert re.search(r"some work: done \(\d+ CPU s, \d+ cores \d+% busy\)$", printed[1])
    assert set(timeline.marks) == set(timeline.cpu) == {"work"} and timeline.cpu["work"] >= 0
    assert re.fullmatch(r"\d+ s \(\d+ CPU s, \d+ cores \d+% busy\)", timeline.so_far())
