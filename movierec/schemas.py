"""Table schemas of the lake: one pyarrow schema per table, shared by every part.

Every typed table keeps the Kafka coordinates (partition, offset) of the line it
came from, so any row can be traced back to the exact message, and duplicates
are detectable by key.
"""

from __future__ import annotations

import pyarrow as pa

EVENT_TIME = pa.timestamp("us")  # the site's local time as written in the line (up to 6 fraction digits)
KAFKA_TIME = pa.timestamp("ms")  # when the broker appended the message

_SOURCE = [
    pa.field("partition", pa.int32(), nullable=False),
    pa.field("offset", pa.int64(), nullable=False),
]

RAW = pa.schema(
    [
        *_SOURCE,
        pa.field("kafka_time", KAFKA_TIME, nullable=False),
        # undecodable bytes are kept visible as backslash escapes; raw_bytes keeps the original
        pa.field("line", pa.string(), nullable=False),
        pa.field("raw_bytes", pa.binary(), nullable=True),
    ]
)

WATCH = pa.schema(
    [
        pa.field("time", EVENT_TIME, nullable=False),
        pa.field("user_id", pa.int64(), nullable=False),
        pa.field("movie_id", pa.string(), nullable=False),
        pa.field("minute", pa.int32(), nullable=False),
        *_SOURCE,
    ]
)

RATE = pa.schema(
    [
        pa.field("time", EVENT_TIME, nullable=False),
        pa.field("user_id", pa.int64(), nullable=False),
        pa.field("movie_id", pa.string(), nullable=False),
        pa.field("rating", pa.int8(), nullable=False),
        *_SOURCE,
    ]
)

RECO = pa.schema(
    [
        pa.field("time", EVENT_TIME, nullable=False),
        pa.field("user_id", pa.int64(), nullable=False),
        pa.field("server", pa.string(), nullable=False),
        pa.field("status", pa.int16(), nullable=False),
        pa.field("items", pa.list_(pa.string()), nullable=False),
        pa.field("error", pa.string(), nullable=True),
        pa.field("latency_ms", pa.int32(), nullable=False),
        *_SOURCE,
    ]
)

QUARANTINE = pa.schema(
    [
        *_SOURCE,
        pa.field("kafka_time", KAFKA_TIME, nullable=False),
        pa.field("line", pa.string(), nullable=False),
        pa.field("stage", pa.string(), nullable=False),  # "parse" (grammar) or "quality" (expectations)
        pa.field("reason", pa.string(), nullable=False),  # movielog Reason code or expectation name
        pa.field("detail", pa.string(), nullable=True),
    ]
)

WATCH_SESSION = pa.schema(
    [
        pa.field("user_id", pa.int64(), nullable=False),
        pa.field("movie_id", pa.string(), nullable=False),
        pa.field("first_time", EVENT_TIME, nullable=False),
        pa.field("last_time", EVENT_TIME, nullable=False),
        pa.field("max_minute", pa.int32(), nullable=False),
        pa.field("minutes_seen", pa.int32(), nullable=False),
    ]
)

# One row per (batch, drift signal, test): movierec.ingest.drift's results, by the batch's event date.
DRIFT = pa.schema(
    [
        pa.field("batch_id", pa.string(), nullable=False),
        pa.field("computed_at", pa.timestamp("us", tz="UTC"), nullable=False),
        pa.field("signal", pa.string(), nullable=False),
        pa.field("test", pa.string(), nullable=False),  # "psi" or "chi2"
        pa.field("statistic", pa.float64(), nullable=True),  # null: not enough data to compare
        pa.field("p_value", pa.float64(), nullable=True),  # chi2 only
        pa.field("threshold", pa.float64(), nullable=False),
        pa.field("reference_rows", pa.int64(), nullable=False),
        pa.field("batch_rows", pa.int64(), nullable=False),
        pa.field("drifted", pa.bool_(), nullable=False),  # the signal's verdict (both tests), on each row
    ]
)

