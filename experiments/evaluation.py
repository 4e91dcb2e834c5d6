"""An experiment's analysis from the lake: who was in which variant, the checks of the split, each
challenger against the control on every metric, the power, and whether the horizon is reached.

``analyse`` is pure (frames in, an ``Analysis`` out); ``answers_of`` and ``baseline_users`` read the
lake's ``answer_outcome`` table (movierec.online).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pandas as pd

from experiments import analysis as stats
from experiments.control import State
from experiments.definition import Definition
from experiments.population import assignment_mismatches, cumulative_points, per_user
from movierec.online.compute import read_outcomes
from movierec.online.outcomes import utc_to_site_time
from movierec.settings import Settings
from server.experiment import parse_experiment

MIN_BASELINE_USERS = 100  # fewer users before the start: use the definition's baseline prior
BASELINE_DAYS = 7
MAX_CROSSOVER_SHARE = 0.01  # more users than this seen in two variants: the split is not stable


@dataclass
class Analysis:
    name: str
    computed_at: str
    window: tuple[str, str]  # site local times of the answers analysed
    users: dict[str, int]
    answers: dict[str, int]
    crossovers: int
    mismatched: int  # users whose label differs from the salt's assignment
    other_labels: int  # answers in the window labelled with another variant or serving id
    srm: dict[str, Any]
    comparisons: list[dict[str, Any]]
    power: dict[str, Any]
    horizon: dict[str, Any]
    problems: list[str]
    series: list[dict[str, Any]] = field(default_factory=list)

    @property
    def valid(self) -> bool:
        return not self.problems

    def as_dict(self) -> dict[str, Any]:
        return asdict(self) | {"valid": self.valid}


def planned_users(definition: Definition, baseline: dict[str, Any]) -> dict[str, int]:
    """Users each variant needs (fixed horizon), from the power analysis or the definition."""
    control = definition.control
    if definition.users_per_variant:
        return {v.name: definition.users_per_variant for v in definition.variants}
    kind = stats.METRICS[definition.primary_metric].kind
    needed = {control.name: 0}
    for v in definition.variants[1:]:
        n_c, n_t = stats.users_needed(
            kind, baseline["mean"], baseline.get("sd"), definition.minimum_detectable_effect,
            bonferroni(definition), definition.power, ratio=v.share / control.share,
        )  # fmt: skip
        needed[control.name] = max(needed[control.name], n_c)
        needed[v.name] = n_t
    return needed


def bonferroni(definition: Definition) -> float:
    """The alpha of each challenger-vs-control test (alpha split over the challengers)."""
    return definition.alpha / (len(definition.variants) - 1)


def power_plan(definition: Definition, users: pd.DataFrame) -> dict[str, Any]:
    """The power analysis at the start: baseline of the primary metric (per user, before the start,
    or the definition's prior), the effect size, and the users each variant needs."""
    metric = definition.primary_metric
    if len(users) >= MIN_BASELINE_USERS:
        values = users[metric].to_numpy(float)
        baseline = {
            "mean": float(values.mean()),
            "sd": float(values.std(ddof=1)),
            "users": len(users),
            "source": f"lake: {len(users)} users in the {BASELINE_DAYS} days before the start",
        }
    elif definition.baseline:
        baseline = dict(definition.baseline) | {"source": "the definition's prior (too little history)"}
    elif definition.users_per_variant:
        baseline = {"source": "none: users_per_variant given"}
    else:
        raise ValueError(
            f"no baseline for {metric}: fewer than {MIN_BASELINE_USERS} users in the lake before the start; "
            "give baseline = {mean = ..., sd = ...} or users_per_variant in the definition"
        )
    plan = {
        "metric": metric,
        "kind": stats.METRICS[metric].kind,
        "baseline": baseline,
        "minimum_detectable_effect": definition.minimum_detectable_effect,
        "alpha": definition.alpha,
        "alpha_per_comparison": bonferroni(definition),
        "power": definition.power,
        "test": "two-sided; NormalIndPower (statsmodels)",
    }
    if "mean" in baseline:
        mde = definition.minimum_detectable_effect
        plan["relative_mde"] = mde / baseline["mean"] if baseline["mean"] else None
        if plan["kind"] == stats.MEAN or "sd" in baseline:
            plan["effect_size"] = stats.effect_size(plan["kind"], baseline["mean"], baseline.get("sd"), mde)
    plan["planned_users"] = planned_users(definition, baseline)
    return plan


def _series(
    answers: pd.DataFrame, definition: Definition, start: datetime, end: datetime, alpha: float
) -> list[dict[str, Any]]:
    """The primary metric per variant at cumulative cut-offs, with a normal interval, and the users."""
    metric = definition.primary_metric
    z = float(stats.norm.isf(alpha / 2))
    points = []
    for cut in cumulative_points(pd.Timestamp(start), pd.Timestamp(end)):
        users, _ = per_user(answers[answers["time"] < cut])
        for variant, group in users.groupby("variant"):
            values = group[metric].to_numpy(float)
            half = z * values.std(ddof=1) / math.sqrt(len(values)) if len(values) > 1 else math.nan
            points.append({"time": cut.isoformat(), "variant": variant, "users": len(values),
                           "mean": float(values.mean()), "low": float(values.mean() - half),
                           "high": float(values.mean() + half)})  # fmt: skip
    return points


def analyse(
    state: State, answers: pd.DataFrame, now: datetime, timezone: str, with_series: bool = True
) -> Analysis:
    """The analysis of ``state``'s experiment from its ``answers`` (answer_outcome rows)."""
    definition = state.definition
    start = utc_to_site_time(state.started, timezone)
    end_utc = min(state.stopped or now, now)
    end = utc_to_site_time(end_utc, timezone)
    in_window = answers[(answers["time"] >= start) & (answers["time"] < end) & answers["complete"]]
    labelled = in_window.dropna(subset=["variant"])
    expected_version = labelled["variant"].map(state.serving)
    ours = labelled[expected_version.notna() & (labelled["model_version"] == expected_version)]
    other_labels = len(labelled) - len(ours)
    users, crossovers = per_user(ours)
    experiment = parse_experiment(json.dumps(state.hook()))
    mismatched = assignment_mismatches(users, lambda u: experiment.assign(int(u)).name)

    names = [v.name for v in definition.variants]
    counts = users["variant"].value_counts().to_dict()
    srm = stats.sample_ratio_check({n: int(counts.get(n, 0)) for n in names}, definition.shares)
    problems = []
    if srm.mismatch:
        problems.append(f"sample ratio mismatch: users {srm.observed} vs expected {srm.expected} "
                        f"(chi-square p = {srm.p_value:.2g} < {stats.SRM_ALPHA})")  # fmt: skip
    if len(users) and crossovers / (len(users) + crossovers) > MAX_CROSSOVER_SHARE:
        problems.append(f"{crossovers} users were served by more than one variant")
    if len(users) and mismatched / len(users) > MAX_CROSSOVER_SHARE:
        problems.append(f"{mismatched} users were served another variant than the salt assigns them")

    alpha = bonferroni(definition)
    comparisons = []
    control = definition.control.name
    by_variant = {name: group for name, group in users.groupby("variant")}
    for treatment in names[1:]:
        t, c = by_variant.get(treatment), by_variant.get(control)
        if t is None or c is None or len(t) < 2 or len(c) < 2:
            continue
        for metric in (definition.primary_metric, *definition.guardrail_metrics):
            pair = (treatment, control)
            if stats.METRICS[metric].kind == stats.PROPORTION:
                result = stats.compare_proportions(
                    metric, pair, (int(t[metric].sum()), int(c[metric].sum())), (len(t), len(c)), alpha
                )
            else:
                result = stats.compare_means(metric, pair, t[metric].to_numpy(), c[metric].to_numpy(), alpha)
            comparisons.append(result.as_dict() | {"role": "primary" if metric == definition.primary_metric
                                                   else "guardrail"})  # fmt: skip

    have = {n: int(counts.get(n, 0)) for n in names}
    planned = state.planned_users or {}
    users_reached = bool(planned) and all(have[n] >= planned.get(n, 0) for n in names)
    time_up = now >= datetime.fromisoformat(state.planned_end) or state.stopped is not None
    horizon = {
        "reached": users_reached or time_up,
        "why": "users" if users_reached else ("planned end" if time_up else None),
        "planned_users": planned,
        "users": have,
        "planned_end": state.planned_end,
        "rule": "fixed horizon: one decision, when every variant has its planned users or at the planned end",
    }
    power: dict[str, Any] = {}
    baseline = state.power_analysis.get("baseline", {})
    if "mean" in baseline:
        kind = stats.METRICS[definition.primary_metric].kind
        power = {
            name: stats.power_reached(kind, baseline["mean"], baseline.get("sd"),
                                      definition.minimum_detectable_effect, alpha, have[control], have[name])
            for name in names[1:]
        }  # fmt: skip
    series = _series(ours, definition, start, end, definition.alpha) if with_series and len(ours) else []
    return Analysis(
        name=state.name,
        computed_at=now.astimezone(UTC).isoformat(timespec="seconds"),
        window=(start.isoformat(), end.isoformat()),
        users=have,
        answers={n: int((ours["variant"] == n).sum()) for n in names},
        crossovers=crossovers,
        mismatched=mismatched,
        other_labels=other_labels,
        srm=srm.as_dict(),
        comparisons=comparisons,
        power={"at_mde": power, "alpha_per_comparison": alpha},
        horizon=horizon,
        problems=problems,
        series=series,
    )


# --- I/O -----------------------------------------------------------------------------------


def answers_of(settings: Settings, state: State, now: datetime) -> pd.DataFrame:
    """answer_outcome rows of the experiment's span (site local times)."""
    start = utc_to_site_time(state.started, settings.site_timezone)
    end = utc_to_site_time(min(state.stopped or now, now), settings.site_timezone)
    return read_outcomes(settings, start, end + timedelta(seconds=1)).to_pandas()


def baseline_users(settings: Settings, serving_id: str | None, before: datetime) -> pd.DataFrame:
    """Per-user outcomes of the ``BASELINE_DAYS`` before ``before`` (UTC), of the answers of
    ``serving_id`` when it has enough users, else of every answer (the site's own list included)."""
    end = utc_to_site_time(before, settings.site_timezone)
    frame = read_outcomes(settings, end - timedelta(days=BASELINE_DAYS), end).to_pandas()
    frame = frame[frame["complete"]]
    own = frame[frame["model_version"] == serving_id] if serving_id else frame.iloc[0:0]
    chosen = own if own["user_id"].nunique() >= MIN_BASELINE_USERS else frame
    users, _ = per_user(chosen.assign(variant="baseline"))
    return users
