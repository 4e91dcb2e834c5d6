"""The SparkSession every job uses, configured from the settings.

Master and driver memory come from ``settings`` (``spark-submit`` passes the same values, so
a job behaves alike whether submitted or started in-process by a test). The UI is off (its
port would clash between concurrent jobs and nobody watches it), scratch space and the ALS
checkpoint folder live under ``$MOVIEREC_HOME``, and the session time zone is UTC so the
lake's naive event times (``timestamp_ntz``) are compared as written.
"""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING

from movierec.ops.spark_submit import JAVA_OPTIONS, driver_options
from movierec.settings import Settings

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

# Small data on few cores: 200 shuffle partitions would be mostly scheduling overhead; adaptive
# execution still coalesces or splits them by size.
SHUFFLE_PARTITIONS = 8
# Files are packed into read tasks of at most this much. ALS writes a model's factors as one file of
# ~26 MB per user block (10 blocks; 1M users at rank 64): read one to a task, precompute scores
# them where they are read, without a shuffle to spread them over the cores (Spark's default of
# 128 MB packs four ~30 MB files, open cost included, into one task). Big lake reads get finer tasks too.
MAX_PARTITION_BYTES = 32 * 1024 * 1024


def checkpoint_dir(settings: Settings) -> str:
    return str(settings.home / "spark-checkpoints")


def local_dir(settings: Settings) -> str:
    return str(settings.home / "spark-local")


def build_session(settings: Settings, app_name: str, java_options: str = JAVA_OPTIONS) -> SparkSession:
    """The (shared) SparkSession of this process, with the checkpoint folder set. ``java_options``:
    the JVMs' options when this call starts them (a session a test or bench starts; a bench compares
    others), as ``spark_submit`` passes them to a job."""
    from pyspark.sql import SparkSession

    # Python workers (mapInArrow) need this venv's numpy/pyarrow, not whatever `python3` is on
    # PATH; pyspark reads the variable when the context starts (spark-submit sets it too).
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    (settings.home / "spark-local").mkdir(parents=True, exist_ok=True)
    spark = (
        SparkSession.builder.appName(f"movierec-{app_name}")
        .master(settings.spark_master)
        .config("spark.driver.memory", settings.spark_driver_memory)
        .config("spark.executor.memory", settings.spark_executor_memory)  # a cluster's executors
        # the JVMs' garbage collector and the driver's class archive (spark-submit passes the same;
        # here for a session a test starts)
        .config("spark.driver.extraJavaOptions", driver_options(java_options))
        .config("spark.executor.extraJavaOptions", java_options)
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")  # our own progress lines instead
        .config("spark.local.dir", local_dir(settings))
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.sql.shuffle.partitions", str(SHUFFLE_PARTITIONS))
        .config("spark.sql.files.maxPartitionBytes", str(MAX_PARTITION_BYTES))
        .config("spark.sql.execution.arrow.pyspark.enabled", "true")
        .getOrCreate()
    )
    spark.sparkContext.setLogLevel("WARN")
    spark.sparkContext.setCheckpointDir(checkpoint_dir(settings))
    return spark
