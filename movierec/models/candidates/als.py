"""Candidate kind ``als``: Spark MLlib's implicit-feedback ALS on the interactions' strength.

Saved as ``ALSModel.save`` writes it (``userFactors/``, ``itemFactors/``: Parquet ``id int,
features array<float>``), with the movies' item factors only: pseudo-items that shaped a fit
(``als_features``) are left out here rather than filtered by every reader.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds

from movierec.models.candidates.base import Candidate, Factors, TrainingWindow

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

CHECKPOINT_INTERVAL = 5  # cut the RDD lineage every 5 iterations (deep lineage overflows the stack)
# Spark's default of 10 user and 10 item blocks is for big data. A small training set (make up's
# first model: 0.26M rows) in 10 blocks is mostly per-iteration tasks and shuffle files with little
# in them: one block per core (up to the 10) fitted the first model's four ALS fits in 28.7 s against
# 39.0 s, the train job 55.5 against 69.8 s (bench/bench_als_blocks.py). From SMALL_DATA_ROWS on,
# Spark's default, as measured at full scale (bench_als_training: 10, 4 and 2 blocks within 12%).
SMALL_DATA_ROWS = 1_000_000
SPARK_DEFAULT_BLOCKS = 10


def block_count(rows: int, cores: int) -> int:
    """ALS's user and item blocks for ``rows`` training rows on ``cores`` (the master's default
    parallelism): one per core, at least 2 and at most Spark's 10, below ``SMALL_DATA_ROWS``;
    Spark's 10 from there. Never more blocks than cores on small data, never fewer than 2."""
    if rows >= SMALL_DATA_ROWS:
        return SPARK_DEFAULT_BLOCKS
    return max(2, min(SPARK_DEFAULT_BLOCKS, cores))


USER_FACTORS, ITEM_FACTORS = "userFactors", "itemFactors"


def als_estimator(
    rank: int,
    reg: float,
    alpha: float,
    iterations: int,
    seed: int,
    *,
    checkpoint_interval: int = CHECKPOINT_INTERVAL,
    implicit: bool = True,
    blocks: int = SPARK_DEFAULT_BLOCKS,
) -> Any:
    """Spark's ALS on (uidx, iidx, strength); implicit: preference r > 0, confidence 1 + alpha * |r|."""
    from pyspark.ml.recommendation import ALS as SparkALS

    return SparkALS(
        numUserBlocks=blocks,
        numItemBlocks=blocks,
        userCol="uidx",
        itemCol="iidx",
        ratingCol="strength",
        implicitPrefs=implicit,
        rank=rank,
        regParam=reg,
        alpha=alpha,
        maxIter=iterations,
        checkpointInterval=checkpoint_interval,
        coldStartStrategy="drop",
        seed=seed,
    )


def factor_matrix(table: pa.Table, rank: int) -> tuple[np.ndarray, np.ndarray]:
    """(ids int64, float32 matrix) of a factor table ``id, features``."""
    ids = table.column("id").to_numpy().astype(np.int64)
    flat = pc.list_flatten(table.column("features")).to_numpy(zero_copy_only=False)
    return ids, np.asarray(flat, np.float32).reshape(len(ids), rank)


@dataclass(frozen=True)
class FittedALS:
    """A fitted ``ALSModel`` and where the movies end in its item ids."""

    model: Any
    movie_count: int

    def save(self, target: Path) -> None:
        from pyspark.sql import functions as F

        self.model.write().overwrite().save(str(target))
        items, staged = target / ITEM_FACTORS, target / f"{ITEM_FACTORS}.movies"
        self.model.itemFactors.filter(F.col("id") < self.movie_count).write.mode("overwrite").parquet(
            str(staged)
        )
        shutil.rmtree(items)
        staged.rename(items)


@dataclass(frozen=True)
class SavedALS(Factors):
    """The factor tables of a saved ``ALSModel``, read with pyarrow (no Spark needed)."""

    folder: Path
    model_rank: int

    def items(self) -> tuple[np.ndarray, np.ndarray]:
        ids, matrix = factor_matrix(ds.dataset(self.folder / ITEM_FACTORS).to_table(), self.model_rank)
        order = np.argsort(ids, kind="stable")
        return ids[order], matrix[order]

    def users(self, uidx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        wanted = pa.array(np.asarray(uidx, np.int32))
        table = ds.dataset(self.folder / USER_FACTORS).to_table(filter=ds.field("id").isin(wanted))
        return factor_matrix(table, self.model_rank)

    def user_frame(self, spark: SparkSession, users: DataFrame) -> DataFrame:
        return spark.read.parquet(str(self.folder / USER_FACTORS))

    @property
    def rank(self) -> int:
        return self.model_rank

    @property
    def stored_rows(self) -> int:
        return sum(ds.dataset(self.folder / part).count_rows() for part in (USER_FACTORS, ITEM_FACTORS))


@dataclass(frozen=True)
class ALS(Candidate):
    kind: ClassVar[str] = "als"
    name: str
    rank: int
    reg: float
    alpha: float
    iterations: int
    seed: int
    checkpoint_interval: int = CHECKPOINT_INTERVAL
    implicit_prefs: bool = True
    blocks: int = 0  # user and item blocks; 0: ``block_count`` of the window's rows

    def training_rows(self, window: TrainingWindow) -> DataFrame:
        """What the estimator sees: (uidx, iidx, strength) of the window."""
        return window.interactions.select("uidx", "iidx", "strength")

    def fit(self, spark: SparkSession, window: TrainingWindow) -> FittedALS:
        rows = self.training_rows(window)
        # counted on the window's interactions, which train caches (the fit reads them anyway)
        cores = spark.sparkContext.defaultParallelism
        blocks = self.blocks or block_count(window.interactions.count(), cores)
        estimator = als_estimator(
            self.rank,
            self.reg,
            self.alpha,
            self.iterations,
            self.seed,
            checkpoint_interval=self.checkpoint_interval,
            implicit=self.implicit_prefs,
            blocks=blocks,
        )
        model = estimator.fit(rows)
        model.userFactors.count()  # the fit is lazy in parts: force the factors inside the fit's timing
        return FittedALS(model, window.movie_count)

    def load(self, saved: Path) -> Factors:
        return SavedALS(saved, self.rank)
