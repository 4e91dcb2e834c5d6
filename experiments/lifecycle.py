"""What the ``movierec experiment`` command and the DAGs call: start (with its power analysis),
status, stop, report, decide, and the retrain's canary.

    start_experiment(settings, definition)     power analysis from the lake, then control.start
    status(settings)                           the experiment in force, interim numbers, the service's view
    stop_experiment(settings, name)            the hook removed, the report written
    write_report(settings, name)               the report of one experiment, now
    write_reports(settings)                    the DAG: reports of the experiment in force and of any
                                               whose state changed since its report
    decide_experiment(settings)                the DAG: the verdict on the experiment in force, carried
                                               out if its definition says ``auto_decide``
    canary_candidate(settings, version)        the retrain DAG: the candidate whose own serving file a
                                               canary of ``version`` needs, if any
    publish_or_canary(settings, version)       the retrain DAG: the first model is published (and its
                                               challenger, if another candidate, goes out as a canary
                                               against it); later ones go out as a canary against
                                               ``current``
"""

from __future__ import annotations

import logging
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from experiments import control, evaluation, promotion, report
from experiments.definition import CURRENT, Definition, VariantSpec, load
from movierec import serving_file
from movierec.models import registry, versions
from movierec.settings import Settings

log = logging.getLogger(__name__)

CANARY_TEMPLATE = "canary"
CANARY_PREFIX = "canary-"


def _now(now: datetime | None) -> datetime:
    return (now or datetime.now(UTC)).astimezone(UTC)


def start_experiment(
    settings: Settings, definition: Definition, now: datetime | None = None
) -> control.State:
    """The power analysis on the control's recent per-user outcomes, then the experiment switched on."""
    moment = _now(now)
    control_serving = control.resolve_serving(settings, definition.control.serving)
    users = evaluation.baseline_users(settings, control_serving, moment)
    plan = evaluation.power_plan(definition, users)
    log.info("experiment %s: %s", definition.name, plan)
    return control.start(settings, definition, power_analysis=plan, now=moment)


def analysed(settings: Settings, state: control.State, now: datetime | None = None) -> tuple[Any, Any]:
    moment = _now(now)
    answers = evaluation.answers_of(settings, state, moment)
    result = evaluation.analyse(state, answers, moment, settings.site_timezone)
    return result, promotion.decide(state, result)


def status(settings: Settings, now: datetime | None = None) -> dict[str, Any]:
    state = control.running(settings)
    body: dict[str, Any] = {"in_force": control.in_force(settings), "service": control.service_view(settings)}
    if state is None:
        body["experiments"] = [
            {"name": s.name, "started_at": s.started_at, "stopped_at": s.stopped_at,
             "verdict": (s.verdict or {}).get("verdict")}
            for s in control.all_states(settings)
        ]  # fmt: skip
        return body
    result, decision = analysed(settings, state, now)
    body |= {
        "name": state.name,
        "serving": state.serving,
        "started_at": state.started_at,
        "planned_end": state.planned_end,
        "planned_users": state.planned_users,
        "users": result.users,
        "srm": result.srm,
        "problems": result.problems,
        "interim": [
            {k: c[k] for k in ("metric", "treatment", "difference", "difference_ci", "p_value")}
            for c in result.comparisons
        ],
        "decision": decision.as_dict() | {"note": "interim: shown, not acted on" if decision.action ==
                                          promotion.KEEP else "at the horizon"},
    }  # fmt: skip
    return body


def write_report(settings: Settings, name: str, now: datetime | None = None) -> str:
    state = control.load_state(settings, name)
    result, decision = analysed(settings, state, now)
    return str(report.write(settings, state, result, decision))


def stop_experiment(
    settings: Settings, name: str | None = None, now: datetime | None = None
) -> dict[str, Any]:
    state = control.stop(settings, name, now=_now(now))
    return {"stopped": state.name, "at": state.stopped_at, "report": write_report(settings, state.name, now)}


