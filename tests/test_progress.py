"""The cost a Spark block reports (``spark_jobs.progress.measured``) counts the Python workers'
CPU: precompute's scoring runs there, outside the JVM."""

from __future__ import annotations

from collections.abc import Iterator

import pyarrow as pa

from spark_jobs.progress import jvm_split, measured, thread_kind


def burn(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
    """Spin ~1 s of this worker's CPU per task and report how much it used (its own clock)."""
    import time

    began = time.process_time()
    for _ in batches:
        pass
    while time.process_time() - began < 1.0:
        sum(range(10_000))
    yield pa.RecordBatch.from_arrays([pa.array([time.process_time() - began])], names=["cpu"])


def test_measured_counts_the_python_workers_cpu(spark) -> None:
    with measured(spark, "burn", every=60.0) as cost:
        burned = spark.range(4, numPartitions=4).mapInArrow(burn, "cpu double").collect()
    used = sum(row.cpu for row in burned)
    assert used >= 4.0
    # the workers' own clocks say `used`; the report sees them from outside, through /proc
    assert cost.extra["python_workers_cpu_seconds"] >= 0.9 * used
    assert cost.extra["jvm_cpu_seconds"] >= 0.0
    assert cost.cpu_seconds >= cost.extra["python_workers_cpu_seconds"] + cost.extra["jvm_cpu_seconds"]


def executor_task_cpu_seconds(spark) -> float:
    """CPU seconds of the JVM's live Spark task threads, by the JVM's own clocks (ThreadMXBean)."""
    jvm = spark.sparkContext._jvm
    clocks = jvm.java.lang.management.ManagementFactory.getThreadMXBean()
    total = 0
    for thread in jvm.java.lang.Thread.getAllStackTraces().keySet():
        if thread.getName().startswith("Executor task "):  # running, or idle (Spark 4 renames)
            total += max(0, clocks.getThreadCpuTime(thread.getId()))
    return total / 1e9


def test_measured_splits_the_jvm_cpu_by_what_its_threads_do(spark) -> None:
    before = executor_task_cpu_seconds(spark)
    with measured(spark, "jvm burn", every=60.0) as cost:
        spark.range(0, 200_000_000, numPartitions=4).selectExpr("sum(hash(id, id * 3))").collect()
    used = executor_task_cpu_seconds(spark) - before
    assert used >= 0.5  # the JVM's clocks: its task threads did the work
    # /proc sees the same task threads from outside (ticks of 10 ms: a little slack)
    assert abs(cost.extra["jvm_tasks_cpu_seconds"] - used) <= 0.1 * used + 0.1
    parts = [cost.extra[f"jvm_{kind}_cpu_seconds"] for kind in ("jit", "gc", "tasks", "other")]
    assert min(parts) >= 0.0
    assert sum(parts) >= cost.extra["jvm_cpu_seconds"] - 0.05


def test_jvm_split_keeps_ended_threads_in_other() -> None:
    before = {1: ("jit", 2.0), 2: ("tasks", 1.0), 3: ("tasks", 4.0)}
    # thread 3 ended (its 4 s are not in `after`), thread 4 started, thread 1 compiled 0.5 s more
    after = {1: ("jit", 2.5), 2: ("tasks", 3.0), 4: ("gc", 0.25)}
    split = jvm_split(before, after, jvm_seconds=5.0)
    assert split == {"jit": 0.5, "gc": 0.25, "tasks": 2.0, "other": 2.25}


def test_thread_kind_from_proc_names() -> None:
    # /proc/<pid>/task/<tid>/comm cuts names at 15 characters
    assert thread_kind("C2 CompilerThre") == "jit"
    assert thread_kind("C1 CompilerThre") == "jit"
    assert thread_kind("GC Thread#1") == "gc"
    assert thread_kind("G1 Conc#0") == "gc"
    assert thread_kind("Executor task l") == "tasks"
    assert thread_kind("Executor task i") == "tasks"  # Spark 4 names an idle one so
    assert thread_kind("dag-scheduler-e") == "other"
