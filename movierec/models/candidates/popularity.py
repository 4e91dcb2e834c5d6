"""Candidate ``popularity``: the movies with the most distinct recent viewers, unseen ones first.

The one place popularity is computed: the candidate itself, the fallback list that ``prepare``
writes for unknown users (through ``recent_viewers`` and ``most_popular``), and the counts per
demographic group of ``group_popularity`` (``recent_viewers`` with ``by``). Served as a rank-1
factorisation: every user's factor is 1 and every movie's its count of viewers, so the common
top-k code lists each user the most popular movies they have not seen yet.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from movierec.models.candidates.base import Candidate, Factors, TrainingWindow

if TYPE_CHECKING:
    from datetime import datetime

    from pyspark.sql import DataFrame, SparkSession

DAYS = 7  # "recent": distinct viewers over the last week before the window's end
VIEWERS_FILE = "viewers.parquet"


def recent(interactions: DataFrame, until: datetime, days: int = DAYS) -> DataFrame:
    """The positive interactions of the ``days`` before ``until``: what "recently viewed" means."""
    from pyspark.sql import functions as F

    since = until - timedelta(days=days)
    return (
        interactions.filter(F.col("strength") > 0)
        .filter(F.col("last_time") >= F.lit(since).cast("timestamp_ntz"))
        .filter(F.col("last_time") < F.lit(until).cast("timestamp_ntz"))
    )


def recent_viewers(
    interactions: DataFrame, until: datetime, days: int = DAYS, by: Sequence[str] = ()
) -> DataFrame:
    """(*by, iidx, viewers): distinct users with a positive interaction in the ``days`` before
    ``until``, per movie (and per value of the columns ``by``, e.g. a user's group)."""
    from pyspark.sql import functions as F

    return (
        recent(interactions, until, days).groupBy(*by, "iidx").agg(F.countDistinct("uidx").alias("viewers"))
    )


def most_popular(viewers: DataFrame, k: int) -> list[int]:
    """The ``k`` movie indices with the most viewers, ties by index (so the list is deterministic)."""
    from pyspark.sql import functions as F

    top = viewers.orderBy(F.desc("viewers"), F.asc("iidx")).limit(k).collect()
    return [int(row["iidx"]) for row in top]


@dataclass(frozen=True)
class _Viewers:
    table: pa.Table  # iidx int32, viewers int64, sorted by iidx

    def save(self, target: Path) -> None:
        target.mkdir(parents=True, exist_ok=True)
        pq.write_table(self.table, target / VIEWERS_FILE)


@dataclass(frozen=True)
class _Rank1(Factors):
    ids: np.ndarray
    counts: np.ndarray = field(repr=False)

    def items(self) -> tuple[np.ndarray, np.ndarray]:
        return self.ids, self.counts.reshape(-1, 1)

    def users(self, uidx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return np.asarray(uidx, np.int64), np.ones((len(uidx), 1), np.float32)

    def user_frame(self, spark: SparkSession, users: DataFrame) -> DataFrame:
        from pyspark.sql import functions as F

        return users.select(F.col("uidx").alias("id"), F.array(F.lit(1.0).cast("float")).alias("features"))

    @property
    def stored_rows(self) -> int:
        return len(self.ids)  # the users' ones are not stored


@dataclass(frozen=True)
class Popularity(Candidate):
    kind: ClassVar[str] = "popularity"
    name: str = "popularity"
    days: int = DAYS

    def fit(self, spark: SparkSession, window: TrainingWindow) -> _Viewers:
        from pyspark.sql import functions as F

        frame = recent_viewers(window.interactions, window.until, self.days)
        table = frame.select(F.col("iidx").cast("int"), F.col("viewers").cast("long")).toArrow()
        return _Viewers(table.sort_by("iidx"))

    def load(self, saved: Path) -> Factors:
        table = pq.read_table(saved / VIEWERS_FILE).sort_by("iidx")
        return _Rank1(
            table.column("iidx").to_numpy().astype(np.int64),
            table.column("viewers").to_numpy().astype(np.float32),
        )
