"""``movierec feedback report``: the feedback-loop measures of a running system, from its lake.

Per day (the period; a retrain a day makes it per retrain too, and the report names the model
versions that answered that day):

- exposure: the ``served`` table (the service's provenance records), every slot of every
  successful answer;
- watches: the ``watch_session`` table, one viewing per row, by the day it started;
- the share of starts that came from our lists: the ``online_metrics`` table's day rows over all
  answers (``list_starts`` / ``watch_starts``, movierec.online; null where not computed yet);
- genres: the catalog's ``movies`` table.

Writes ``reports/feedback/feedback-loops.json`` and ``feedback-loops.png`` and the newest day's
figures as gauges in ``metrics/feedback.prom`` (docs/feedback-loops.md).
"""

from __future__ import annotations

import json
import logging
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
import pyarrow.compute as pc

from movierec import lake
from movierec.feedback import measures
from movierec.files import save_figure, write_text
from movierec.monitoring import textfile
from movierec.online import compute as online_compute
from movierec.settings import Settings

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

log = logging.getLogger(__name__)

TEXTFILE = "feedback.prom"
REPORT_NAME = "feedback-loops"
PLOTTED = (
    ("exposure_gini", "exposure Gini"),
    ("watch_gini", "watch Gini"),
    ("exposure_top20", "exposure top-20 share"),
    ("watch_top20", "watch top-20 share"),
    ("list_share", "starts from our lists"),
    ("genre_entropy", "genre entropy per user (bits)"),
)


class FeedbackError(RuntimeError):
    """The lake cannot give a report (the message says why)."""


def report_dir(settings: Settings) -> Path:
    return settings.reports_dir / "feedback"


# --- reading --------------------------------------------------------------------------------------


def read_served(settings: Settings, first: str, last: str) -> pd.DataFrame:
    """Successful answers of the days ``first`` .. ``last``: day, model_version, items (a list)."""
    files = lake.files_between(settings, "served", first, last)
    table = lake.dataset(settings, "served", files).to_table(
        columns=["time", "model_version", "items", "status"]
    )
    table = table.filter(pc.equal(table.column("status"), 200))
    frame = table.to_pandas()
    frame["day"] = pd.to_datetime(frame["time"]).dt.strftime("%Y-%m-%d")
    frame["items"] = [[] if line is None else [i for i in line.split(",") if i] for line in frame["items"]]
    return frame[["day", "model_version", "items"]]


def read_watches(settings: Settings, first: str, last: str) -> pd.DataFrame:
    """Viewings (watch sessions) started on the days ``first`` .. ``last``: day, user_id, movie_id."""
    files = lake.files_between(settings, "watch_session", first, last)
    frame = (
        lake.dataset(settings, "watch_session", files)
        .to_table(columns=["user_id", "movie_id", "first_time"])
        .to_pandas()
    )
    frame["day"] = pd.to_datetime(frame["first_time"]).dt.strftime("%Y-%m-%d")
    return frame[["day", "user_id", "movie_id"]]


def read_starts(settings: Settings) -> dict[str, tuple[int, int]]:
    """Day -> (watch starts, list starts) of the online metrics over all answers."""
    table = online_compute.read_metrics(settings).to_pandas()
    rows = table[(table["granularity"] == "day") & (table["scope"] == "all")]
    return {
        f"{row.period_start:%Y-%m-%d}": (int(row.watch_starts), int(row.list_starts))
        for row in rows.itertuples()
    }


def read_genres(settings: Settings) -> dict[str, list[str]]:
    """Movie id -> genres, from the catalog's movies table (newest row per movie)."""
    table = lake.read_table(settings, "movies", ["id", "genres", "fetched_at"]).to_pandas()
    table = table.sort_values("fetched_at").drop_duplicates("id", keep="last")
    return {movie: list(genres) for movie, genres in zip(table["id"], table["genres"], strict=True)}


# --- the report -------------------------------------------------------------------------------------


