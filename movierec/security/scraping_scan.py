"""``movierec security scraping``: the scraping detector (movierec.security.scraping) over the lake.

Reads the ``served`` rows of a UTC time range and the site's ``reco`` lines around it, runs the
detector, and writes (each replaced whole by the next scan):

- ``$MOVIEREC_HOME/metrics/scraping.prom`` for node-exporter, like drift's: the incidents of the
  range per client, their answers, the unlogged answers of all clients, when the scan ran;
- ``$MOVIEREC_HOME/reports/scraping/latest.json`` (the report) and ``latest.png``: per client,
  unlogged answers per second and the share of consecutive ids in each window, flagged windows
  circled, the thresholds drawn.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd

from movierec import lake
from movierec.files import save_figure, write_text
from movierec.monitoring import textfile
from movierec.online import compute
from movierec.online.outcomes import utc_to_site_time
from movierec.security import scraping
from movierec.settings import Settings

PROM_FILE = "scraping.prom"
DEFAULT_HOURS = 24.0


def thresholds_for(settings: Settings, **overrides: float) -> scraping.Thresholds:
    """The detector's thresholds: its defaults, the online metrics' matching tolerance."""
    return scraping.Thresholds(tolerance_seconds=settings.online_match_seconds, **overrides)


def read_inputs(settings: Settings, since: datetime, until: datetime) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(served rows in [since, until) UTC, the site's reco lines around that range)."""
    naive_since, naive_until = since.replace(tzinfo=None), until.replace(tzinfo=None)
    served_files = lake.hour_files(settings, "served", naive_since, naive_until)
    served = compute.read_rows(served_files, "served", scraping.SERVED_COLUMNS, naive_since, naive_until)
    margin = timedelta(seconds=settings.online_match_seconds) + timedelta(hours=1)  # a DST change
    site_since = utc_to_site_time(since, settings.site_timezone) - margin
    site_until = utc_to_site_time(until, settings.site_timezone) + margin
    reco_files = lake.hour_files(settings, "reco", site_since, site_until)
    reco = compute.read_rows(reco_files, "reco", scraping.RECO_COLUMNS, site_since, site_until)
    return served.to_pandas(), reco.to_pandas()


def scan(
    settings: Settings,
    since: datetime | None = None,
    until: datetime | None = None,
    thresholds: scraping.Thresholds | None = None,
) -> dict[str, Any]:
    """Detect over [since, until) (default: the last 24 h), write the gauges; a JSON-able report."""
    until = (until or datetime.now(UTC)).astimezone(UTC)
    since = (since or until - timedelta(hours=DEFAULT_HOURS)).astimezone(UTC)
    if since >= until:
        raise ValueError(f"since {since.isoformat()} is not before until {until.isoformat()}")
    thresholds = thresholds or thresholds_for(settings)
    served, reco = read_inputs(settings, since, until)
    found = scraping.detect(served, reco, thresholds, settings.site_timezone)
    report = {
        "since": since.isoformat(),
        "until": until.isoformat(),
        "served": len(served),
        "site_lines": len(reco),
        "unlogged": found.unlogged,
        "thresholds": vars(thresholds),
        "incidents": [_plain(row) for row in found.incidents.to_dict("records")],
    }
    report["metrics_file"] = str(write_gauges(settings, found, datetime.now(UTC)))
    folder = report_dir(settings)
    folder.mkdir(parents=True, exist_ok=True)
    report["plot"] = str(
        plot(found, thresholds, folder / "latest.png", f"{since:%Y-%m-%d %H:%M} - {until:%H:%M} UTC")
    )
    write_text(folder / "latest.json", json.dumps(report, indent=2, default=str) + "\n")
    return report


def report_dir(settings: Settings) -> Path:
    return settings.reports_dir / "scraping"


def plot(found: scraping.Detection, thresholds: scraping.Thresholds, path: Path, span: str) -> Path:
    """Unlogged answers/s and the consecutive share per window and client; flagged windows circled."""
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    figure, (rate, share) = plt.subplots(2, 1, figsize=(10, 6), sharex=True)
    for client, group in found.windows.groupby("client"):
        rate.plot(group["window_start"], group["rate"], marker=".", label=str(client))
        share.plot(group["window_start"], group["consecutive_share"], marker=".", label=str(client))
        flagged = group[group["flagged"].astype(bool)]
        rate.scatter(flagged["window_start"], flagged["rate"], s=90, facecolors="none", edgecolors="red")
    rate.axhline(thresholds.min_rate, color="grey", linestyle="--", label=f"{thresholds.min_rate:g}/s")
    share.axhline(thresholds.min_consecutive, color="grey", linestyle="--")
    rate.set_yscale("log")  # a window exists only with an answer: rate >= 1/window
    rate.set_ylabel("unlogged answers/s")
    rate.set_title(
        f"answers the site never logged, per client and {thresholds.window_seconds:g} s window ({span})"
    )
    share.set_ylabel(f"share of steps <= {thresholds.max_step} ids")
    share.set_ylim(-0.05, 1.05)
    share.set_xlabel("window start (UTC); red circles: flagged")
    if len(found.windows):
        rate.legend(fontsize="small", loc="best")
        width = pd.Timedelta(seconds=thresholds.window_seconds)
        starts = found.windows["window_start"]
        share.set_xlim(starts.min() - width, starts.max() + width)
    figure.autofmt_xdate()
    save_figure(figure, path)
    return path


def _plain(row: dict[str, Any]) -> dict[str, Any]:
    return {k: v.isoformat() if isinstance(v, pd.Timestamp) else _number(v) for k, v in row.items()}


def _number(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else value


def write_gauges(settings: Settings, found: scraping.Detection, now: datetime) -> Path:
    from prometheus_client import CollectorRegistry, Gauge

    registry = CollectorRegistry()
    per_client = found.incidents.groupby("client")["answers"].agg(["size", "sum"])
    incidents = Gauge(
        "movierec_scraping_incidents",
        "scraping incidents in the scanned range, per client (unlogged answers on consecutive ids)",
        ["client"],
        registry=registry,
    )
    answers = Gauge(
        "movierec_scraping_answers",
        "answers to a client flagged as a scraper in the scanned range",
        ["client"],
        registry=registry,
    )
    for client, row in per_client.iterrows():
        incidents.labels(str(client)).set(float(row["size"]))
        answers.labels(str(client)).set(float(row["sum"]))
    Gauge(
        "movierec_scraping_flagged_clients",
        "clients flagged as scrapers in the scanned range (0: none)",
        registry=registry,
    ).set(len(per_client))
    Gauge(
        "movierec_scraping_unlogged_answers",
        "answers the site never logged in the scanned range, all clients",
        registry=registry,
    ).set(found.unlogged)
    Gauge(
        "movierec_scraping_scan_timestamp_seconds", "when the scraping scan last ran", registry=registry
    ).set(now.timestamp())
    return textfile.write(settings, PROM_FILE, registry)