# One row per (window, start, server): the site's availability as its log says, computed after each
# ingest batch by movierec.monitoring.availability_store (pure logic in movierec.monitoring.availability).
AVAILABILITY = pa.schema(
    [
        pa.field("window", pa.string(), nullable=False),  # 5m, 1h, 1d, 72h, 96h
        pa.field("start", pa.timestamp("us"), nullable=False),  # the site's local time, like the lake
        pa.field("end", pa.timestamp("us"), nullable=False),
        pa.field("server", pa.string(), nullable=False),
        pa.field("requests", pa.int64(), nullable=False),
        pa.field("up", pa.int64(), nullable=False),  # status 200 under the 800 ms budget
        pa.field("timeouts", pa.int64(), nullable=False),  # status 0
        pa.field("errors", pa.int64(), nullable=False),  # any other code but 200
        pa.field("slow", pa.int64(), nullable=False),  # 200 at or over the budget
        pa.field("availability", pa.float64(), nullable=False),
        pa.field("latency_p50_ms", pa.float64(), nullable=True),
        pa.field("latency_p99_ms", pa.float64(), nullable=True),
        pa.field("answered", pa.int64(), nullable=False),  # status 200, in time or not
        pa.field("fallback", pa.int64(), nullable=False),  # answered with a fallback line
        pa.field("fallback_share", pa.float64(), nullable=True),  # of answered; null if none
    ]
)

# The catalog API's records (movierec.ingest.catalog_sync): the users, the TMDB-like movies of
# DESIGN.md (nested values as JSON text, except genres, which learning reads as a list of names),
# and the ids the API answered 404 for.
FETCHED_AT = pa.timestamp("us", tz="UTC")

USERS = pa.schema(
    [
        pa.field("user_id", pa.int64(), nullable=False),
        pa.field("age", pa.int16(), nullable=True),
        pa.field("occupation", pa.string(), nullable=True),
        pa.field("gender", pa.string(), nullable=True),
        pa.field("fetched_at", FETCHED_AT, nullable=False),
    ]
)

MOVIES = pa.schema(
    [
        pa.field("id", pa.string(), nullable=False),
        pa.field("tmdb_id", pa.int64(), nullable=True),
        pa.field("imdb_id", pa.string(), nullable=True),
        pa.field("title", pa.string(), nullable=False),
        pa.field("original_title", pa.string(), nullable=True),
        pa.field("adult", pa.bool_(), nullable=True),
        pa.field("belongs_to_collection", pa.string(), nullable=True),  # JSON object or null
        pa.field("budget", pa.int64(), nullable=True),
        pa.field("genres", pa.list_(pa.string()), nullable=False),
        pa.field("homepage", pa.string(), nullable=True),
        pa.field("original_language", pa.string(), nullable=True),
        pa.field("overview", pa.string(), nullable=True),
        pa.field("popularity", pa.float64(), nullable=True),
        pa.field("poster_path", pa.string(), nullable=True),
        pa.field("production_companies", pa.string(), nullable=True),  # JSON list
        pa.field("production_countries", pa.string(), nullable=True),  # JSON list
        pa.field("release_date", pa.date32(), nullable=True),
        pa.field("revenue", pa.int64(), nullable=True),
        pa.field("runtime", pa.int32(), nullable=True),
        pa.field("spoken_languages", pa.string(), nullable=True),  # JSON list
        pa.field("status", pa.string(), nullable=True),
        pa.field("vote_average", pa.float64(), nullable=True),
        pa.field("vote_count", pa.int64(), nullable=True),
        pa.field("fetched_at", FETCHED_AT, nullable=False),
    ]
)

UNKNOWN = pa.schema(
    [
        pa.field("kind", pa.string(), nullable=False),  # "user" or "movie"
        pa.field("id", pa.string(), nullable=False),
        pa.field("status", pa.int16(), nullable=False),
        pa.field("message", pa.string(), nullable=True),
        pa.field("checked_at", FETCHED_AT, nullable=False),
    ]
)

# One row per provenance record of the service (topic movierec.served), by the answer's UTC time.
SERVED = pa.schema(
    [
        pa.field("request_id", pa.string(), nullable=False),
        pa.field("time", pa.timestamp("ms", tz="UTC"), nullable=False),  # when the service answered
        pa.field("user_id", pa.int64(), nullable=True),  # null: the id was malformed (a 400)
        pa.field("variant", pa.string(), nullable=True),  # null: no experiment in force
        pa.field("model_version", pa.string(), nullable=True),  # the serving id that answered
        pa.field("items", pa.string(), nullable=True),  # the response line, as served
        pa.field("fallback", pa.bool_(), nullable=False),
        pa.field("latency_ms", pa.float64(), nullable=False),
        pa.field("status", pa.int16(), nullable=False),
        pa.field("reason", pa.string(), nullable=True),
        pa.field("client", pa.string(), nullable=True),  # who asked: its address (null: older records)
        *_SOURCE,
    ]
)

