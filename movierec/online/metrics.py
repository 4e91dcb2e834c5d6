"""Online metrics from per-answer outcomes: hourly and daily rows, and their Prometheus text. Pure.

Per period (hour, day) and per model version and variant (scope ``version``; a null version is the
answers no served record matched, e.g. the site's own baseline), and over every answer (scope
``all``):

    answers, users                  successful answers the site logged, distinct users who got them
    follow_rate                     share of answers after which a listed movie started within the window
    mean_position                   mean 1-based position of the first listed movie started
    list_minutes_per_answer         minutes watched of listed movies started after an answer, per answer
    minutes_per_answer              minutes of every viewing attributed to an answer, per answer
    personalised_share              share of answers (whose version's fallback is known) that are the
                                    user's own list: neither the fallback nor a demographic group line
    list_start_share                of the viewings that started (scope all: in the period, whoever
                                    started them; scope version: attributed to the version's answers),
                                    the share that were of a movie in the answer's list
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any

import pandas as pd
import pyarrow as pa

from movierec.schemas import ONLINE_METRICS

GRANULARITIES = {"hour": "h", "day": "D"}
NO_LABEL = "none"  # Prometheus label for a null version (unattributed) or variant (no experiment)
ALL = "all"


def _ratio(numerator: float, denominator: float) -> float | None:
    return float(numerator) / denominator if denominator else None


def _row(group: pd.DataFrame, starts: tuple[int, int] | None) -> dict[str, Any]:
    answers = len(group)
    followed = int((group["list_starts"] > 0).sum())
    known = group["personalised"].notna()
    watch_starts, list_starts = starts if starts is not None else (
        int(group["starts"].sum()), int(group["list_starts"].sum())
    )  # fmt: skip
    position = group["position"].dropna()
    return {
        "answers": answers,
        "users": int(group["user_id"].nunique()),
        "followed_answers": followed,
        "follow_rate": _ratio(followed, answers),
        "mean_position": float(position.mean()) if len(position) else None,
        "list_minutes": int(group["list_minutes"].sum()),
        "list_minutes_per_answer": _ratio(group["list_minutes"].sum(), answers),
        "minutes": int(group["minutes"].sum()),
        "minutes_per_answer": _ratio(group["minutes"].sum(), answers),
        "personalised_answers": int(group.loc[known, "personalised"].astype(bool).sum()),
        "personalised_known": int(known.sum()),
        "personalised_share": _ratio(group.loc[known, "personalised"].astype(bool).sum(), known.sum()),
        "watch_starts": watch_starts,
        "list_starts": list_starts,
        "list_start_share": _ratio(list_starts, watch_starts),
        "complete": bool(group["complete"].all()),
    }


def aggregate(
    outcomes: pd.DataFrame, starts_by_hour: dict[datetime, tuple[int, int]], computed_at: datetime
) -> pa.Table:
    """``ONLINE_METRICS`` rows of one day's answers.

    ``outcomes``: answer_outcome rows; ``starts_by_hour``: every viewing that started in each hour
    and how many of those were list starts (the denominator of scope ``all``, which counts starts
    by when they happened, whoever started them).
    """
    rows: list[dict[str, Any]] = []
    frame = outcomes.assign(
        model_version=outcomes["model_version"].astype("object"), variant=outcomes["variant"].astype("object")
    )
    for granularity, unit in GRANULARITIES.items():
        periods = pd.to_datetime(frame["time"]).dt.floor(unit)
        starts: dict[pd.Timestamp, list[int]] = {}
        for hour, (total, listed) in starts_by_hour.items():
            key = pd.Timestamp(hour).floor(unit)
            starts.setdefault(key, [0, 0])
            starts[key][0] += total
            starts[key][1] += listed
        for period, group in frame.groupby(periods, sort=True):
            common = {
                "granularity": granularity,
                "period_start": period.to_pydatetime(),
                "computed_at": computed_at,
            }
            total = starts.get(period, [0, 0])
            rows.append(common | {"scope": ALL, "model_version": None, "variant": None}
                        | _row(group, (total[0], total[1])))  # fmt: skip
            keys = [group["model_version"].fillna(NO_LABEL), group["variant"].fillna(NO_LABEL)]
            for (version, variant), part in group.groupby(keys, sort=True):
                rows.append(
                    common
                    | {
                        "scope": "version",
                        "model_version": None if version == NO_LABEL else version,
                        "variant": None if variant == NO_LABEL else variant,
                    }
                    | _row(part, None)
                )
    return pa.Table.from_pylist(rows, schema=ONLINE_METRICS)


# --- Prometheus ----------------------------------------------------------------------------

GAUGES = {
    "answers": "successful answers the site logged",
    "follow_rate": "share of answers after which a listed movie started within the window",
    "mean_position": "mean position (1-based) of the first listed movie started",
    "list_minutes_per_answer": "minutes watched of listed movies started after an answer, per answer",
    "minutes_per_answer": "minutes of every viewing attributed to an answer, per answer",
    "personalised_share": "share of answers that are the user's own list (neither fallback nor group line)",
    "list_start_share": "share of viewings started that were of a movie in the list just shown",
}


def _value(number: Any) -> str:
    if number is None or (isinstance(number, float) and math.isnan(number)):
        return "NaN"
    return repr(float(number))


def _labels(row: dict[str, Any], period: str) -> str:
    version = ALL if row["scope"] == ALL else (row["model_version"] or NO_LABEL)
    variant = ALL if row["scope"] == ALL else (row["variant"] or NO_LABEL)
    return f'period="{period}",model_version="{version}",variant="{variant}"'


def prometheus_text(latest: dict[str, list[dict[str, Any]]], computed_at: datetime) -> str:
    """Gauges of the latest complete hour (``period="hour"``) and of the latest day so far
    (``period="day"``), one series per model version and variant plus ``all``."""
    lines = []
    for name, doc in GAUGES.items():
        lines += [f"# HELP movierec_online_{name} {doc}", f"# TYPE movierec_online_{name} gauge"]
        for period, rows in latest.items():
            lines += [f"movierec_online_{name}{{{_labels(row, period)}}} {_value(row[name])}" for row in rows]
    lines += [
        "# HELP movierec_online_period_start_timestamp_seconds start of the period the gauges describe",
        "# TYPE movierec_online_period_start_timestamp_seconds gauge",
        *(
            f'movierec_online_period_start_timestamp_seconds{{period="{period}"}} '
            f"{pd.Timestamp(rows[0]['period_start']).timestamp():.0f}"
            for period, rows in latest.items()
            if rows
        ),
        "# HELP movierec_online_computed_timestamp_seconds when the online metrics were last computed",
        "# TYPE movierec_online_computed_timestamp_seconds gauge",
        f"movierec_online_computed_timestamp_seconds {computed_at.timestamp():.3f}",
    ]
    return "\n".join(lines) + "\n"


def latest_periods(table: pa.Table) -> dict[str, list[dict[str, Any]]]:
    """The rows of the latest complete hour and of the latest day in ``table``."""
    rows = table.to_pylist()
    hours = [r for r in rows if r["granularity"] == "hour" and r["complete"]]
    days = [r for r in rows if r["granularity"] == "day"]
    latest: dict[str, list[dict[str, Any]]] = {}
    for period, found in (("hour", hours), ("day", days)):
        if found:
            newest = max(r["period_start"] for r in found)
            latest[period] = [r for r in found if r["period_start"] == newest]
    return latest
