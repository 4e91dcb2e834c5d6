"""The fairness report from telemetry, the I/O: read the lake, measure per model version, write
the report, its figure and the gauges.

    movierec fairness report [--version V] [--days 7] [--out DIR] [--json]

Reads, for the ``days`` days up to the newest day of served answers: ``answer_outcome`` (what
viewers watched after each answer: the judge's online metric), ``served`` (the lists we gave,
by model version), ``watch_session`` (what viewers chose), the catalog's ``users`` and
``movies``; and each version's offline fairness section from its ``metrics.json`` if the model
folder is still there. Writes ``fairness.json`` and ``fairness.png`` into ``--out`` (default
``$MOVIEREC_HOME/reports/fairness/``; a re-run replaces them) and ``metrics/fairness.prom``.

The requirements (thresholds in ``movierec.fairness.measures``):

- ``quality_online`` (system): for every gender, age band and occupation with at least 30 users,
  minutes watched of listed movies per answer at least 0.8 x the other users' figure;
- ``quality_offline`` (model): the same for Recall@20 on the model's test window (evaluate);
- ``exposure`` (system): the long tail's and older films' share of list slots at least 0.5 x
  their share of what viewers chose in the same days.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from movierec import lake
from movierec.fairness import measures
from movierec.files import save_figure, write_text
from movierec.models import versions
from movierec.monitoring import textfile
from movierec.settings import Settings

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

log = logging.getLogger("movierec.fairness")

TEXTFILE = "fairness.prom"
REPORT_FILE = "fairness.json"
FIGURE_FILE = "fairness.png"
DEFAULT_DAYS = 7
PLOT_MAX_RATIO = 3.0
REQUIREMENTS = {
    "quality_online": "every group's list minutes per answer >= 0.8 x the other users' (online)",
    "quality_offline": "every group's Recall@20 >= 0.8 x the other users' (model report)",
    "exposure": "long-tail and older films' share of list slots >= 0.5 x their share of choices",
}


class FairnessError(ValueError):
    """Nothing to report on (no served answers in the lake, an unknown version)."""


def out_dir(settings: Settings) -> Path:
    return settings.reports_dir / "fairness"


# --- reading ------------------------------------------------------------------------------------


def window(settings: Settings, days: int) -> tuple[date, date]:
    """(first, last) day: ``days`` days up to the newest day of served answers."""
    if days < 1:
        raise FairnessError(f"--days must be at least 1, got {days}")
    found = lake.days(settings, "served")
    if not found:
        raise FairnessError("the lake holds no served answers yet: nothing to measure")
    last = date.fromisoformat(found[-1])
    return last - timedelta(days=days - 1), last


def read_between(settings: Settings, table: str, first: date, last: date, columns: list[str]) -> pd.DataFrame:
    files = lake.files_between(settings, table, first.isoformat(), last.isoformat())
    return lake.dataset(settings, table, files).to_table(columns=columns).to_pandas()


def read_telemetry(settings: Settings, first: date, last: date) -> dict[str, pd.DataFrame]:
    return {
        "served": read_between(
            settings, "served", first, last, ["user_id", "model_version", "items", "status"]
        ),
        "outcomes": read_between(
            settings, "answer_outcome", first, last, ["user_id", "model_version", "list_minutes", "complete"]
        ),
        "choices": read_between(settings, "watch_session", first, last, ["user_id", "movie_id"]),
        "users": lake.read_table(
            settings, "users", ["user_id", "age", "occupation", "gender", "fetched_at"]
        ).to_pandas(),
        "movies": lake.read_table(
            settings, "movies", ["id", "release_date", "original_language", "fetched_at"]
        )
        .to_pandas()
        .sort_values("fetched_at"),
    }


def offline_section(settings: Settings, serving_id: str) -> dict[str, Any] | None:
    """The fairness section evaluate wrote for the version behind a serving id, if still there."""
    try:
        path = versions.model_dir(settings, serving_id.split("-", 1)[0]) / versions.METRICS_FILE
    except versions.VersionError:
        return None
    if not path.is_file():
        return None
    return json.loads(path.read_text()).get("fairness")


# --- measuring (pure) ---------------------------------------------------------------------------


def slots_of(served: pd.DataFrame) -> pd.DataFrame:
    """(user_id, model_version, movie_id): one row per list slot of every successful answer."""
    answered = served[(served["status"] == 200) & served["items"].notna() & served["user_id"].notna()]
    lists = answered.assign(movie_id=answered["items"].str.split(","))
    slots = lists.explode("movie_id")
    slots = slots[slots["movie_id"].notna() & (slots["movie_id"] != "")]
    return slots[["user_id", "model_version", "movie_id"]].astype({"user_id": "int64"})


def online_quality(outcomes: pd.DataFrame) -> pd.DataFrame:
    """Per (model_version, user): y = list minutes, x = answers (closed windows only)."""
    done = outcomes[outcomes["complete"] & outcomes["model_version"].notna()]
    return done.groupby(["model_version", "user_id"]).agg(
        y=("list_minutes", "sum"), x=("list_minutes", "size")
    )


def measure(telemetry: dict[str, pd.DataFrame], last: date, only: str | None = None) -> dict[str, Any]:
    """Per model version: the online quality by group and the exposure of movie segments."""
    groups = measures.user_groups(telemetry["users"])
    choices = telemetry["choices"]
    segments = measures.movie_segments(telemetry["movies"], choices["movie_id"].value_counts(), last)
    slots = slots_of(telemetry["served"])
    quality = online_quality(telemetry["outcomes"])
    found = sorted(set(slots["model_version"].dropna()) | set(quality.index.get_level_values(0)))
    if only is not None:
        if only not in found:
            raise FairnessError(f"no served answers of model version {only} in the window (found: {found})")
        found = [only]
    result = {}
    for version in found:
        per_user = (
            quality.xs(version, level="model_version")
            if version in quality.index.get_level_values(0)
            else pd.DataFrame({"y": [], "x": []})
        )
        result[version] = {
            "answers": int(per_user["x"].sum()),
            "quality_online": measures.quality_by_group(per_user, groups),
            "exposure": measures.exposure(slots[slots["model_version"] == version], choices, segments),
        }
    return result


def verdicts(version: dict[str, Any]) -> dict[str, bool | None]:
    """Requirement -> breached (None: not measured)."""
    offline = version.get("offline") or {}
    served = offline.get("mitigation") or offline.get("as_evaluated") or {}  # what precompute served
    return {
        "quality_online": version["quality_online"]["breached"]
        if version["quality_online"]["judged"]
        else None,
        "quality_offline": quality["breached"]
        if (quality := served.get("quality")) and quality["judged"]
        else None,
        "exposure": version["exposure"]["breached"] if version["exposure"]["slots"] else None,
    }


# --- writing --------------------------------------------------------------------------------------


def textfile_registry(report: dict[str, Any], computed_at: datetime) -> CollectorRegistry:
    from prometheus_client import CollectorRegistry, Gauge

    registry = CollectorRegistry()
    smallest = Gauge(
        "movierec_fairness_quality_ratio_min",
        "smallest judged ratio of a group's online list minutes per answer to the other users'",
        ["model_version", "attribute"],
        registry=registry,
    )
    exposure = Gauge(
        "movierec_fairness_exposure_ratio",
        "a movie segment's share of list slots over its share of what viewers chose",
        ["model_version", "segment"],
        registry=registry,
    )
    breach = Gauge(
        "movierec_fairness_requirement_breached",
        "1 if the requirement is breached (its whole 95% interval below the threshold), 0 if met",
        ["model_version", "requirement"],
        registry=registry,
    )
    for version, found in report["versions"].items():
        for attribute, data in found["quality_online"]["attributes"].items():
            if data["min_ratio"] is not None:
                smallest.labels(version, attribute).set(data["min_ratio"])
        for segment, data in found["exposure"]["segments"].items():
            if data["ratio"]["value"] is not None:
                exposure.labels(version, segment).set(data["ratio"]["value"])
        for requirement, verdict in found["breached"].items():
            if verdict is not None:
                breach.labels(version, requirement).set(int(verdict))
    Gauge(
        "movierec_fairness_computed_timestamp_seconds", "when the fairness report last ran", registry=registry
    ).set(computed_at.timestamp())
    return registry


def panel_rows(found: dict[str, Any], panel: str) -> list[tuple[str, dict[str, Any]]]:
    """(label, ratio estimate) of one version for one panel of the figure, measured ones only."""
    if panel == "exposure":
        rows = [(name, r["ratio"]) for name, r in found["exposure"]["segments"].items()]
    else:
        groups = found["quality_online"]["attributes"][panel]["groups"]
        rows = [(g["group"], g["ratio"]) for g in groups]
    return [(label, ratio) for label, ratio in rows if ratio["value"] is not None]


def draw(report: dict[str, Any], path: Path) -> None:
    """Per attribute, each group's online quality ratio; and each segment's exposure ratio; one
    colour per model version, 95% intervals, the thresholds dashed."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    panels = [*measures.ATTRIBUTES, "exposure"]
    figure, axes = pyplot.subplots(1, len(panels), figsize=(5 * len(panels), 7))
    names = list(report["versions"])
    for axis, panel in zip(axes, panels, strict=True):
        rows_of = {version: panel_rows(report["versions"][version], panel) for version in names}
        labels = list(dict.fromkeys(label for rows in rows_of.values() for label, _ in rows))
        for offset, version in enumerate(names):
            shown = rows_of[version]
            positions = [labels.index(label) + 0.6 * offset / max(len(names), 1) for label, _ in shown]
            values = [r["value"] for _, r in shown]
            lows = [r["value"] - (r["low"] if r["low"] is not None else r["value"]) for _, r in shown]
            highs = [(r["high"] if r["high"] is not None else r["value"]) - r["value"] for _, r in shown]
            axis.errorbar(values, positions, xerr=[lows, highs], fmt="o", capsize=3, label=version)
        axis.set_yticks(range(len(labels)), labels)
        threshold = report["thresholds"]["exposure_ratio" if panel == "exposure" else "quality_ratio"]
        axis.axvline(threshold, color="red", linestyle="--", linewidth=1)
        axis.axvline(1.0, color="grey", linewidth=0.5)
        axis.set_xlim(0, PLOT_MAX_RATIO)  # a small group's interval can reach 20: beyond 3 it says little
        title = "exposure: slot share / choice share" if panel == "exposure" else f"{panel}: quality / rest"
        axis.set_title(title)
        axis.invert_yaxis()
    axes[0].legend(title="model version", fontsize="small")
    figure.suptitle(f"fairness {report['window'][0]} .. {report['window'][1]} (95% intervals, per user)")
    save_figure(figure, path)


