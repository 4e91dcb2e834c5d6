"""Readable progress and cost of long Spark work: a line every few seconds, wall and CPU seconds.

Spark's ALS offers no per-iteration callback; a thread polls the status tracker and prints the
stages done so far, so a person watching the log sees the fit move. CPU seconds are the driver
JVM's (utime + stime from /proc) plus this Python process's: in local mode the executors run
inside that JVM, so this is all the work; on a cluster it is the driver's share only.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

log = logging.getLogger("movierec.spark")


def setup_logging() -> None:
    """Progress lines on stderr with a time stamp; spark_submit echoes the ``movierec`` ones."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s", force=True)


def jvm_cpu_seconds(spark: SparkSession) -> float:
    """CPU seconds the driver JVM has used so far (0.0 where /proc is not readable)."""
    pid = int(spark.sparkContext._jvm.java.lang.ProcessHandle.current().pid())  # type: ignore[union-attr]
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks  # utime, stime


@dataclass
class Cost:
    wall_seconds: float = 0.0
    cpu_seconds: float = 0.0
    extra: dict[str, float] = field(default_factory=dict)


@contextmanager
def measured(spark: SparkSession, label: str, every: float = 10.0) -> Iterator[Cost]:
    """Time the block (wall and CPU) and print a progress line every ``every`` seconds meanwhile."""
    cost = Cost()
    stop = threading.Event()
    tracker = spark.sparkContext.statusTracker()
    began, cpu0, py0 = time.monotonic(), jvm_cpu_seconds(spark), time.process_time()

    def report() -> None:
        while not stop.wait(every):
            active = tracker.getActiveStageIds()
            stages = [tracker.getStageInfo(s) for s in active]
            doing = ", ".join(
                f"stage {s.stageId} {s.name.split(' at ')[0]} {s.numCompletedTasks}/{s.numTasks} tasks"
                for s in stages
                if s is not None
            )
            log.info("%s: %.0f s, %s", label, time.monotonic() - began, doing or "between stages")

    thread = threading.Thread(target=report, name=f"progress-{label}", daemon=True)
    thread.start()
    log.info("%s: started", label)
    try:
        yield cost
    finally:
        stop.set()
        thread.join()
        cost.wall_seconds = time.monotonic() - began
        cost.cpu_seconds = jvm_cpu_seconds(spark) - cpu0 + time.process_time() - py0
        log.info("%s: done in %.1f s wall, %.1f s CPU", label, cost.wall_seconds, cost.cpu_seconds)
