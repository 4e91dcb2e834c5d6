"""Promotion by online evidence: the verdict on an experiment, and carrying it out.

``decide`` (pure) turns an analysis into one of three actions:

- ``rollback`` at once if the split is broken (sample-ratio mismatch, users in two variants, or
  labels that disagree with the salt): nothing measured on a broken split can be trusted;
- ``keep_running`` before the fixed horizon (no decision on interim looks: alpha stays honest);
- at the horizon, ``promote`` the challenger whose primary metric is significantly better than the
  control's (two-sided, alpha split over the challengers) and none of whose guardrails is
  significantly worse; otherwise ``rollback`` (the incumbent keeps serving: a challenger must win).

``apply`` makes it so: promote = publish the challenger's serving file as ``current`` (the offline
gate is overridden: the experiment is the judge) and end the experiment; rollback = end the
experiment, ``current`` untouched. Either way the evidence (effect, interval, p-value, SRM check)
goes into the registry's log next to the challenger's serving id, and into the experiment's state.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from typing import Any

from experiments import control
from experiments.control import State
from experiments.evaluation import Analysis
from movierec.models import registry
from movierec.settings import Settings

log = logging.getLogger(__name__)

PROMOTE, ROLLBACK, KEEP = "promote", "rollback", "keep_running"


@dataclass(frozen=True)
class Decision:
    action: str
    reason: str
    challenger: str | None = None  # the variant promoted, if any
    evidence: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _harm(comparisons: list[dict[str, Any]], treatment: str) -> list[dict[str, Any]]:
    mine = [c for c in comparisons if c["treatment"] == treatment and c["role"] == "guardrail"]
    return [c for c in mine if c["significant"] and c["difference"] < 0]


def evidence_of(state: State, analysis: Analysis, treatment: str | None) -> dict[str, Any]:
    """What the registry keeps: the primary comparison of ``treatment``, its guardrails, the split."""
    mine = [c for c in analysis.comparisons if treatment is None or c["treatment"] == treatment]
    primary = next((c for c in mine if c["role"] == "primary"), None)
    evidence: dict[str, Any] = {
        "experiment": state.name,
        "control": state.serving[state.definition.control.name],
        "serving": {name: state.serving[name] for name in state.serving},
        "users": analysis.users,
        "srm": {k: analysis.srm[k] for k in ("statistic", "p_value", "mismatch", "threshold")},
        "problems": analysis.problems,
        "horizon": {k: analysis.horizon[k] for k in ("reached", "why", "planned_users")},
    }
    if primary is not None:
        evidence |= {
            "metric": primary["metric"],
            "test": primary["test"],
            "effect": primary["difference"],
            "interval": list(primary["difference_ci"]),
            "relative_effect": primary["relative"],
            "relative_interval": None if primary["relative_ci"] is None else list(primary["relative_ci"]),
            "p_value": primary["p_value"],
            "alpha": primary["alpha"],
            "means": {
                primary["control"]: primary["mean_control"],
                primary["treatment"]: primary["mean_treatment"],
            },
        }
    evidence["guardrails"] = [
        {k: c[k] for k in ("metric", "difference", "difference_ci", "p_value", "significant")}
        for c in mine
        if c["role"] == "guardrail"
    ]
    return evidence


def decide(state: State, analysis: Analysis) -> Decision:
    """Promote, roll back or keep running, from an experiment's analysis."""
    everything = evidence_of(state, analysis, None)
    if analysis.problems:
        return Decision(ROLLBACK, "invalid split: " + "; ".join(analysis.problems), None, everything)
    horizon = analysis.horizon
    if not horizon["reached"]:
        waiting = (
            f"users {analysis.users} of {horizon['planned_users']}, planned end {horizon['planned_end']}"
        )
        return Decision(KEEP, f"before the horizon: {waiting}")
    primaries = [c for c in analysis.comparisons if c["role"] == "primary"]
    if not primaries:
        return Decision(ROLLBACK, "horizon reached without users to compare", None, everything)
    better = [c for c in primaries if c["significant"] and c["difference"] > 0]
    winners = [c for c in better if not _harm(analysis.comparisons, c["treatment"])]
    if winners:
        best = max(winners, key=lambda c: c["difference"])
        reason = (
            f"{best['treatment']} beats {best['control']} on {best['metric']}: "
            f"{best['difference']:+.4f} [{best['difference_ci'][0]:+.4f}, {best['difference_ci'][1]:+.4f}], "
            f"p = {best['p_value']:.3g} < {best['alpha']:g}; no guardrail significantly worse"
        )
        return Decision(PROMOTE, reason, best["treatment"], evidence_of(state, analysis, best["treatment"]))
    parts = []
    for c in primaries:
        harm = _harm(analysis.comparisons, c["treatment"])
        if harm:
            parts.append(
                f"{c['treatment']}: guardrail {', '.join(h['metric'] for h in harm)} significantly worse"
            )
        elif c["significant"]:
            parts.append(f"{c['treatment']}: significantly worse on {c['metric']} ({c['difference']:+.4f})")
        else:
            parts.append(
                f"{c['treatment']}: no significant difference on {c['metric']} "
                f"({c['difference']:+.4f}, p = {c['p_value']:.3g})"
            )
    treatment = primaries[0]["treatment"] if len(primaries) == 1 else None
    reason = "; ".join(parts) + ": the incumbent stays"
    return Decision(ROLLBACK, reason, None, evidence_of(state, analysis, treatment))


def apply(settings: Settings, state: State, decision: Decision) -> dict[str, Any]:
    """Carry ``decision`` out; what was done (nothing for keep_running)."""
    if decision.action == KEEP:
        return {"action": KEEP, "reason": decision.reason}
    done: dict[str, Any] = {"action": decision.action, "reason": decision.reason}
    if decision.action == PROMOTE:
        assert decision.challenger is not None
        serving_id = state.serving[decision.challenger]
        try:
            outcome = registry.promote(settings, serving_id, f"won experiment {state.name}")
        except registry.PublishRefused as exc:
            stopped = control.stop(settings, state.name)
            entry = registry.append_evidence(
                settings, serving_id, decision.evidence | {"verdict": "promote_failed", "error": str(exc)}
            )
            control.record_verdict(settings, stopped, entry)
            raise
        done["published"] = outcome.describe()
    stopped = control.stop(settings, state.name)
    challengers = (
        [decision.challenger] if decision.challenger else [v.name for v in state.definition.variants[1:]]
    )
    entries = [
        registry.append_evidence(
            settings,
            state.serving[name],
            decision.evidence | {"verdict": decision.action, "reason": decision.reason},
        )
        for name in challengers
    ]
    control.record_verdict(settings, stopped, entries[0])
    done["evidence"] = entries
    log.info("experiment %s: %s (%s)", state.name, decision.action, decision.reason)
    return done