def build(settings: Settings, *, version: str | None = None, days: int = DEFAULT_DAYS) -> dict[str, Any]:
    """The report (JSON-able), nothing written."""
    first, last = window(settings, days)
    telemetry = read_telemetry(settings, first, last)
    found = measure(telemetry, last, version)
    for serving_id, data in found.items():
        data["offline"] = offline_section(settings, serving_id)
        data["breached"] = verdicts(data)
    return {
        "window": [first.isoformat(), last.isoformat()],
        "requirements": REQUIREMENTS,
        "thresholds": {"quality_ratio": measures.QUALITY_RATIO, "exposure_ratio": measures.EXPOSURE_RATIO},
        "method": "ratio of sums over users, delta-method 95% intervals; "
        "breached = the whole interval below the threshold",
        "versions": found,
    }


def write_report(
    settings: Settings, *, version: str | None = None, days: int = DEFAULT_DAYS, out: Path | None = None
) -> dict[str, Any]:
    """Build the report, write JSON + figure into ``out`` and the gauges; what the DAG runs."""
    computed_at = datetime.now(UTC)
    report = build(settings, version=version, days=days) | {"computed_at": computed_at.isoformat()}
    folder = out or out_dir(settings)
    write_text(folder / REPORT_FILE, json.dumps(report, indent=2, default=str) + "\n")
    draw(report, folder / FIGURE_FILE)
    textfile.write(settings, TEXTFILE, textfile_registry(report, computed_at))
    for serving_id, data in report["versions"].items():
        broken = [name for name, verdict in data["breached"].items() if verdict]
        log.info(
            "fairness %s: %s", serving_id, f"BREACHED {', '.join(broken)}" if broken else "requirements met"
        )
    return report | {"files": [str(folder / REPORT_FILE), str(folder / FIGURE_FILE)]}


