"""Job ``prepare``: interactions from the lake, the id index, the time split, the fallback list.

    spark-submit spark_jobs/prepare.py --version VERSION

Interactions are one row per (user, movie) of ``watch_session`` (summed over days) and ``rate``
(the latest rating), with an implicit-feedback strength (see ``strength``). Time split: T is
the data end minus ``settings.test_days``, rounded to the nearest midnight (session rows are cut
at midnight, so no row straddles T); training sees only rows that ended before T, the test window
is everything from T on. Writes the contract files users/movies/seen.parquet, fallback.json,
params.json, data_manifest.json and the job's own ``prepared/`` data, among it the users'
demographic features as pseudo-items (see ``demographic_features``) and groups (``demographics``).
The user index holds every user with an interaction and every user the catalog has fetched.

Training-time defence against rating spam: every account in ``shilling_flags`` (what the detector,
movierec.security.shilling, flagged on any day) is left out, all its sessions and ratings, before
anything is split or counted, unless ``MOVIEREC_SHILLING_DEFENCE`` is off. The flag files read
are in the data manifest like every other input.

A version is made afresh: a retried or cleared run replaces what an earlier attempt left of its
version (model folder, report folder, unpublished serving files); a version that was ever
published is immutable and refused (trigger a new run instead).
"""

from __future__ import annotations

import argparse
import logging
import shutil
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from movierec import serving_file
from movierec import settings as settings_module
from movierec.fairness.measures import AGE_BANDS, OLDEST_BAND  # the catalog's bands: one owner
from movierec.models import registry, versions
from movierec.models.candidates import popularity
from movierec.settings import Settings
from spark_jobs import files, manifest
from spark_jobs.progress import measured, setup_logging

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame, SparkSession

log = logging.getLogger("movierec.prepare")

FALLBACK_SIZE = 20
RATING_WEIGHT = 0.5  # a 5 adds what watching the whole movie adds; a 1 takes it away
# Activity level by interactions before T (new = none: those users get the fallback list).
ACTIVITY_LEVELS = ((1, "light 1-2"), (3, "medium 3-9"), (10, "heavy 10+"))
UNKNOWN = "unknown"  # a demographic value the catalog does not have (or a user it has not fetched)
DEMOGRAPHIC_COLUMNS = ("age_band", "gender", "occupation")
# A user's demographic pseudo-item weighs as much as three fully watched movies: with one or two
# interactions per user (most users here) it is what places a user among people of their kind.
FEATURE_STRENGTH = 3.0


class PrepareError(RuntimeError):
    """The lake cannot give a training set (empty, or too short for the test window)."""


# --- pure pieces ----------------------------------------------------------------------------


def split_time(data_end: datetime, test_days: int) -> datetime:
    """T: ``test_days`` before the data end, at the nearest midnight (watch_session rows are per day)."""
    if test_days < 1:
        raise PrepareError(f"test_days must be at least 1, got {test_days}")
    moment = data_end - timedelta(days=test_days)
    midnight = moment.replace(hour=0, minute=0, second=0, microsecond=0)
    return midnight + timedelta(days=1) if moment - midnight >= timedelta(hours=12) else midnight


def strength(fraction: Column, rating: Column) -> Column:
    """The implicit-feedback value r of a (user, movie): ALS uses preference r > 0, confidence 1 + alpha*|r|.

        r = min(minutes_seen / runtime, 1)  +  RATING_WEIGHT * (rating - 3) / 2     (missing terms = 0)

    Watching is the main signal (90% of the stream) and its length says how much the viewer
    liked it: any watch is a positive, its confidence grows with the share seen (capped at 1,
    rewatches do not count twice). A rating moves it by up to +-0.5: a 5 on a fully watched
    movie is the strongest positive (1.5), a 1 on a movie left after a few minutes becomes a
    negative (r < 0: preference 0 with confidence, which Spark's implicit ALS supports).
    """
    from pyspark.sql import functions as F

    # not least(fraction, 1) alone: Spark's least skips nulls, so a rated-only pair would count as watched
    watched = F.when(fraction.isNull(), F.lit(0.0)).otherwise(F.least(fraction, F.lit(1.0)))
    rated = F.coalesce((rating.cast("double") - 3.0) / 2.0 * RATING_WEIGHT, F.lit(0.0))
    return (watched + rated).cast("float")


