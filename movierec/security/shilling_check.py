"""The rating-spam check of one day: read the lake, run the detector, store the flags, export gauges.

    movierec security shilling [--day YYYY-MM-DD] [--until TIME] [--json]

Reads ``rate`` and ``watch_session`` of the day, of its baseline days and of as many days again
before them (the accounts' history), and the flags of earlier days (left out of the baseline);
runs ``movierec.security.shilling.detect``; writes the day's ``shilling_flags`` file (a re-run
replaces it; a day with no ring writes an empty file, so an old verdict never lingers), validates
it in Great Expectations, and writes ``metrics/shilling.prom`` for Prometheus. ``prepare`` leaves
every flagged account's events out of training.
"""

from __future__ import annotations

import logging
from dataclasses import asdict
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
import pyarrow as pa

from movierec import lake
from movierec.monitoring import textfile
from movierec.schemas import SHILLING_FLAGS
from movierec.security import shilling
from movierec.settings import Settings

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

log = logging.getLogger("movierec.security.shilling")

TEXTFILE = "shilling.prom"


class ShillingError(ValueError):
    """A day that cannot be checked (no data in the lake for it)."""


# --- reading --------------------------------------------------------------------------------


def read_frames(settings: Settings, first: date, last: date) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(rates, sessions) of the days ``first`` .. ``last``, the columns the detector reads."""

    def frame(table: str, columns: list[str]) -> pd.DataFrame:
        files = lake.files_between(settings, table, first.isoformat(), last.isoformat())
        return lake.dataset(settings, table, files).to_table(columns=columns).to_pandas()

    return frame("rate", shilling.RATE_COLUMNS), frame("watch_session", shilling.SESSION_COLUMNS)


def earlier_flags(settings: Settings, before: date) -> set[int]:
    """Accounts flagged on days before ``before``."""
    days = [d for d in lake.days(settings, "shilling_flags") if d < before.isoformat()]
    if not days:
        return set()
    files = [lake.shilling_flags_path(settings, d) for d in days]
    table = lake.dataset(settings, "shilling_flags", [f for f in files if f.exists()]).to_table(["user_id"])
    return set(table.column("user_id").to_pylist())


def latest_day(settings: Settings) -> date:
    """The newest day the lake holds ratings for."""
    found = lake.days(settings, "rate")
    if not found:
        raise ShillingError("the lake holds no ratings yet: nothing to check")
    return date.fromisoformat(found[-1])


# --- the check -------------------------------------------------------------------------------


def verdict_for(
    settings: Settings,
    day: date,
    until: datetime | None = None,
    rules: shilling.Rules = shilling.DEFAULT_RULES,
) -> shilling.Verdict:
    """The detector's verdict on ``day`` from its midnight to ``until`` (default: the whole day)."""
    start = shilling.day_start(day)
    end = start + timedelta(days=1) if until is None else min(until, start + timedelta(days=1))
    if end <= start:
        raise ShillingError(f"--until {until} is not after the start of {day}")
    first = day - timedelta(days=2 * rules.baseline_days)  # baseline days and the accounts' history
    rates, sessions = read_frames(settings, first, day)
    if rates.empty and sessions.empty:
        raise ShillingError(f"the lake holds no rate or watch_session rows from {first} to {day}")
    present = {t.date() for t in pd.concat([rates["time"], sessions["first_time"]])}
    baseline_days = shilling.baseline_days_before(start, present, rules)
    baseline = shilling.baseline_counts(rates, sessions, baseline_days, earlier_flags(settings, day), rules)
    return shilling.detect(
        rates, sessions, start, end, baseline=baseline, baseline_days=baseline_days, rules=rules
    )


def flag_rows(verdict: shilling.Verdict, computed_at: datetime) -> pa.Table:
    """The ``shilling_flags`` rows of a verdict: one per (account, target)."""
    rows = []
    for target in verdict.targets:
        for account in target.ring:
            rows.append(
                {
                    "window_start": verdict.start,
                    "window_end": verdict.end,
                    "user_id": account.user_id,
                    "movie_id": target.movie_id,
                    "direction": target.direction,
                    "ratings": account.ratings,
                    "minutes": account.minutes,
                    "p_value": target.p_value,
                    "computed_at": computed_at,
                }
            )
    return pa.Table.from_pylist(rows, schema=SHILLING_FLAGS)


def store_flags(settings: Settings, day: date, table: pa.Table) -> Path:
    path = lake.shilling_flags_path(settings, day.isoformat())
    lake.write_parquet_atomically(table, path)
    return path


def textfile_registry(verdict: shilling.Verdict, computed_at: datetime) -> CollectorRegistry:
    """Gauges of the latest verdict."""
    from prometheus_client import CollectorRegistry, Gauge

    registry = CollectorRegistry()
    values = {
        "targets": ("movies a rating-spam ring pushes or nukes", len(verdict.targets)),
        "flagged_accounts": ("accounts flagged as a rating-spam ring", len(verdict.flagged_accounts)),
        "suspicious_raters": (
            "raters with a one-movie, extreme-rating, no-history profile",
            verdict.suspicious_raters,
        ),
        "history_ok": ("1 if the check had enough baseline days for a verdict", int(verdict.status == "ok")),
        "computed_timestamp_seconds": ("when the rating-spam check last ran", computed_at.timestamp()),
    }
    for name, (doc, value) in values.items():
        Gauge(f"movierec_shilling_{name}", f"{doc} (latest check)", registry=registry).set(value)
    return registry


