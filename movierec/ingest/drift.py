"""Drift of each ingest batch against a reference window, on a handful of signals.

    check_drift(settings, batch_id) -> report (JSON-able)

Signals (each a categorical or binned distribution; statistics in movierec.ingest.drift_stats):

    rating              ratings 1..5 of the batch's rate events
    genre_mix           genres of the sessions started in the batch (needs the catalog)
    watch_length        minute index of watch lines, binned: a line at minute m means the viewer
                        got m minutes in, and unlike "minutes per session" it does not depend on
                        how a session is cut into 10-minute batches
    reco_status         recommendation requests by status: 200, 0, other
    unseen_users        distinct users never seen before
    unknown_movies      session starts and ratings of movies never seen before, or that the
                        catalog answered 404 for
    quarantine_reasons  lines by fate: accepted, or quarantined by reason

The reference of the typed signals is the ``MOVIEREC_DRIFT_REFERENCE_DAYS`` days of lake data
before the batch's first event time (the batch's own files excluded), read from ``rate``,
``reco`` and the small ``watch_session`` table (never the minute-per-line ``watch`` table). The
novelty signals compare the batch with the same hours one day earlier, each against a history
of equal length (drift_stats.novelty_against_history). The quarantine mix, which has no event
time, compares with the batches ingested (planned) in the same span before it, from their
manifests. With no reference yet every signal says "not enough data" and nothing is flagged:
the first batches become the reference of the next.

Results: the ``drift`` lake table (``lake/drift/date=<batch date>/part-<batch_id>.parquet``,
replaced by a re-run), ``$MOVIEREC_HOME/metrics/drift.prom`` (Prometheus text, written
atomically), a WARNING line per drifted signal, and a Great Expectations validation (suite
``drift``) of the rows.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds

from movierec import lake
from movierec.files import write_text
from movierec.ingest import drift_stats as stats
from movierec.schemas import DRIFT, TABLES
from movierec.settings import Settings

log = logging.getLogger(__name__)

SIGNALS = (
    "rating",
    "genre_mix",
    "watch_length",
    "reco_status",
    "unseen_users",
    "unknown_movies",
    "quarantine_reasons",
)


class DriftError(ValueError):
    """A batch that cannot be checked (unknown id, or its files are not written yet)."""


# --- where things are -------------------------------------------------------------


def drift_path(settings: Settings, batch_id: str, day: date) -> Path:
    return lake.day_dir(settings, "drift", f"{day:%Y-%m-%d}") / lake.batch_file_name(batch_id)


def metrics_path(settings: Settings) -> Path:
    return settings.home / "metrics" / "drift.prom"


# --- reading the batch and its reference ------------------------------------------------


@dataclass
class Batch:
    batch_id: str
    planned_at: datetime
    lines: int  # raw lines (every line of the batch, accepted or not)
    watch: pa.Table
    rate: pa.Table
    reco: pa.Table
    quarantine: pa.Table
    first_time: datetime | None  # event times of its typed rows (None: it has none)
    last_time: datetime | None


@dataclass
class Reference:
    start: datetime
    end: datetime
    rate: pa.Table  # time, user_id, movie_id, rating
    reco: pa.Table  # time, user_id, status
    sessions: pa.Table  # watch_session rows (user_id, movie_id, first_time, max_minute, minutes_seen)
    lines: int  # raw lines of the batches planned in the window before the batch
    quarantine_reasons: list[str]
    batches: int


def load_batch(settings: Settings, batch_id: str) -> Batch:
    manifest = lake.load_manifest(settings, batch_id)
    if manifest is None:
        raise DriftError(
            f"no ingest batch {batch_id!r} (no manifest {lake.manifest_path(settings, batch_id)})"
        )
    if manifest.state not in ("written", "committed"):
        raise DriftError(f"batch {batch_id} is {manifest.state!r}: its files are not written yet")
    tables = {
        name: lake.read_files(settings, name, [f["path"] for f in manifest.files.get(name, [])])
        for name in ("watch", "rate", "reco", "quarantine")
    }
    times = [tables[name]["time"] for name in ("watch", "rate", "reco") if tables[name].num_rows]
    first = min(pc.min(t).as_py() for t in times) if times else None
    last = max(pc.max(t).as_py() for t in times) if times else None
    return Batch(
        batch_id,
        datetime.fromisoformat(manifest.planned_at) if manifest.planned_at else datetime.now(),
        manifest.counts.get("raw", 0),
        **tables,
        first_time=first,
        last_time=last,
    )


def read_window(
    settings: Settings,
    table: str,
    columns: list[str],
    time_column: str,
    start: datetime,
    end: datetime,
    skip_name: str,
) -> pa.Table:
    """Rows of ``table`` with ``start <= time_column < end``, reading only the days in between."""
    files = lake.files_between(settings, table, f"{start:%Y-%m-%d}", f"{end:%Y-%m-%d}", skip_name=skip_name)
    if not files:
        return TABLES[table].empty_table().select(columns)
    moment = TABLES[table].field(time_column).type
    in_window = (ds.field(time_column) >= pa.scalar(start, moment)) & (
        ds.field(time_column) < pa.scalar(end, moment)
    )
    return lake.dataset(settings, table, files).to_table(columns=columns, filter=in_window)


def earlier_batches(settings: Settings, batch: Batch, days: int) -> list[lake.Manifest]:
    """Committed batches of the same topic planned within ``days`` before ``batch``."""
    since = batch.planned_at - timedelta(days=days)
    found = []
    for manifest in lake.load_manifests(settings):
        if manifest.batch_id == batch.batch_id or manifest.state != "committed" or not manifest.planned_at:
            continue
        planned = datetime.fromisoformat(manifest.planned_at)
        if manifest.topic == settings.topic and since <= planned < batch.planned_at:
            found.append(manifest)
    return found


def load_reference(settings: Settings, batch: Batch) -> Reference:
    days = settings.drift_reference_days
    end = batch.first_time or batch.planned_at
    start = end - timedelta(days=days)
    skip = lake.batch_file_name(batch.batch_id)
    rate = read_window(settings, "rate", ["time", "user_id", "movie_id", "rating"], "time", start, end, skip)
    reco = read_window(settings, "reco", ["time", "user_id", "status"], "time", start, end, skip)
    sessions = read_window(
        settings,
        "watch_session",
        ["user_id", "movie_id", "first_time", "max_minute", "minutes_seen"],
        "first_time",
        start,
        end,
        skip,
    )
    earlier = earlier_batches(settings, batch, days)
    quarantine_files = [f["path"] for m in earlier for f in m.files.get("quarantine", [])]
    reasons = lake.read_files(settings, "quarantine", quarantine_files)["reason"].to_pylist()
    lines = sum(m.counts.get("raw", 0) for m in earlier)
    return Reference(start, end, rate, reco, sessions, lines, reasons, len(earlier))


def movie_genres(settings: Settings) -> dict[str, list[str]]:
    """Movie id -> genre names, from the stored catalog (empty when it has not been fetched yet)."""
    movies = lake.read_table(settings, "movies", columns=["id", "genres"])
    return dict(zip(movies["id"].to_pylist(), movies["genres"].to_pylist(), strict=True))


def missing_movies(settings: Settings, stored: dict[str, list[str]]) -> frozenset[str]:
    """Movie ids the catalog API answered 404 for (and has not returned since)."""
    unknown = lake.read_table(settings, "catalog_unknown")
    ids = unknown.filter(pc.equal(unknown["kind"], "movie"))["id"].to_pylist()
    return frozenset(ids) - stored.keys()


# --- the signals: lake tables -> verdicts ----------------------------------------------------


def session_starts_of_lines(watch: pa.Table) -> pa.Table:
    """Sessions that began in these watch lines (their minute 0): each session counts once, in the
    batch it started in, however many batches its minutes are spread over."""
    return watch.filter(pc.equal(watch["minute"], 0))


def session_starts_of_sessions(sessions: pa.Table) -> pa.Table:
    """The same from watch_session rows: the ones whose streamed minutes begin at 0."""
    first_minute = pc.subtract(pc.add(sessions["max_minute"], 1), sessions["minutes_seen"])
    return sessions.filter(pc.less_equal(first_minute, 0))


def _times(column: pa.ChunkedArray) -> np.ndarray:
    return column.to_numpy().astype("datetime64[us]")


@dataclass(frozen=True)
class Comparison:
    """One signal's two distributions, before the tests."""

    signal: str
    reference: dict[str, float]
    batch: dict[str, float]
    reference_rows: int
    batch_rows: int
    status: str = "ok"