def interactions(
    sessions: DataFrame,
    rates: DataFrame,
    runtimes: DataFrame,
    start: datetime | None = None,
    end: datetime | None = None,
) -> DataFrame:
    """(user_id, movie_id, minutes_seen, rating, first_time, last_time, fraction, strength) of rows
    in [start, end).

    A session row counts only if it lies entirely inside the window (first_time >= start and
    last_time < end): minutes streamed after ``end`` never reach a window that ends there.
    Runtime: the catalog's; for a movie the catalog does not know yet, the furthest minute
    anyone reached in this window (never data from outside it).
    """
    from pyspark.sql import functions as F

    def within(frame: DataFrame, first: str, last: str) -> DataFrame:
        if start is not None:
            frame = frame.filter(F.col(first) >= F.lit(start).cast("timestamp_ntz"))
        if end is not None:
            frame = frame.filter(F.col(last) < F.lit(end).cast("timestamp_ntz"))
        return frame

    watched = (
        within(sessions, "first_time", "last_time")
        .groupBy("user_id", "movie_id")
        .agg(
            F.sum("minutes_seen").alias("minutes_seen"),
            F.max("max_minute").alias("max_minute"),
            F.max("last_time").alias("watch_time"),
            F.min("first_time").alias("watch_first"),
        )
    )
    rated = (
        within(rates, "time", "time")
        .groupBy("user_id", "movie_id")
        .agg(
            F.max_by("rating", "time").alias("rating"),
            F.max("time").alias("rate_time"),
            F.min("time").alias("rate_first"),
        )
    )
    both = watched.join(rated, ["user_id", "movie_id"], "full_outer")
    observed = watched.groupBy("movie_id").agg((F.max("max_minute") + 1).alias("observed_runtime"))
    runtime = F.coalesce(F.col("runtime"), F.col("observed_runtime")).cast("double")
    return (
        both.join(runtimes, "movie_id", "left")
        .join(observed, "movie_id", "left")
        .withColumn("fraction", F.col("minutes_seen") / runtime)
        .withColumn("strength", strength(F.col("fraction"), F.col("rating")))
        .withColumn("last_time", F.greatest("watch_time", "rate_time"))
        .withColumn("first_time", F.least("watch_first", "rate_first"))
        .select(
            "user_id", "movie_id", "minutes_seen", "rating", "first_time", "last_time", "fraction", "strength"
        )
    )


def first_listed(reco: DataFrame) -> DataFrame:
    """(user_id, movie_id, first_listed): when each movie was first in a list shown to the user
    (a successful recommendation line of the movielog, whoever answered it)."""
    from pyspark.sql import functions as F

    return (
        reco.filter(F.col("status") == 200)
        .select("user_id", "time", F.explode("items").alias("movie_id"))
        .groupBy("user_id", "movie_id")
        .agg(F.min("time").alias("first_listed"))
    )


def without_accounts(frame: DataFrame, accounts: DataFrame) -> DataFrame:
    """``frame``'s rows of users not in ``accounts`` (a ``user_id`` column)."""
    from pyspark.sql import functions as F

    return frame.join(F.broadcast(accounts.select("user_id").distinct()), "user_id", "left_anti")


