"""An experiment's report: Markdown with matplotlib plots, in ``$MOVIEREC_HOME/reports/experiments/<name>/``.

report.md          what was tested, the metrics' definitions, the split check, the power, the
                   results with intervals, and the verdict (or why there is none yet)
report.json        the same numbers
metric.png         the primary metric per variant over time (cumulative, with its 95% interval)
assignment.png     users per variant over time against the configured shares
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only, no display

import matplotlib.pyplot as plt
import pandas as pd

from experiments.analysis import METRICS, SRM_ALPHA
from experiments.control import State
from experiments.evaluation import Analysis
from experiments.promotion import KEEP, Decision
from movierec.files import save_figure, write_text
from movierec.settings import Settings

ONLINE_DEFINITIONS = """\
| step | definition |
| --- | --- |
| metric | whether a viewer starts a movie we recommended soon after we recommended it, at which position, and how long they watch it; per user (the unit the split randomises) |
| data | the site's movielog: reco lines with status 200 (the lists it showed), watch lines (what was streamed); our provenance records (topic `movierec.served`) say which model version and variant answered each request |
| operationalisation | a reco line is matched to the served record of the same user with the same list nearest in time (within `MOVIEREC_ONLINE_MATCH_SECONDS`); a viewing (a movie's watch lines, cut at 30-minute pauses) that starts within `MOVIEREC_ONLINE_WINDOW_MINUTES` after an answer belongs to the latest such answer listing it (a *list start*), else to the latest such answer; per user over the experiment: the metrics below |
"""  # noqa: E501


def report_dir(settings: Settings, name: str) -> Path:
    return settings.reports_dir / "experiments" / name


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.4g}"


def _interval(pair: Any, digits: int = 4, percent: bool = False) -> str:
    if not pair:
        return "-"
    if percent:
        return f"[{pair[0]:+.1%}, {pair[1]:+.1%}]"
    return f"[{pair[0]:+.{digits}f}, {pair[1]:+.{digits}f}]"


def around_one_moment(axis: Any, series: pd.DataFrame) -> None:
    """Two hours around the only time a series has (an experiment shorter than an hour):
    matplotlib would otherwise span years around one point."""
    if "time" in series and series["time"].nunique() == 1:
        moment = pd.to_datetime(series["time"]).iloc[0]
        axis.set_xlim(moment - pd.Timedelta(hours=1), moment + pd.Timedelta(hours=1))


def plot_metric(analysis: Analysis, metric: str, path: Path) -> None:
    series = pd.DataFrame(analysis.series)
    figure, axis = plt.subplots(figsize=(8, 4.5))
    for variant, group in series.groupby("variant", sort=False):
        times = pd.to_datetime(group["time"])
        mean = group["mean"].to_numpy(float)
        # error bars as well as the band: an experiment shorter than an hour has one point, no band
        error = [mean - group["low"].to_numpy(float), group["high"].to_numpy(float) - mean]
        axis.errorbar(times, mean, yerr=error, marker="o", capsize=4, label=variant)
        axis.fill_between(times, group["low"], group["high"], alpha=0.2)
    around_one_moment(axis, series)
    axis.set_title(f"{metric} per variant (cumulative, 95% interval)")
    axis.set_xlabel("time (site)")
    axis.set_ylabel(metric)
    axis.legend()
    figure.autofmt_xdate()
    save_figure(figure, path)


def plot_assignment(analysis: Analysis, state: State, path: Path) -> None:
    series = pd.DataFrame(analysis.series)
    figure, (left, right) = plt.subplots(1, 2, figsize=(10, 4.5))
    for variant, group in series.groupby("variant", sort=False):
        left.plot(pd.to_datetime(group["time"]), group["users"], marker="o", label=variant)
    around_one_moment(left, series)
    left.set_title("users per variant (cumulative)")
    left.legend()
    names = list(analysis.users)
    observed = [analysis.users[n] for n in names]
    expected = [analysis.srm["expected"].get(n, 0) for n in names]
    positions = range(len(names))
    right.bar([p - 0.2 for p in positions], observed, width=0.4, label="observed")
    right.bar([p + 0.2 for p in positions], expected, width=0.4, label="expected from shares")
    right.set_xticks(list(positions), names)
    right.set_title(f"split check: chi-square p = {analysis.srm['p_value']:.3g}")
    right.legend()
    figure.autofmt_xdate()
    save_figure(figure, path)


def render(state: State, analysis: Analysis, decision: Decision) -> str:
    definition = state.definition
    plan = state.power_analysis
    lines = [
        f"# Experiment `{state.name}`",
        "",
        definition.description or "",
        "",
        f"Started {state.started_at} (UTC), planned end {state.planned_end}"
        + (f", stopped {state.stopped_at}" if state.stopped_at else ", running")
        + f". Analysed {analysis.computed_at}: answers of {analysis.window[0]} .. {analysis.window[1]}"
        " (site time).",
        "",
        "| variant | serving | share | users | answers |",
        "| --- | --- | ---: | ---: | ---: |",
        *(
            f"| {v.name}{' (control)' if i == 0 else ''} | `{state.serving[v.name]}` | {v.share:g} | "
            f"{analysis.users.get(v.name, 0):,} | {analysis.answers.get(v.name, 0):,} |"
            for i, v in enumerate(definition.variants)
        ),
        "",
        "## Online metrics (three steps)",
        "",
        ONLINE_DEFINITIONS,
        "| metric | kind | per user |",
        "| --- | --- | --- |",
        *(f"| `{name}` | {spec.kind} | {spec.operationalisation} |" for name, spec in METRICS.items()),
        "",
        f"Primary: `{definition.primary_metric}`; guardrails: "
        + (", ".join(f"`{m}`" for m in definition.guardrail_metrics) or "none")
        + ". Unit of analysis: the user (the unit of randomisation), each user once.",
        "",
        "## Design: test, alpha, power, stopping rule",
        "",
        f"- Tests: two-sided, Welch's t-test for per-user means, two-proportion z-test for per-user "
        f"0/1 outcomes (statsmodels); alpha {definition.alpha:g}"
        + (
            f", split over {len(definition.variants) - 1} challengers (Bonferroni): "
            f"{analysis.power.get('alpha_per_comparison'):g} each"
            if len(definition.variants) > 2
            else ""
        )
        + ".",
        f"- Minimum detectable effect {definition.minimum_detectable_effect:g} (absolute) on "
        f"`{definition.primary_metric}` with power {definition.power:g}; baseline "
        f"{_fmt(plan.get('baseline', {}).get('mean'))} (sd {_fmt(plan.get('baseline', {}).get('sd'))}), "
        f"{plan.get('baseline', {}).get('source', 'not computed')}.",
        f"- Users needed per variant: {state.planned_users or 'given by the definition'}; users now: "
        f"{analysis.users}; power now against the MDE: "
        + ", ".join(f"{k} {v:.2f}" for k, v in analysis.power.get("at_mde", {}).items())
        + ".",
        f"- Stopping rule: {analysis.horizon['rule']}. Horizon reached: **{analysis.horizon['reached']}**"
        + (f" ({analysis.horizon['why']})" if analysis.horizon["why"] else "")
        + ".",
        "",
        "## Split check (sample ratio)",
        "",
        f"Pearson chi-square goodness of fit of users per variant against the shares: statistic "
        f"{analysis.srm['statistic']:.3f}, p = {analysis.srm['p_value']:.3g} "
        f"({'MISMATCH' if analysis.srm['mismatch'] else 'ok'} at {SRM_ALPHA}). Users in more than one "
        f"variant: {analysis.crossovers}; users labelled against the salt's assignment: "
        f"{analysis.mismatched}; "
        f"answers with another variant or serving id in the window: {analysis.other_labels}.",
        "",
        "![assignment](assignment.png)",
        "",
        "## Results",
        "",
        "| metric | role | test | control mean | treatment mean | difference [CI] | relative [CI] | p |",
        "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: |",
        *(
            f"| `{c['metric']}` ({c['treatment']} vs {c['control']}) | {c['role']} | {c['test']} | "
            f"{c['mean_control']:.4f} | {c['mean_treatment']:.4f} | {c['difference']:+.4f} "
            f"{_interval(c['difference_ci'])} | "
            + (
                f"{c['relative']:+.1%} {_interval(c['relative_ci'], percent=True)}"
                if c["relative"] is not None
                else "-"
            )
            + f" | {c['p_value']:.3g} |"
            for c in analysis.comparisons
        ),
        "",
        "![metric](metric.png)",
        "",
        "## Verdict",
        "",
    ]
    if state.verdict:
        recorded = state.verdict
        lines.append(
            f"Decided {recorded.get('at')}: **{recorded.get('verdict')}** ({recorded.get('reason')}); "
            f"logged in the registry next to `{recorded.get('version')}`."
        )
    elif decision.action == KEEP:
        lines.append(f"No decision yet (interim look, not acted on): {decision.reason}")
    else:
        lines.append(f"At the horizon: **{decision.action}**: {decision.reason}")
    if analysis.problems:
        lines += ["", "Problems: " + "; ".join(analysis.problems)]
    return "\n".join(lines) + "\n"


def write(settings: Settings, state: State, analysis: Analysis, decision: Decision) -> Path:
    """The report files; returns the Markdown's path."""
    folder = report_dir(settings, state.name)
    folder.mkdir(parents=True, exist_ok=True)
    if analysis.series:
        plot_metric(analysis, state.definition.primary_metric, folder / "metric.png")
        plot_assignment(analysis, state, folder / "assignment.png")
    data = {
        "state": json.loads(state.to_json()),
        "analysis": analysis.as_dict(),
        "decision": decision.as_dict(),
    }
    write_text(folder / "report.json", json.dumps(data, indent=1, default=str))
    path = folder / "report.md"
    write_text(path, render(state, analysis, decision))
    return path
