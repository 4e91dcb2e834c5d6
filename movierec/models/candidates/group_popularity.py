"""Candidate ``group_popularity``: the movies most recently viewed within the user's demographic
group, unseen ones first: the baseline a personalised model must beat, and the list of every user
the catalog knows who has no history yet (``candidates.cold_start``).

Groups are the catalog's age band x gender x occupation (prepare's ``demographics``), backed off
when small (``back_off``): a group with fewer than ``min_viewers`` distinct recent viewers is
served its age band x gender's popularity, and if that is still too small everyone's (global
popularity). Users the catalog does not have are in the global group. Counts are
``popularity.recent_viewers`` per group (the one place popularity is computed); within a group,
movies of equal count are ordered by global popularity.

Served as a factorisation of rank G (the groups in use): a user's row is the one-hot of their
group, a movie's row its viewer count in each group plus its global count / (max + 1), a
tie-break below 1, so the common top-k code lists each user the movies most viewed in their
group that they have not seen.

    groups.parquet   group int32 (0: everyone), level, key, viewers (distinct recent viewers),
                     users (users served from it)
    counts.parquet   group int32, iidx int32, viewers int64: the movies viewed in each group
    members.parquet  uidx int32, group int32: every catalog user and every user of the window
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from movierec.models.candidates.base import Candidate, Factors, TrainingWindow
from movierec.models.candidates.popularity import DAYS, recent, recent_viewers

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

COLUMNS = ("age_band", "gender", "occupation")  # prepare's demographics, finest group first
# Coarser and coarser: each level's groups are unions of the finer level's (a user is in one
# group per level), so a group's viewers are the sum of its finer groups'.
LEVELS = (
    ("age x gender x occupation", 3),
    ("age x gender", 2),
    ("everyone", 0),
)
EVERYONE = 0  # the group id of the global level
EVERYONE_KEY = "all"
# A group lists its own popularity only with at least this many distinct recent viewers: with
# ~1.3 interactions a user, 100 viewers put ~2 views on each of a 20-movie list in our world.
MIN_VIEWERS = 100
GROUPS_FILE, COUNTS_FILE, MEMBERS_FILE = "groups.parquet", "counts.parquet", "members.parquet"

COUNTS_SCHEMA = pa.schema([("group", pa.int32()), ("iidx", pa.int32()), ("viewers", pa.int64())])

Fine = tuple[str, ...]  # one value per COLUMNS


def group_key(fine: Fine, depth: int) -> str:
    """The key of ``fine``'s group at a level using the first ``depth`` columns ("all" for none)."""
    return "/".join(fine[:depth]) if depth else EVERYONE_KEY


def back_off(viewers: Mapping[Fine, int], min_viewers: int) -> dict[Fine, tuple[str, str]]:
    """For each finest group (with its distinct recent viewers, 0 included): the (level, key) of
    the group its users are served from, the finest with at least ``min_viewers`` viewers,
    everyone when none is."""
    totals: dict[tuple[str, str], int] = defaultdict(int)
    for fine, count in viewers.items():
        for level, depth in LEVELS:
            totals[level, group_key(fine, depth)] += count
    chosen = {}
    for fine in viewers:
        for level, depth in LEVELS:
            key = group_key(fine, depth)
            if depth == 0 or totals[level, key] >= min_viewers:
                chosen[fine] = (level, key)
                break
    return chosen


def numbered(served_from: Mapping[Fine, tuple[str, str]]) -> list[tuple[str, str]]:
    """The groups in use, numbered: everyone first (0), then by level (coarse first) and key."""
    order = {level: i for i, (level, _) in enumerate(reversed(LEVELS))}
    used = set(served_from.values()) | {(LEVELS[-1][0], EVERYONE_KEY)}
    return sorted(used, key=lambda group: (order[group[0]], group[1]))