def contiguous_index(ids: DataFrame, column: str, index_column: str) -> DataFrame:
    """Distinct ``column`` values numbered 0..n-1 in sorted order (deterministic, invertible)."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    order = Window.orderBy(column)  # one partition: fine for ids (1M users is 8 MB)
    return (
        ids.select(column).distinct().withColumn(index_column, (F.row_number().over(order) - 1).cast("int"))
    )


def activity_level(count: Column) -> Column:
    from pyspark.sql import functions as F

    level = F.when(count.isNull() | (count == 0), F.lit("new"))
    for low, name in reversed(ACTIVITY_LEVELS):
        level = level.when(count >= low, F.lit(name))
    return level


def age_band(age: Column) -> Column:
    from pyspark.sql import functions as F

    band = F.when(age.isNull(), F.lit(UNKNOWN))
    for below, name in AGE_BANDS:
        band = band.when(age < below, F.lit(name))
    return band.otherwise(F.lit(OLDEST_BAND))


def demographic_groups(users: DataFrame) -> DataFrame:
    """(uidx, age_band, gender, occupation) of catalog users (uidx, age, gender, occupation); a
    value the catalog left empty is "unknown"."""
    from pyspark.sql import functions as F

    return users.select(
        "uidx",
        age_band(F.col("age")).alias("age_band"),
        F.coalesce("gender", F.lit(UNKNOWN)).alias("gender"),
        F.coalesce("occupation", F.lit(UNKNOWN)).alias("occupation"),
    )


def demographic_features(users: DataFrame, first_iidx: int) -> tuple[DataFrame, DataFrame]:
    """(uidx, iidx, strength) rows tying each user to their demographic pseudo-items, and the index.

    ``users`` has uidx, age, gender, occupation (null: not fetched from the catalog API). Each user
    with a known value gets one row per feature: age band, gender, occupation, age band x gender.
    The pseudo-items are numbered from ``first_iidx`` (the movie count), so a model fitted with
    them has item factors past the movies, which scoring leaves out. The index is (feature, iidx).
    """
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    band = age_band(F.col("age"))
    named = users.select(
        "uidx",
        F.explode(
            F.array(
                F.when(F.col("age").isNotNull(), F.concat(F.lit("age="), band)),
                F.when(F.col("gender").isNotNull(), F.concat(F.lit("gender="), "gender")),
                F.when(F.col("occupation").isNotNull(), F.concat(F.lit("occupation="), "occupation")),
                F.when(
                    F.col("age").isNotNull() & F.col("gender").isNotNull(),
                    F.concat(F.lit("age x gender="), band, F.lit("/"), "gender"),
                ),
            )
        ).alias("feature"),
    ).filter(F.col("feature").isNotNull())
    order = Window.orderBy("feature")  # one partition: a few dozen names
    index = (
        named.select("feature")
        .distinct()
        .withColumn("iidx", (F.row_number().over(order) - 1 + first_iidx).cast("int"))
    )
    rows = named.join(F.broadcast(index), "feature").select(
        "uidx", "iidx", F.lit(FEATURE_STRENGTH).cast("double").alias("strength")
    )
    return rows, index


# --- reading the lake ----------------------------------------------------------------------

# The columns read from each table (as Spark DDL: also the schema of a table with no files yet).
EMPTY_SCHEMAS = {
    "watch_session": "user_id long, movie_id string, first_time timestamp_ntz, last_time timestamp_ntz, "
    "max_minute int, minutes_seen int",
    "rate": "user_id long, movie_id string, rating byte, time timestamp_ntz",
    "reco": "user_id long, time timestamp_ntz, status short, items array<string>",
    "movies": "id string, runtime int, fetched_at timestamp",
    "users": "user_id long, age short, gender string, occupation string, fetched_at timestamp",
    "shilling_flags": "user_id long, movie_id string",
}


def read_lake(spark: SparkSession, snapshot: dict[str, list[Path]]) -> dict[str, DataFrame]:
    """The tables learning reads, from exactly the files of ``snapshot`` (what the manifest lists)."""
    from pyspark.sql import functions as F
    from pyspark.sql.window import Window

    def table(name: str) -> DataFrame:
        paths = [str(p) for p in snapshot[name]]
        if not paths:  # a table nobody wrote yet (e.g. no catalog run so far): empty, typed
            return spark.createDataFrame([], schema=EMPTY_SCHEMAS[name])
        return spark.read.parquet(*paths).select(*[c.split()[0] for c in EMPTY_SCHEMAS[name].split(", ")])

    sessions = table("watch_session")
    rates = table("rate")
    latest = Window.partitionBy("id").orderBy(F.desc("fetched_at"))  # a record fetched twice: the newest
    movies = (
        table("movies")
        .withColumn("n", F.row_number().over(latest))
        .filter("n = 1")
        .filter(F.col("runtime") > 0)  # TMDB says 0 for unknown
        .select(F.col("id").alias("movie_id"), F.col("runtime").cast("int"))
    )
    users = (
        table("users")
        .withColumnRenamed("user_id", "id")
        .withColumn("n", F.row_number().over(latest))
        .filter("n = 1")
        .select(F.col("id").alias("user_id"), "age", "gender", "occupation")
    )
    flagged = table("shilling_flags")
    return {
        "sessions": sessions,
        "rates": rates,
        "reco": table("reco"),
        "runtimes": movies,
        "users": users,
        "flagged": flagged,
    }


# --- the job ---------------------------------------------------------------------------------


def replace_version(settings: Settings, version: str) -> None:
    """Remove what an earlier attempt left of ``version``; refuse a version that was published."""

    def of_version(ids: list[str]) -> list[str]:
        return [i for i in ids if serving_file.split_serving_id(i)[0] == version]

    mine = of_version(serving_file.serving_ids(settings.serving_dir))
    published = of_version(registry.published_versions(settings))
    if published:
        raise PrepareError(
            f"version {version} was published ({', '.join(published)}): a published version is "
            "immutable, its folder the provenance of what was served; trigger a new run instead"
        )
    for served in mine:
        serving_file.file_path(settings.serving_dir, served).unlink()
        log.info("removed the unpublished serving file of an earlier attempt: %s", served)
    for folder in (versions.model_dir(settings, version), versions.report_dir(settings, version)):
        if folder.exists():
            log.info("replacing %s (an earlier attempt at %s)", folder, version)
            shutil.rmtree(folder)


def prepare(spark: SparkSession, settings: Settings, version: str) -> dict[str, Any]:
    """Everything ``train`` and ``evaluate`` need, and the contract files of the model folder."""
    from pyspark.sql import functions as F

    replace_version(settings, version)
    folder = versions.model_dir(settings, version)
    prepared = versions.prepared_dir(settings, version)
    prepared.mkdir(parents=True, exist_ok=True)

    snapshot = manifest.lake_files(settings)
    data_manifest = manifest.build_manifest(settings, snapshot)
    log.info("prepare %s: %s", version, ", ".join(f"{len(v)} {k} files" for k, v in snapshot.items()))
    lake = read_lake(spark, snapshot)
    flagged = lake["flagged"].select("user_id").distinct().cache()
    excluded = {"flagged_accounts": flagged.count(), "defence": settings.shilling_defence}
    if settings.shilling_defence and excluded["flagged_accounts"]:
        before = {name: lake[name].count() for name in ("sessions", "rates")}
        for name in ("sessions", "rates"):
            lake[name] = without_accounts(lake[name], flagged).cache()
        excluded |= {f"{name}_left_out": before[name] - lake[name].count() for name in before}
        log.info("rating-spam defence: %s", excluded)

    bounds = lake["sessions"].agg(F.min("first_time").alias("start"), F.max("last_time").alias("end"))
    rate_bounds = lake["rates"].agg(F.min("time").alias("start"), F.max("time").alias("end"))
    (b,), (r,) = bounds.collect(), rate_bounds.collect()
    starts = [t for t in (b["start"], r["start"]) if t is not None]
    ends = [t for t in (b["end"], r["end"]) if t is not None]
    if not ends:
        raise PrepareError("the lake holds no watch_session or rate rows: nothing to learn from")
    data_start, data_end = min(starts), max(ends)
    cut = split_time(data_end, settings.test_days)
    if cut <= data_start:
        raise PrepareError(
            f"the data ({data_start} .. {data_end}) is not longer than the test window of "
            f"{settings.test_days} day(s): no training data before T={cut}"
        )
    log.info("data %s .. %s, split at T=%s", data_start, data_end, cut)

    every = interactions(lake["sessions"], lake["rates"], lake["runtimes"]).cache()
    train = interactions(lake["sessions"], lake["rates"], lake["runtimes"], end=cut).cache()
    after = interactions(lake["sessions"], lake["rates"], lake["runtimes"], start=cut)

    # Every user with history and every user the catalog has fetched: precompute lists them all
    # (those without history get their demographic group's list).
    known = every.select("user_id").unionByName(lake["users"].select("user_id"))
    users = contiguous_index(known, "user_id", "uidx").cache()
    movies = contiguous_index(every, "movie_id", "iidx").cache()
    files.write_single_parquet(users.orderBy("uidx"), folder / versions.USERS_FILE)
    files.write_single_parquet(movies.orderBy("iidx"), folder / versions.MOVIES_FILE)

    def indexed(frame: DataFrame) -> DataFrame:
        return frame.join(F.broadcast(movies), "movie_id").join(users, "user_id")

    every_idx = indexed(every)
    files.write_single_parquet(
        every_idx.select("uidx", "iidx").orderBy("uidx", "iidx"), folder / versions.SEEN_FILE
    )
    every_idx.select("uidx", "iidx", "strength", "last_time").write.mode("overwrite").parquet(
        str(prepared / "all.parquet")
    )
    train_idx = indexed(train).select("uidx", "iidx", "strength", "last_time").cache()
    train_idx.write.mode("overwrite").parquet(str(prepared / "train.parquet"))
    # Relevant in the test window: movies a user took up after T (positively) and had not met before;
    # "listed" if a list shown to the user held the movie before they first took it up (a watch our
    # lists could have caused; evaluate also measures recall on the others).
    listed = F.coalesce(F.col("first_listed") <= F.col("first_time"), F.lit(False))
    test_idx = (
        indexed(after.join(first_listed(lake["reco"]), ["user_id", "movie_id"], "left"))
        .filter(F.col("strength") > 0)
        .select("uidx", "iidx", listed.alias("listed"))
        .join(train_idx.select("uidx", "iidx"), ["uidx", "iidx"], "left_anti")
        .cache()
    )
    test_idx.write.mode("overwrite").parquet(str(prepared / "test.parquet"))

    demographics = demographic_groups(users.join(lake["users"], "user_id")).cache()
    demographics.write.mode("overwrite").parquet(str(prepared / versions.DEMOGRAPHICS_FILE))
    activity = train_idx.groupBy("uidx").agg(F.count("*").alias("train_interactions"))
    groups = (
        test_idx.select("uidx")
        .distinct()
        .join(demographics, "uidx", "left")
        .join(activity, "uidx", "left")
        .select(
            "uidx",
            *[F.coalesce(column, F.lit(UNKNOWN)).alias(column) for column in DEMOGRAPHIC_COLUMNS],
            activity_level(F.col("train_interactions")).alias("activity"),
            F.when(F.col("train_interactions").isNull(), "new").otherwise("returning").alias("tenure"),
        )
    )
    groups.write.mode("overwrite").parquet(str(prepared / "user_groups.parquet"))

    features, feature_index = demographic_features(
        users.join(lake["users"], "user_id").select("uidx", "age", "gender", "occupation"), movies.count()
    )
    features.write.mode("overwrite").parquet(str(prepared / "user_features.parquet"))
    files.write_single_parquet(feature_index.orderBy("iidx"), prepared / "feature_index.parquet")

    # Unknown users get the most popular movies: of all data when served, of the data before T
    # in evaluation (as a model fitted before T would serve them).
    served = popularity.most_popular(
        popularity.recent_viewers(every_idx, data_end + timedelta(microseconds=1)), FALLBACK_SIZE
    )
    slug = dict(movies.filter(F.col("iidx").isin(served)).select("iidx", "movie_id").collect())
    files.write_json(folder / versions.FALLBACK_FILE, {"items": [slug[i] for i in served]})
    before_t = popularity.most_popular(popularity.recent_viewers(train_idx, cut), FALLBACK_SIZE)
    files.write_json(prepared / versions.FALLBACK_BEFORE_T, {"iidx": before_t})

    counts = {
        "users": users.count(),  # every user listed: with history or in the catalog
        "users_with_history": every.select("user_id").distinct().count(),
        "catalog_users": lake["users"].count(),
        "movies": movies.count(),
        "interactions": every.count(),
        "train_interactions": train_idx.count(),
        "train_negative": train_idx.filter(F.col("strength") <= 0).count(),
        "test_pairs": test_idx.count(),
        "test_pairs_listed": test_idx.filter(F.col("listed")).count(),
        "test_users": test_idx.select("uidx").distinct().count(),
        "users_with_features": features.select("uidx").distinct().count(),
    }
    if counts["train_interactions"] == 0:
        raise PrepareError(f"no interactions before T={cut}: nothing to train on")
    changed = manifest.changed_files(data_manifest, settings)
    if changed:  # e.g. ingest recomputed a day's sessions while we read: the manifest would lie
        raise PrepareError(f"{len(changed)} lake files changed while prepare read them, e.g. {changed[0]}")
    files.write_json(folder / versions.DATA_MANIFEST_FILE, data_manifest)
    params = {
        "version": version,
        "split_time": cut.isoformat(),
        "data_start": data_start.isoformat(),
        "data_end": data_end.isoformat(),
        "test_days": settings.test_days,
        "popularity_days": popularity.DAYS,
        "strength": f"min(minutes_seen/runtime, 1) + {RATING_WEIGHT} * (rating - 3) / 2",
        "counts": counts,
        "shilling_defence": excluded,
        "spark": {
            "master": spark.sparkContext.master,
            "driver_memory": settings.spark_driver_memory,
            "executor_memory": settings.spark_executor_memory,
            "version": spark.version,
        },
    }
    files.write_json(folder / versions.PARAMS_FILE, params)
    cached = (every, train, users, movies, train_idx, test_idx, demographics, flagged)
    for frame in (*cached, lake["sessions"], lake["rates"]):
        frame.unpersist()
    log.info("prepared %s: %s", version, counts)
    return {
        "version": version,
        "split_time": cut.isoformat(),
        "data_end": data_end.isoformat(),
        **counts,
        "shilling_defence": excluded,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--version", required=True, type=versions.check_version)
    args = parser.parse_args(argv)
    setup_logging()
    from movierec.ops.spark_submit import print_result
    from spark_jobs.session import build_session

    settings = settings_module.load()
    spark = build_session(settings, "prepare")
    try:
        with measured(spark, "prepare") as cost:
            report = prepare(spark, settings, args.version)
        print_result(report | {"wall_seconds": round(cost.wall_seconds, 1)})
    finally:
        spark.stop()


if __name__ == "__main__":
    main()