def compute_signals(
    batch: Batch,
    reference: Reference,
    genres: dict[str, list[str]],
    missing_movies: frozenset[str],
    psi_threshold: float,
) -> list[stats.Verdict]:
    """Every signal of ``batch`` against ``reference``; pure (the tables are already read).

    ``genres``: the catalog's movies and their genres; ``missing_movies``: ids it answered 404 for.
    """
    ref, new = reference, batch
    ref_starts = session_starts_of_sessions(ref.sessions)
    new_starts = session_starts_of_lines(new.watch)
    ref_genres, ref_known = stats.genre_counts(ref_starts["movie_id"].to_pylist(), genres)
    new_genres, new_known = stats.genre_counts(new_starts["movie_id"].to_pylist(), genres)
    comparisons = [
        Comparison(
            "rating",
            stats.category_counts(ref.rate["rating"].to_pylist(), stats.RATINGS),
            stats.category_counts(new.rate["rating"].to_pylist(), stats.RATINGS),
            ref.rate.num_rows,
            new.rate.num_rows,
        ),
        Comparison(
            "genre_mix", ref_genres, new_genres, ref_known, new_known, "ok" if genres else "no catalog"
        ),
        Comparison(
            "watch_length",
            stats.minute_counts_of_sessions(
                ref.sessions["max_minute"].to_numpy(), ref.sessions["minutes_seen"].to_numpy()
            ),
            stats.minute_counts_of_lines(new.watch["minute"].to_numpy()),
            ref.sessions.num_rows,
            new.watch.group_by(["user_id", "movie_id"]).aggregate([]).num_rows,  # sessions, in part
        ),
        Comparison(
            "reco_status",
            stats.status_counts(ref.reco["status"].to_pylist()),
            stats.status_counts(new.reco["status"].to_pylist()),
            ref.reco.num_rows,
            new.reco.num_rows,
        ),
        _unseen_users(batch, reference, ref_starts, new_starts),
        _unknown_movies(batch, reference, ref_starts, new_starts, missing_movies),
        Comparison(
            "quarantine_reasons",
            stats.quarantine_counts(ref.lines, ref.quarantine_reasons),
            stats.quarantine_counts(new.lines, new.quarantine["reason"].to_pylist()),
            ref.lines,
            new.lines,
        ),
    ]
    return [
        stats.judge(
            c.signal,
            c.reference,
            c.batch,
            reference_rows=c.reference_rows,
            batch_rows=c.batch_rows,
            psi_threshold=psi_threshold,
            status=c.status,
        )
        for c in comparisons
    ]