def group_counts(fine_counts: pa.Table, everyone: pa.Table, groups: list[tuple[str, str]]) -> pa.Table:
    """(group, iidx, viewers) of every group of ``groups`` (its position is its id): the finest
    groups' counts (COLUMNS, iidx, viewers) summed up to each group's level; everyone's are
    ``everyone`` (iidx, viewers), which also counts the users the catalog lacks."""
    depth_of = dict(LEVELS)
    fine = fine_counts.to_pandas()
    by_level = {}
    for level, depth in LEVELS[:-1]:
        key = fine[COLUMNS[0]].astype(str)
        for column in COLUMNS[1:depth]:
            key = key + "/" + fine[column].astype(str)
        by_level[level] = fine.assign(key=key).groupby(["key", "iidx"], as_index=False)["viewers"].sum()
    parts = []
    for group, (level, key) in enumerate(groups):
        if depth_of[level] == 0:
            part = everyone.to_pandas()[["iidx", "viewers"]]
        else:
            counted = by_level[level]
            part = counted[counted["key"] == key][["iidx", "viewers"]]
        parts.append(part.assign(group=group))
    table = pd.concat(parts, ignore_index=True)[["group", "iidx", "viewers"]]
    return pa.Table.from_pandas(table, schema=COUNTS_SCHEMA, preserve_index=False)


@dataclass(frozen=True)
class _Groups:
    groups: pa.Table
    counts: pa.Table
    members: pa.Table

    def save(self, target: Path) -> None:
        target.mkdir(parents=True, exist_ok=True)
        pq.write_table(self.groups, target / GROUPS_FILE)
        pq.write_table(self.counts, target / COUNTS_FILE)
        pq.write_table(self.members, target / MEMBERS_FILE)


