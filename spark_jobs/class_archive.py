"""Job ``class_archive``: a small tour of what the retrain's jobs do, run once per install so the
JVM can archive the classes it loaded (``movierec.ops.spark_submit.build_class_archive``).

    spark-submit --conf spark.driver.extraJavaOptions=-XX:ArchiveClassesAtExit=FILE \\
        spark_jobs/class_archive.py --scratch DIR

A Spark JVM loads ~10,000 classes before and while it runs a job; from a class data sharing
archive they are mapped, not parsed and verified. The tour loads the same families of classes as
prepare, train, evaluate and precompute (Parquet written and read, aggregates, windows, broadcast
and anti joins, a cached frame, ALS fitted, saved and loaded, ``mapInArrow``, a DataFrame from
rows); a class it missed is loaded as usual, so a missed one costs speed, never correctness.
Everything it writes goes under ``--scratch``, which it removes.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path
from typing import Any

from movierec import settings as settings_module
from movierec.models.candidates.als import als_estimator
from spark_jobs.session import build_session

USERS, MOVIES, ROWS = 300, 80, 6_000


def tour(spark: Any, scratch: Path) -> dict[str, int]:
    """What the jobs' kinds of work give on a small made-up frame (counts the caller can check)."""
    import pyarrow as pa
    from pyspark.ml.recommendation import ALSModel
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    rows = (
        spark.range(ROWS)
        .select(
            (F.col("id") % USERS).cast("int").alias("uidx"),
            ((F.col("id") * 7) % MOVIES).cast("int").alias("iidx"),
            (F.rand(1) * 5).cast("float").alias("strength"),
            F.expr("timestamp_ntz'2026-12-01 00:00:00' + make_interval(0, 0, 0, 0, 0, 0, id)").alias("time"),
        )
        .withColumn("day", F.to_date("time"))
    )
    rows.write.mode("overwrite").partitionBy("day").parquet(str(scratch / "lake"))
    lake = spark.read.parquet(str(scratch / "lake")).cache()
    latest = Window.partitionBy("uidx").orderBy(F.col("time").desc())
    last = lake.withColumn("n", F.row_number().over(latest)).filter("n = 1").drop("n")
    pairs = lake.groupBy("uidx", "iidx").agg(F.sum("strength").alias("strength"), F.max("time").alias("last"))
    movies = spark.createDataFrame([(i, f"movie+{i}") for i in range(MOVIES)], "iidx int, slug string")
    named = pairs.join(F.broadcast(movies), "iidx").join(last.select("uidx"), "uidx")
    quiet = (
        spark.range(USERS + 50).withColumnRenamed("id", "uidx").join(F.broadcast(last), "uidx", "left_anti")
    )
    named.orderBy("uidx", "iidx").coalesce(1).write.mode("overwrite").parquet(str(scratch / "named"))

    spark.sparkContext.setCheckpointDir(str(scratch / "checkpoints"))
    model = als_estimator(4, 0.05, 10.0, 3, 1, checkpoint_interval=2, blocks=2).fit(pairs)
    model.write().overwrite().save(str(scratch / "als"))
    loaded = ALSModel.load(str(scratch / "als"))

    def lengths(batches: Any) -> Any:
        for batch in batches:
            yield pa.RecordBatch.from_arrays(
                [batch.column(0), pa.compute.list_value_length(batch.column(1))], ["id", "n"]
            )

    scored = loaded.userFactors.mapInArrow(lengths, "id int, n int")
    return {
        "rows": spark.read.parquet(str(scratch / "named")).count(),
        "quiet": quiet.count(),
        "users_scored": scored.filter("n = 4").count(),
        "items": loaded.itemFactors.count(),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--scratch", type=Path, required=True, help="a folder to write in; removed at the end"
    )
    args = parser.parse_args(argv)
    from movierec.ops.spark_submit import print_result

    spark = build_session(settings_module.load(), "class-archive")
    try:
        print_result(tour(spark, args.scratch))
    finally:
        spark.stop()
        shutil.rmtree(args.scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