def summary(report: dict[str, Any]) -> dict[str, Any]:
    """What the DAG task hands to XCom: the window, the verdicts, the files (the report is on disk)."""
    return {
        "window": report.get("window"),
        "breached": {v: d["breached"] for v, d in report.get("versions", {}).items()},
        "files": report.get("files"),
    }


def render(report: dict[str, Any]) -> str:
    """A short text summary (what the command prints)."""
    lines = [f"fairness report {report['window'][0]} .. {report['window'][1]}"]
    for serving_id, data in report["versions"].items():
        lines.append(f"  {serving_id}: {data['answers']} answers with closed windows")
        for attribute, found in data["quality_online"]["attributes"].items():
            smallest = found["min_ratio"]
            shown = "n/a" if smallest is None else f"{smallest:.2f}"
            lines.append(f"    quality {attribute}: smallest group/rest ratio {shown}")
        for segment, found in data["exposure"]["segments"].items():
            ratio = found["ratio"]
            if ratio["value"] is None:
                continue
            interval = "" if ratio["low"] is None else f" [{ratio['low']:.2f}, {ratio['high']:.2f}]"
            slot, choice = found["slot_share"]["value"] or 0.0, found["choice_share"]["value"] or 0.0
            lines.append(
                f"    exposure {segment}: slots {slot:.3f} / choices {choice:.3f} "
                f"= {ratio['value']:.2f}{interval}"
            )
        verdict = ", ".join(
            f"{name} {'n/a' if v is None else ('BREACHED' if v else 'met')}"
            for name, v in data["breached"].items()
        )
        lines.append(f"    requirements: {verdict}")
    lines += [f"  wrote {path}" for path in report.get("files", [])]
    return "\n".join(lines) + "\n"