def _novelty(
    signal: str,
    batch: Batch,
    ref_times: np.ndarray,
    ref_ids: np.ndarray,
    batch_ids: list[Any],
    *,
    distinct: bool,
    never_known: frozenset[Any] = frozenset(),
) -> Comparison:
    compared = None
    if batch.first_time is not None and batch.last_time is not None:
        span = max(batch.last_time - batch.first_time, timedelta(seconds=1))
        compared = stats.novelty_against_history(
            ref_times,
            ref_ids,
            batch_ids,
            end=np.datetime64(batch.first_time, "us"),
            span=np.timedelta64(span, "us"),
            distinct=distinct,
            never_known=never_known,
        )
    if compared is None:
        return Comparison(signal, {}, {}, 0, 0, "not enough data")
    ref_counts, new_counts = compared
    return Comparison(
        signal, ref_counts, new_counts, int(sum(ref_counts.values())), int(sum(new_counts.values()))
    )


def _unseen_users(
    batch: Batch, reference: Reference, ref_starts: pa.Table, new_starts: pa.Table
) -> Comparison:
    """Distinct users who began something (a reco request, a session, a rating) never seen before.

    Began, on both sides: a batch's lines also hold sessions in progress, whose users began in
    the reference (and would all look known), while the reference's hours a day earlier only
    know when sessions began.
    """
    tables = (reference.rate, reference.reco, ref_starts)
    times = np.concatenate([_times(t["first_time" if t is ref_starts else "time"]) for t in tables])
    ids = np.concatenate([t["user_id"].to_numpy() for t in tables]).astype(np.int64)
    users = set()
    for table in (new_starts, batch.rate, batch.reco):
        users.update(table["user_id"].to_pylist())
    return _novelty("unseen_users", batch, times, ids, sorted(users), distinct=True)