@dataclass(frozen=True)
class GroupFactors(Factors):
    """Rank G: one-hot users against the movies' counts per group (see the module doc)."""

    folder: Path
    groups: pa.Table = field(repr=False)  # sorted by group
    member_uidx: np.ndarray = field(repr=False)  # ascending
    member_group: np.ndarray = field(repr=False)
    ids: np.ndarray = field(repr=False)
    matrix: np.ndarray = field(repr=False)

    def items(self) -> tuple[np.ndarray, np.ndarray]:
        return self.ids, self.matrix

    def users(self, uidx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        wanted = np.asarray(uidx, np.int64)
        found = wanted[np.isin(wanted, self.member_uidx)]
        rows = np.zeros((len(found), self.rank), np.float32)
        rows[np.arange(len(found)), self.member_group[np.searchsorted(self.member_uidx, found)]] = 1.0
        return found, rows

    def user_frame(self, spark: SparkSession, users: DataFrame) -> DataFrame:
        from pyspark.sql import functions as F

        one_hot = F.transform(
            F.sequence(F.lit(0), F.lit(self.rank - 1)),
            lambda g: F.when(g == F.col("group"), 1.0).otherwise(0.0).cast("float"),
        )
        return (
            self.members(spark)
            .join(users.select("uidx"), "uidx")
            .select(F.col("uidx").alias("id"), one_hot.alias("features"))
        )

    def members(self, spark: SparkSession) -> DataFrame:
        """Spark frame ``uidx int, group int``: the group each member is served from."""
        return spark.read.parquet(str(self.folder / MEMBERS_FILE))

    @property
    def rank(self) -> int:
        return self.groups.num_rows

    @property
    def stored_rows(self) -> int:
        return len(self.ids)  # the users' one-hots are not stored (their group ids are)

    def summary(self) -> dict[str, object]:
        """For reports: per level, the groups in use and the users served from them; every group."""
        rows = self.groups.to_pylist()
        levels = {level: {"groups": 0, "users": 0} for level, _ in LEVELS}
        for row in rows:
            levels[row["level"]]["groups"] += 1
            levels[row["level"]]["users"] += int(row["users"])
        return {"levels": levels, "groups": rows}


@dataclass(frozen=True)
class GroupPopularity(Candidate):
    kind: ClassVar[str] = "group_popularity"
    name: str = "group_popularity"
    days: int = DAYS
    min_viewers: int = MIN_VIEWERS
    groups: str = " -> ".join(level for level, _ in LEVELS)

    def fit(self, spark: SparkSession, window: TrainingWindow) -> _Groups:
        from pyspark.sql import functions as F

        demographics = window.demographics.select("uidx", *COLUMNS)
        shown = window.interactions.join(demographics, "uidx")
        fine_counts = recent_viewers(shown, window.until, self.days, by=COLUMNS).toArrow()
        everyone = recent_viewers(window.interactions, window.until, self.days).toArrow()
        sizes = {
            tuple(row[c] for c in COLUMNS): int(row["viewers"])
            for row in recent(shown, window.until, self.days)
            .groupBy(*COLUMNS)
            .agg(F.countDistinct("uidx").alias("viewers"))
            .collect()
        }
        fines = [tuple(row[c] for c in COLUMNS) for row in demographics.select(*COLUMNS).distinct().collect()]
        served_from = back_off({fine: sizes.get(fine, 0) for fine in fines}, self.min_viewers)
        groups = numbered(served_from)
        group_id = {group: i for i, group in enumerate(groups)}
        assignment = spark.createDataFrame(
            [(*fine, group_id[group]) for fine, group in served_from.items()],
            ", ".join(f"{c} string" for c in COLUMNS) + ", group int",
        )
        outside = (  # users of the window the catalog does not have: everyone's group
            window.interactions.select("uidx")
            .distinct()
            .join(demographics, "uidx", "left_anti")
            .withColumn("group", F.lit(EVERYONE))
        )
        members = (
            demographics.join(F.broadcast(assignment), list(COLUMNS))
            .select(F.col("uidx").cast("int"), F.col("group").cast("int"))
            .unionByName(outside.select(F.col("uidx").cast("int"), F.col("group").cast("int")))
            .toArrow()
            .sort_by("uidx")
        )
        recent_users = recent(window.interactions, window.until, self.days).select("uidx").distinct().count()
        depth_of = dict(LEVELS)
        viewers = [
            recent_users
            if depth_of[level] == 0
            else sum(n for fine, n in sizes.items() if group_key(fine, depth_of[level]) == key)
            for level, key in groups
        ]
        users = np.bincount(members.column("group").to_numpy(), minlength=len(groups))
        table = pa.table(
            {
                "group": pa.array(range(len(groups)), pa.int32()),
                "level": [level for level, _ in groups],
                "key": [key for _, key in groups],
                "viewers": pa.array(viewers, pa.int64()),
                "users": pa.array(users.tolist(), pa.int64()),
            }
        )
        return _Groups(table, group_counts(fine_counts, everyone, groups), members)

    def load(self, saved: Path) -> GroupFactors:
        groups = pq.read_table(saved / GROUPS_FILE).sort_by("group")
        counts = pq.read_table(saved / COUNTS_FILE)
        members = pq.read_table(saved / MEMBERS_FILE).sort_by("uidx")
        group = counts.column("group").to_numpy().astype(np.int64)
        iidx = counts.column("iidx").to_numpy().astype(np.int64)
        viewers = counts.column("viewers").to_numpy().astype(np.float64)
        ids = np.unique(iidx[group == EVERYONE])  # every movie with a recent viewer, ascending
        row = np.searchsorted(ids, iidx)
        matrix = np.zeros((len(ids), groups.num_rows), np.float64)
        matrix[row, group] = viewers
        overall = matrix[:, EVERYONE]
        matrix += (overall / (overall.max(initial=0.0) + 1.0))[:, None]  # ties: global popularity
        return GroupFactors(
            saved,
            groups,
            members.column("uidx").to_numpy().astype(np.int64),
            members.column("group").to_numpy().astype(np.int64),
            ids,
            matrix.astype(np.float32),
        )