def write_reports(settings: Settings, now: datetime | None = None) -> dict[str, Any]:
    """Reports of the experiment in force and of every experiment whose state changed since."""
    written = []
    forced = control.in_force(settings)
    for state in control.all_states(settings):
        page = report.report_dir(settings, state.name) / "report.md"
        changed = (
            not page.exists()
            or control.state_path(settings, state.name).stat().st_mtime > page.stat().st_mtime
        )
        if state.name == forced or changed:
            written.append(write_report(settings, state.name, now))
    return {"reports": written}


def decide_experiment(settings: Settings, now: datetime | None = None) -> dict[str, Any]:
    """The verdict on the experiment in force; carried out only if its definition says auto_decide."""
    state = control.running(settings)
    if state is None:
        return {"experiment": control.in_force(settings), "action": None}
    _, decision = analysed(settings, state, now)
    body = {"experiment": state.name, "decision": decision.as_dict()}
    if state.definition.auto_decide:
        body["applied"] = promotion.apply(settings, state, decision)
    return body


def canary_definition(settings: Settings, serving_id: str) -> Definition:
    """The repository's canary template with the challenger filled in and ``current`` as control."""
    template = load(CANARY_TEMPLATE)
    variants = (
        VariantSpec(template.variants[0].name, CURRENT, template.variants[0].share),
        VariantSpec(template.variants[1].name, serving_id, template.variants[1].share),
    )
    return replace(template, name=f"{CANARY_PREFIX}{serving_id}".lower(), variants=variants)


def canary_candidate(settings: Settings, version: str) -> str | None:
    """The candidate of ``version`` a canary will test from its own serving file: the challenger
    evaluate named (``spark_jobs.compare.challenger``) when it is not the chosen candidate. A first
    model needs it too: its chosen candidate is published and its challenger tested against it."""
    return versions.challenger_of(settings, version)


def publish_or_canary(
    settings: Settings, version: str, *, force: bool = False, serving_id: str | None = None
) -> str:
    """The retrain's last step. With nothing current (or ``force``) the version is published behind
    the offline gate; otherwise a serving file goes out as a canary experiment against the current
    model, judged later by ``decide_experiment``: ``serving_id``, by default that of the challenger
    evaluate named (``canary_candidate``), else the version's own.

    A first model's challenger, when it is another candidate, goes out as a canary against the
    model just published: offline measures on a log written under the site's popularity list
    favour that list, so the personalised challenger is judged on live traffic from the start
    instead of waiting for the next retrain (and a newcomer sees lists that differ by user)."""
    if force or registry.current_version(settings) is None:
        published = registry.publish(settings, version, force=force).describe()
        candidate = canary_candidate(settings, version)
        if force or candidate is None:
            return published
        return f"{published}; {_canary(settings, serving_file.serving_id(version, candidate))}"
    challenger = serving_id or serving_file.serving_id(version, canary_candidate(settings, version))
    return _canary(settings, challenger)


def _canary(settings: Settings, challenger: str) -> str:
    """``challenger``'s serving file out as a canary against ``current``, superseding an earlier
    canary (rolled back with that as its evidence); not started while another experiment is in force."""
    forced = control.in_force(settings)
    if forced is not None:
        previous = control.running(settings)
        if previous is None or not forced.startswith(CANARY_PREFIX):
            message = f"canary of {challenger} not started: experiment {forced!r} is in force"
            log.warning("%s; its serving file stays for a later experiment", message)
            return message
        result, _ = analysed(settings, previous)
        superseded = promotion.Decision(promotion.ROLLBACK, f"superseded by the canary of {challenger}",
                                        None, promotion.evidence_of(previous, result, None))  # fmt: skip
        promotion.apply(settings, previous, superseded)
    state = start_experiment(settings, canary_definition(settings, challenger))
    return f"canary {state.name} started: {state.serving}, users needed {state.planned_users}"