def daily_measures(
    served: pd.DataFrame,
    watches: pd.DataFrame,
    starts: dict[str, tuple[int, int]],
    genres: dict[str, list[str]],
) -> list[dict[str, Any]]:
    """One row per day of ``served`` or ``watches``: the day, its model versions and its measures."""
    catalog = sorted(set(genres) | {i for items in served["items"] for i in items} | set(watches["movie_id"]))
    rows = []
    for day in sorted(set(served["day"]) | set(watches["day"])):
        answers = served[served["day"] == day]
        known = starts.get(day)
        result = measures.period_measures(
            (item for items in answers["items"] for item in items),
            watches[watches["day"] == day],
            catalog,
            genres,
            starts=None if known is None else known[0],
            list_starts=None if known is None else known[1],
        )
        versions = sorted(str(v) for v in answers["model_version"].dropna().unique())
        rows.append({"day": day, "model_versions": versions, "answers": len(answers), **result.to_json()})
    return rows


def feedback_report(settings: Settings, days: int = 14, until: date | None = None) -> dict[str, Any]:
    """The measures of the last ``days`` days (up to ``until``, default the newest); writes the
    JSON, the plot and the gauges; returns the report."""
    known = sorted(set(lake.days(settings, "served")) | set(lake.days(settings, "watch_session")))
    if until is not None:
        known = [d for d in known if d <= until.isoformat()]
    if not known:
        raise FeedbackError("the lake holds no served answers and no watch sessions yet: nothing to measure")
    wanted = known[-days:]
    first, last = wanted[0], wanted[-1]
    rows = daily_measures(
        read_served(settings, first, last), read_watches(settings, first, last), read_starts(settings),
        read_genres(settings),
    )  # fmt: skip
    report = {"first_day": first, "last_day": last, "days": rows}
    folder = report_dir(settings)
    write_text(folder / f"{REPORT_NAME}.json", json.dumps(report, indent=2) + "\n")
    save_figure(figure(rows), folder / f"{REPORT_NAME}.png")
    textfile.write(settings, TEXTFILE, registry(rows[-1]))
    log.info("feedback report: %d days %s..%s into %s", len(rows), first, last, folder)
    return report


def summary(report: dict[str, Any]) -> dict[str, Any]:
    """What the DAG task hands to XCom (the report itself is on disk)."""
    return {"first_day": report["first_day"], "last_day": report["last_day"], "days": len(report["days"])}


def registry(newest: dict[str, Any]) -> CollectorRegistry:
    """Gauges of the newest day's measures (an unknown list share is left out)."""
    from prometheus_client import CollectorRegistry, Gauge

    registry = CollectorRegistry()
    for key, label in (*PLOTTED, ("genres_per_user", "distinct genres per user")):
        value = newest[key]
        if value is not None:
            Gauge(f"movierec_feedback_{key}", f"{label}, newest day of the lake", registry=registry).set(
                value
            )
    return registry


def figure(rows: list[dict[str, Any]]) -> Any:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    fig, axes = pyplot.subplots(2, 3, figsize=(13, 6.5))
    days = [row["day"] for row in rows]
    for ax, (key, label) in zip(axes.flat, PLOTTED, strict=True):
        values = [float("nan") if row[key] is None else row[key] for row in rows]
        ax.plot(days, values, marker="o")
        ax.set_title(label, fontsize=10)
        ax.tick_params(axis="x", labelrotation=45, labelsize=7)
    fig.suptitle(f"Feedback-loop measures per day, {days[0]} .. {days[-1]}")
    return fig


def render(report: dict[str, Any]) -> str:
    """The report as a table a person reads."""
    lines = [
        "| day | answers | exposure Gini | exposure top-20 | watches | watch Gini | watch top-20 "
        "| from our lists | genres/user | genre entropy |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in report["days"]:
        share = "-" if r["list_share"] is None else f"{100 * r['list_share']:.1f}%"
        lines.append(
            f"| {r['day']} | {r['answers']:,} | {r['exposure_gini']:.3f} | {r['exposure_top20']:.3f} "
            f"| {r['watches']:,} | {r['watch_gini']:.3f} | {r['watch_top20']:.3f} | {share} "
            f"| {r['genres_per_user']:.2f} | {r['genre_entropy']:.2f} |"
        )
    return "\n".join(lines) + "\n"
