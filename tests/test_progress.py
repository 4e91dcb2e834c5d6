"""The cost a Spark block reports (``spark_jobs.progress.measured``) counts the Python workers'
CPU: precompute's scoring runs there, outside the JVM."""

from __future__ import annotations

from collections.abc import Iterator

import pyarrow as pa

from spark_jobs.progress import measured


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