def _unknown_movies(
    batch: Batch,
    reference: Reference,
    ref_starts: pa.Table,
    new_starts: pa.Table,
    missing_movies: frozenset[str],
) -> Comparison:
    """Session starts and ratings of movies never seen before, or that the catalog answered 404 for.

    Not "absent from the catalog": the catalog is synced daily from the ids the lake has seen,
    so the reference is always synced and a fresh batch never is; its new ids would look unknown.
    """
    times = np.concatenate([_times(ref_starts["first_time"]), _times(reference.rate["time"])])
    ids = np.array(ref_starts["movie_id"].to_pylist() + reference.rate["movie_id"].to_pylist(), dtype=object)
    new_ids = new_starts["movie_id"].to_pylist() + batch.rate["movie_id"].to_pylist()
    return _novelty("unknown_movies", batch, times, ids, new_ids, distinct=False, never_known=missing_movies)


# --- results -----------------------------------------------------------------------


def result_rows(
    batch_id: str, computed_at: datetime, verdicts: list[stats.Verdict], psi_threshold: float
) -> pa.Table:
    """Two rows per signal (its PSI and its chi-square), each carrying the signal's verdict."""
    rows = []
    for v in verdicts:
        common = {
            "batch_id": batch_id,
            "computed_at": computed_at,
            "signal": v.signal,
            "reference_rows": v.reference_rows,
            "batch_rows": v.batch_rows,
            "drifted": v.drifted,
        }
        rows.append(common | {"test": "psi", "statistic": v.psi, "p_value": None, "threshold": psi_threshold})
        rows.append(
            common
            | {
                "test": "chi2",
                "statistic": v.chi2,
                "p_value": v.p_value,
                "threshold": stats.P_VALUE_THRESHOLD,
            }
        )
    return pa.Table.from_pylist(rows, schema=DRIFT)


def prometheus_text(batch_id: str, computed_at: datetime, verdicts: list[stats.Verdict]) -> str:
    """Gauges of the latest batch, one series per signal (NaN: not enough data to compare)."""

    def value(number: float | None) -> str:
        return "NaN" if number is None else repr(float(number))

    lines = [
        "# HELP movierec_drift_statistic PSI of the latest ingest batch against its reference, per signal",
        "# TYPE movierec_drift_statistic gauge",
        *(f'movierec_drift_statistic{{signal="{v.signal}"}} {value(v.psi)}' for v in verdicts),
        "# HELP movierec_drift_p_value chi-square p-value of the latest batch against its reference",
        "# TYPE movierec_drift_p_value gauge",
        *(f'movierec_drift_p_value{{signal="{v.signal}"}} {value(v.p_value)}' for v in verdicts),
        "# HELP movierec_drift_flagged 1 if the signal drifted strongly in the latest batch",
        "# TYPE movierec_drift_flagged gauge",
        *(f'movierec_drift_flagged{{signal="{v.signal}"}} {int(v.drifted)}' for v in verdicts),
        "# HELP movierec_drift_computed_timestamp_seconds when drift was last computed",
        "# TYPE movierec_drift_computed_timestamp_seconds gauge",
        f'movierec_drift_computed_timestamp_seconds{{batch_id="{batch_id}"}} {computed_at.timestamp():.3f}',
    ]
    return "\n".join(lines) + "\n"