# One row per successful answer the site logged (a reco line with status 200) and what the viewer
# did next (movierec.online.outcomes), by the answer's event date.
ANSWER_OUTCOME = pa.schema(
    [
        pa.field("time", EVENT_TIME, nullable=False),  # the reco line's time
        pa.field("user_id", pa.int64(), nullable=False),
        pa.field("items_count", pa.int16(), nullable=False),
        pa.field("request_id", pa.string(), nullable=True),  # the matched served record (null: none)
        pa.field("model_version", pa.string(), nullable=True),
        pa.field("variant", pa.string(), nullable=True),
        pa.field("personalised", pa.bool_(), nullable=True),  # differs from its version's fallback
        pa.field("starts", pa.int16(), nullable=False),  # viewings attributed to this answer
        pa.field("minutes", pa.int32(), nullable=False),  # minutes watched of those viewings
        pa.field("list_starts", pa.int16(), nullable=False),  # of those, of a movie in the list
        pa.field("list_minutes", pa.int32(), nullable=False),
        pa.field("position", pa.int16(), nullable=True),  # 1-based, of the first listed movie started
        pa.field("movie_id", pa.string(), nullable=True),  # that movie
        pa.field("start_time", EVENT_TIME, nullable=True),  # when it started
        pa.field("complete", pa.bool_(), nullable=False),  # its window had closed when computed
        *_SOURCE,  # of the reco line
    ]
)

# Online metrics per period (hour, day), per model version and variant, and over all answers.
ONLINE_METRICS = pa.schema(
    [
        pa.field("granularity", pa.string(), nullable=False),  # "hour" or "day"
        pa.field("period_start", EVENT_TIME, nullable=False),
        pa.field("scope", pa.string(), nullable=False),  # "all" answers, or one "version" (and variant)
        pa.field("model_version", pa.string(), nullable=True),  # null in scope "version": unattributed
        pa.field("variant", pa.string(), nullable=True),
        pa.field("answers", pa.int64(), nullable=False),
        pa.field("users", pa.int64(), nullable=False),
        pa.field("followed_answers", pa.int64(), nullable=False),  # answers with a listed movie started
        pa.field("follow_rate", pa.float64(), nullable=True),
        pa.field("mean_position", pa.float64(), nullable=True),
        pa.field("list_minutes", pa.int64(), nullable=False),
        pa.field("list_minutes_per_answer", pa.float64(), nullable=True),
        pa.field("minutes", pa.int64(), nullable=False),
        pa.field("minutes_per_answer", pa.float64(), nullable=True),
        pa.field("personalised_answers", pa.int64(), nullable=False),
        pa.field("personalised_known", pa.int64(), nullable=False),  # answers whose fallback is known
        pa.field("personalised_share", pa.float64(), nullable=True),
        pa.field("watch_starts", pa.int64(), nullable=False),
        pa.field("list_starts", pa.int64(), nullable=False),
        pa.field("list_start_share", pa.float64(), nullable=True),
        pa.field("complete", pa.bool_(), nullable=False),  # every answer's window had closed
        pa.field("computed_at", pa.timestamp("us", tz="UTC"), nullable=False),
    ]
)

# One row per (account, target) the rating-spam detector flagged in a day's data
# (movierec.security.shilling): what prepare leaves out of training. One file per day, recomputed.
SHILLING_FLAGS = pa.schema(
    [
        pa.field("window_start", EVENT_TIME, nullable=False),  # the data the verdict was on
        pa.field("window_end", EVENT_TIME, nullable=False),
        pa.field("user_id", pa.int64(), nullable=False),  # the flagged account
        pa.field("movie_id", pa.string(), nullable=False),  # the target it pushed (or nuked)
        pa.field("direction", pa.string(), nullable=False),  # "push" (all 5s) or "nuke" (all 1s)
        pa.field("ratings", pa.int32(), nullable=False),  # its ratings of the target in the window
        pa.field("minutes", pa.int32(), nullable=False),  # minutes it watched of the target then
        pa.field("p_value", pa.float64(), nullable=False),  # the target's test
        pa.field("computed_at", pa.timestamp("us", tz="UTC"), nullable=False),
    ]
)

# The typed event tables, by the movielog event kind they hold.
EVENT_TABLES: dict[str, pa.Schema] = {"watch": WATCH, "rate": RATE, "reco": RECO}

TABLES: dict[str, pa.Schema] = {
    "raw": RAW,
    **EVENT_TABLES,
    "quarantine": QUARANTINE,
    "watch_session": WATCH_SESSION,
    "drift": DRIFT,
    "availability": AVAILABILITY,
    "users": USERS,
    "movies": MOVIES,
    "catalog_unknown": UNKNOWN,
    "served": SERVED,
    "answer_outcome": ANSWER_OUTCOME,
    "online_metrics": ONLINE_METRICS,
    "shilling_flags": SHILLING_FLAGS,
}
