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

# The typed event tables, by the movielog event kind they hold.
EVENT_TABLES: dict[str, pa.Schema] = {"watch": WATCH, "rate": RATE, "reco": RECO}

TABLES: dict[str, pa.Schema] = {
    "raw": RAW,
    **EVENT_TABLES,
    "quarantine": QUARANTINE,
    "watch_session": WATCH_SESSION,
    "drift": DRIFT,
    "served": SERVED,
    "answer_outcome": ANSWER_OUTCOME,
    "online_metrics": ONLINE_METRICS,
}
