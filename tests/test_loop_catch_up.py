"""`movierec up` ingests while the backfill writes: what its catch-up loop does next.

The loop itself drives Airflow and the broker (measured on `make up`, README); the decision it
takes from the lines waiting is a pure function, checked here on every case.
"""

from __future__ import annotations

import pytest

from movierec.ops.loop import CAUGHT_UP, INGEST, WAIT, next_ingest

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