def check_recent(settings: Settings, days_back: int = 0) -> dict[str, Any]:
    """What the ``rating_spam`` DAG runs: the newest day with ratings (0) or the one before it (1),
    whose last hours the previous runs may not have seen; gauges only for the newest. Nothing to do
    (no such day yet) is not an error."""
    found = lake.days(settings, "rate")
    if len(found) <= days_back:
        log.info(
            "shilling: the lake holds %d days of ratings, nothing to check %d back", len(found), days_back
        )
        return {"day": None, "skipped": f"the lake holds {len(found)} day(s) of ratings"}
    return check_day(settings, date.fromisoformat(found[-1 - days_back]), export=days_back == 0)


def check_day(
    settings: Settings,
    day: date | None = None,
    until: datetime | None = None,
    rules: shilling.Rules = shilling.DEFAULT_RULES,
    *,
    export: bool = True,
    store: bool = True,
) -> dict[str, Any]:
    """Check ``day`` (default: the newest in the lake), store its flags, export the gauges
    (``store`` False: only the report; nothing is written)."""
    from movierec.ingest.quality import validate_frame

    computed_at = datetime.now(UTC)
    day = day or latest_day(settings)
    verdict = verdict_for(settings, day, until, rules)
    written: dict[str, Any] = {"table": None, "gx": None}
    if store:
        table = flag_rows(verdict, computed_at)
        path = store_flags(settings, day, table)
        gx = validate_frame(settings, "shilling_flags", table, f"shilling-{day}")
        written = {"table": lake.relative_path(settings, path), "gx": gx.get("success")}
        if export:
            textfile.write(settings, TEXTFILE, textfile_registry(verdict, computed_at))
    for target in verdict.targets:
        log.warning(
            "SHILLING %s ring of %d accounts on %s (p=%.2g, expected %.2f suspicious raters a day)",
            target.direction, len(target.accounts), target.movie_id, target.p_value, target.expected,
        )  # fmt: skip
    log.info("shilling %s: %s, %d targets", day, verdict.status, len(verdict.targets))
    return report(verdict) | {"day": day.isoformat(), "computed_at": computed_at.isoformat()} | written


# --- the report ------------------------------------------------------------------------------


def report(verdict: shilling.Verdict) -> dict[str, Any]:
    """The verdict as JSON-able data."""
    return {
        "window": [verdict.start.isoformat(), verdict.end.isoformat()],
        "status": verdict.status,
        "baseline_days": [d.isoformat() for d in verdict.baseline_days],
        "tested_movies": verdict.tested_movies,
        "threshold": verdict.threshold,
        "suspicious_raters": verdict.suspicious_raters,
        "flagged_accounts": len(verdict.flagged_accounts),
        "targets": [
            {k: v for k, v in asdict(t).items() if k != "ring"} | {"accounts": list(t.accounts)}
            for t in verdict.targets
        ],
    }


def render(data: dict[str, Any], show_accounts: int = 20) -> str:
    """The report as text, what ``movierec security shilling`` prints."""
    start, end = data["window"]
    out = [
        f"rating-spam check of {data['day']}: data {start} .. {end}",
        f"  baseline days: {', '.join(data['baseline_days']) or 'none'} ({data['status']})",
        f"  {data['tested_movies']} movies tested, per-movie threshold p < {data['threshold']:.2g}; "
        f"{data['suspicious_raters']} suspicious raters",
        "  (suspicious: one movie, all ratings extreme, under 10 minutes watched a rating, no history)",
    ]
    if data["status"] != "ok":
        out.append("  no verdict: too few days of history before this day")
    elif not data["targets"]:
        out.append("  no ring found")
    for t in data["targets"]:
        accounts = t["accounts"]
        shown = ", ".join(str(a) for a in accounts[:show_accounts])
        shown += " ..." if len(accounts) > show_accounts else ""
        before = t["history_mean_rating"]
        history = "never rated" if before is None else f"mean {before:.2f}"
        out += [
            f"  TARGET {t['movie_id']} ({t['direction']}): {len(accounts)} accounts, "
            f"p = {t['p_value']:.2g} (expected {t['expected']:.2f} such raters a day)",
            f"    ratings in the window: {t['ratings']} (mean {t['mean_rating']:.2f}), "
            f"{t['ring_ratings']} by the ring after {t['ring_minutes']} minutes watched; "
            f"before: {t['history_ratings_per_day']:.1f} a day, {history}",
            f"    accounts: {shown}",
        ]
    if data["table"] is None:
        out.append(f"  flags: not stored (--no-store); {data['flagged_accounts']} accounts")
    else:
        out.append(
            f"  flags: {data['table']} ({data['flagged_accounts']} accounts; training leaves them out)"
        )
    return "\n".join(out) + "\n"