def store_results(settings: Settings, batch_id: str, day: date, table: pa.Table) -> Path:
    """The batch's drift partition; a re-run replaces it (also if it once landed on another day)."""
    path = drift_path(settings, batch_id, day)
    for old in lake.batch_files(settings, "drift", batch_id):
        if old != path:
            old.unlink()
    lake.write_parquet_atomically(table, path)
    return path


def validate_in_gx(settings: Settings, batch_id: str, table: pa.Table) -> dict[str, Any]:
    """Great Expectations' verdict on the rows (suite ``drift``: ``drifted`` is false)."""
    try:
        from movierec.ingest.quality import validate_frame
    except ModuleNotFoundError as exc:
        if exc.name != "movierec.ingest.quality":
            raise
        log.warning("drift: movierec.ingest.quality is not installed; results not validated in GX")
        return {"status": "unavailable", "reason": "movierec.ingest.quality is not installed"}
    return validate_frame(settings, "drift", table, f"drift-{batch_id}")


def _describe(v: stats.Verdict) -> str:
    if v.psi is None:
        return f"{v.signal}: {v.status} (reference {v.reference_rows} rows, batch {v.batch_rows} rows)"
    return (
        f"{v.signal}: PSI {v.psi:.3f}, chi-square {v.chi2:.1f} p={v.p_value:.3g} "
        f"(reference {v.reference_rows} rows, batch {v.batch_rows} rows)"
    )


def check_drift(settings: Settings, batch_id: str | None) -> dict[str, Any]:
    """Compare batch ``batch_id`` with its reference window; store, export and validate the result."""
    if batch_id is None:
        return {"batch_id": None}
    computed_at = datetime.now(UTC)
    batch = load_batch(settings, batch_id)
    log.info(
        "drift of batch %s: %d lines, events %s .. %s",
        batch_id,
        batch.lines,
        batch.first_time,
        batch.last_time,
    )
    reference = load_reference(settings, batch)
    log.info(
        "reference %s .. %s: %d ratings, %d reco requests, %d sessions; %d earlier batches, %d lines",
        reference.start, reference.end, reference.rate.num_rows, reference.reco.num_rows,
        reference.sessions.num_rows, reference.batches, reference.lines,
    )  # fmt: skip
    genres = movie_genres(settings)
    if not genres:
        log.info("no catalog stored yet: genre_mix cannot be compared")
    threshold = settings.drift_psi_threshold
    verdicts = compute_signals(batch, reference, genres, missing_movies(settings, genres), threshold)
    for v in verdicts:
        if v.drifted:
            log.warning("DRIFT %s > %.2f and p < %g", _describe(v), threshold, stats.P_VALUE_THRESHOLD)
        else:
            log.info("no drift %s", _describe(v))

    table = result_rows(batch_id, computed_at, verdicts, threshold)
    day = (batch.first_time or batch.planned_at).date()
    path = store_results(settings, batch_id, day, table)
    # written whole: a scraper never reads half of it
    write_text(metrics_path(settings), prometheus_text(batch_id, computed_at, verdicts))
    gx = validate_in_gx(settings, batch_id, table)
    drifted = [v.signal for v in verdicts if v.drifted]
    log.info("drift of batch %s: %s", batch_id, f"DRIFTED {drifted}" if drifted else "no drift")
    return {
        "batch_id": batch_id,
        "computed_at": computed_at.isoformat(),
        "reference": {"start": reference.start.isoformat(), "end": reference.end.isoformat()},
        "signals": {
            v.signal: {
                "status": v.status,
                "psi": v.psi,
                "chi2": v.chi2,
                "p_value": v.p_value,
                "drifted": v.drifted,
                "reference_rows": v.reference_rows,
                "batch_rows": v.batch_rows,
            }
            for v in verdicts
        },
        "any_drift": bool(drifted),
        "drifted": drifted,
        "gx": gx,
        "table": lake.relative_path(settings, path),
        "metrics": str(metrics_path(settings)),
    }
