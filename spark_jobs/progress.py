"""Readable progress and cost of long Spark work: a line every few seconds, wall and CPU seconds.

Spark's ALS offers no per-iteration callback; a thread polls the status tracker and prints the
stages done so far, so a person watching the log sees the fit move. CPU seconds are the driver
JVM's (utime + stime from /proc), its descendants' (the Python workers Spark forks for
``mapInArrow``: most of precompute's work) and this Python process's: in local mode the executors
run inside that JVM, so this is all the work; on a cluster it is the driver's share only. The
JVM's share is split by what its threads do (``JVM_THREAD_KINDS``): a fresh JVM's first job spends
seconds compiling its hot code, which a warm one does not.
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


def _stat(pid: int) -> list[str] | None:
    """/proc/<pid>/stat's fields after the command name (index 0 is the state), or None."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def _descendants(pid: int) -> list[int]:
    """The live processes below ``pid`` (children, their children, ...), from /proc's parent ids."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (fields := _stat(int(entry))) is not None:
            children.setdefault(int(fields[1]), []).append(int(entry))
    found, todo = [], list(children.get(pid, []))
    while todo:
        child = todo.pop()
        found.append(child)
        todo.extend(children.get(child, []))
    return found


def jvm_cpu_seconds(spark: SparkSession) -> tuple[float, float]:
    """CPU seconds used so far by the driver JVM and by its descendants (the Python workers, live
    ones with the children they have reaped, and the reaped ones); (0.0, 0.0) without /proc."""
    pid = int(spark.sparkContext._jvm.java.lang.ProcessHandle.current().pid())  # type: ignore[union-attr]
    ticks = os.sysconf("SC_CLK_TCK")
    own = _stat(pid)
    if own is None:
        return 0.0, 0.0
    below = int(own[13]) + int(own[14])  # cutime, cstime: children the JVM has waited for
    for child in _descendants(pid):
        fields = _stat(child)
        if fields is not None:  # utime, stime, cutime, cstime
            below += sum(int(value) for value in fields[11:15])
    return (int(own[11]) + int(own[12])) / ticks, below / ticks


# the JVM's threads by /proc's name for them (15 characters at most), and what they do
JVM_THREAD_KINDS = {
    "jit": ("C1 CompilerThre", "C2 CompilerThre"),  # the JIT compiling hot methods
    "gc": ("GC Thread#", "G1 ", "VM Thread"),  # the collector (ParallelGC's and G1's workers)
    "tasks": ("Executor task ",),  # Spark's tasks (idle ones renamed): reading, converting, writing
}


def thread_kind(name: str) -> str:
    """The kind of a JVM thread (a key of ``JVM_THREAD_KINDS``) from its /proc name, else "other"."""
    return next((kind for kind, prefixes in JVM_THREAD_KINDS.items() if name.startswith(prefixes)), "other")


def jvm_thread_cpu_seconds(spark: SparkSession) -> dict[int, tuple[str, float]]:
    """The driver JVM's live threads: thread id -> (kind, CPU seconds so far); {} without /proc.
    Threads that have ended are not listed (the JVM retires idle compiler threads, Spark idle task
    threads): a split over a block counts them in "other" (``jvm_split``)."""
    pid = int(spark.sparkContext._jvm.java.lang.ProcessHandle.current().pid())  # type: ignore[union-attr]
    ticks = os.sysconf("SC_CLK_TCK")
    threads = {}
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return {}
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/comm") as comm:
                name = comm.read().strip()
            with open(f"/proc/{pid}/task/{tid}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue  # the thread ended while being read
        threads[int(tid)] = (thread_kind(name), (int(fields[11]) + int(fields[12])) / ticks)
    return threads


def jvm_split(
    before: dict[int, tuple[str, float]], after: dict[int, tuple[str, float]], jvm_seconds: float
) -> dict[str, float]:
    """The JVM's CPU seconds between two ``jvm_thread_cpu_seconds`` snapshots by kind of thread;
    "other" is the rest of ``jvm_seconds`` (the whole JVM's), threads that ended included."""
    split = dict.fromkeys(JVM_THREAD_KINDS, 0.0)
    for tid, (kind, seconds) in after.items():
        if kind in split:
            split[kind] += seconds - before.get(tid, (kind, 0.0))[1]
    split["other"] = max(0.0, jvm_seconds - sum(split.values()))
    return split


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
    threads0 = jvm_thread_cpu_seconds(spark)
    began, (jvm0, workers0), py0 = time.monotonic(), jvm_cpu_seconds(spark), time.process_time()

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
        jvm, workers = jvm_cpu_seconds(spark)
        split = {"jvm": jvm - jvm0, "python_workers": workers - workers0, "driver": time.process_time() - py0}
        cost.extra.update({f"{part}_cpu_seconds": seconds for part, seconds in split.items()})
        cost.cpu_seconds = sum(split.values())
        by_kind = jvm_split(threads0, jvm_thread_cpu_seconds(spark), split["jvm"])
        cost.extra.update({f"jvm_{kind}_cpu_seconds": seconds for kind, seconds in by_kind.items()})
        log.info(
            "%s: done in %.1f s wall, %.1f s CPU (JVM %.1f, Python workers %.1f, driver %.1f;"
            " JVM's JIT %.1f, GC %.1f, tasks %.1f)",
            label,
            cost.wall_seconds,
            cost.cpu_seconds,
            *split.values(),
            by_kind["jit"],
            by_kind["gc"],
            by_kind["tasks"],
        )
