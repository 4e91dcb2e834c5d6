"""Experiments end to end on disk: a definition checked and started through the service's hook, the
verdict from per-user outcomes in the lake, promotion or rollback carried out with the evidence in the
registry's log, the canary of a retrain, and the report with its plots.

Serving files are hand-made (tests/test_server_store.py's ``write_serving_file``); the outcomes are
written as the online-metrics task writes them, labelled by the experiment's own salt.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from experiments import control, lifecycle, promotion
from experiments.definition import DefinitionError, parse
from movierec import lake
from movierec import settings as settings_module
from movierec.models import registry, versions
from movierec.online import compute
from movierec.schemas import ANSWER_OUTCOME
from server.experiment import parse_experiment
from tests.test_registry import write_candidate_file, write_version
from tests.test_server_store import point_current, write_serving_file

INCUMBENT, CHALLENGER = "20261128T040000Z", "20261129T040000Z"
STARTED = datetime(2026, 11, 20, 8, tzinfo=UTC)
DECIDED = datetime(2026, 11, 21, 8, tzinfo=UTC)

DEFINITION = f"""
name = "trial"
primary_metric = "follow_rate"
guardrail_metrics = ["minutes_per_answer"]
alpha = 0.05
minimum_detectable_effect = 0.1
users_per_variant = 300
planned_days = 7
auto_decide = true

[[variants]]
name = "control"
serving = "current"
share = 0.5

[[variants]]
name = "treatment"
serving = "{CHALLENGER}"
share = 0.5
"""


@pytest.fixture
def site(tmp_path: Path) -> settings_module.Settings:
    settings = settings_module.load(
        {"MOVIEREC_HOME": str(tmp_path), "MOVIEREC_SITE_TIMEZONE": "UTC", "MOVIEREC_SERVER_PORT": "9"}
    )
    for version in (INCUMBENT, CHALLENGER):
        write_serving_file(settings.serving_dir, version, range(1, 2_001))
    point_current(settings.serving_dir, INCUMBENT)
    return settings


def assigner(state: control.State):
    experiment = parse_experiment(json.dumps(state.hook()))
    return lambda user: experiment.assign(user).name


def write_outcomes(
    settings: settings_module.Settings,
    state: control.State,
    follow: dict[str, list[float]],
    label: object = None,
) -> None:
    """One answer a user, 09:00 onwards, users 1.. labelled by the salt (or by ``label(user)``);
    the k-th user of a variant follows with follow[variant][k] (0/1), watching 40 minutes if so."""
    assign = label or assigner(state)
    rows, seen = [], {name: 0 for name in follow}
    user = 0
    while any(seen[name] < len(values) for name, values in follow.items()):
        user += 1
        variant = assign(user)
        k = seen[variant]
        if k >= len(follow[variant]):
            continue
        seen[variant] += 1
        followed = int(follow[variant][k])
        moment = datetime(2026, 11, 20, 9) + timedelta(seconds=20 * user)
        rows.append(
            {
                "time": moment, "user_id": user, "items_count": 20, "request_id": f"r{user}",
                "model_version": state.serving[variant], "variant": variant, "personalised": True,
                "starts": 1, "minutes": 40 if followed else 25, "list_starts": followed,
                "list_minutes": 40 * followed, "position": 2 if followed else None,
                "movie_id": "m+1+2000" if followed else None,
                "start_time": moment + timedelta(minutes=2) if followed else None,
                "complete": True, "partition": 0, "offset": user,
            }
        )  # fmt: skip
    table = pa.Table.from_pylist(rows, schema=ANSWER_OUTCOME)
    lake.write_parquet_atomically(table, compute.outcome_path(settings, datetime(2026, 11, 20).date()))


def start(settings: settings_module.Settings, text: str = DEFINITION) -> control.State:
    return lifecycle.start_experiment(settings, parse(text), now=STARTED)


def evidence_entries(settings: settings_module.Settings) -> list[dict]:
    return [r for r in registry.registry_log(settings) if r["action"] == registry.EVIDENCE]


# --- definitions and starting ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (("share = 0.5\n\n[[variants]]", "share = 0.4\n\n[[variants]]"), "sum to 0.9"),
        (('primary_metric = "follow_rate"', 'primary_metric = "clicks"'), "unknown metric 'clicks'"),
        (("alpha = 0.05", "alpha = 0.7"), "alpha 0.7"),
        (('name = "trial"', 'name = "Trial Run"'), "lowercase"),
        (("auto_decide = true", "auto_decide = true\ncolour = 3"), "unknown keys ['colour']"),
    ],
)  # fmt: skip
def test_a_bad_definition_is_refused_with_what_to_fix(change: tuple[str, str], message: str) -> None:
    with pytest.raises(DefinitionError, match=message.replace("[", r"\[").replace("]", r"\]")):
        parse(DEFINITION.replace(*change))


def test_start_pins_current_writes_the_hook_and_refuses_what_the_service_would(
    site: settings_module.Settings,
) -> None:
    missing = DEFINITION.replace(CHALLENGER, "20261130T040000Z")
    with pytest.raises(DefinitionError, match="no serving file"):
        start(site, missing)
    corrupt = site.serving_dir / "recs-20261127T040000Z.sqlite"
    corrupt.write_bytes(b"not a database" * 100)
    with pytest.raises(DefinitionError, match="20261127T040000Z"):
        start(site, DEFINITION.replace(CHALLENGER, "20261127T040000Z"))
    assert not site.experiment_path.exists()  # nothing reached the service

    state = start(site)
    hook = json.loads(site.experiment_path.read_text())
    assert [(v["name"], v["model_version"], v["share"]) for v in hook["variants"]] == [
        ("control", INCUMBENT, 0.5),
        ("treatment", CHALLENGER, 0.5),
    ]  # "current" pinned to the version it pointed at
    assert parse_experiment(json.dumps(hook)).name == "trial" and hook["salt"] == state.salt
    assert state.planned_users == {"control": 300, "treatment": 300}
    with pytest.raises(control.ExperimentStateError, match="in force"):
        start(site, DEFINITION.replace('name = "trial"', 'name = "other"'))
    lifecycle.stop_experiment(site, now=STARTED + timedelta(hours=1))
    assert not site.experiment_path.exists()
    with pytest.raises(control.ExperimentStateError, match="ran before"):
        start(site)


# --- verdicts ----------------------------------------------------------------------------------


def test_a_clear_winner_is_promoted_with_its_evidence_in_the_registry_log(
    site: settings_module.Settings,
) -> None:
    state = start(site)
    rng = np.random.default_rng(7)
    write_outcomes(
        site,
        state,
        {"control": (rng.random(350) < 0.2).tolist(), "treatment": (rng.random(350) < 0.5).tolist()},
    )
    result = lifecycle.decide_experiment(site, now=DECIDED)
    assert result["decision"]["action"] == promotion.PROMOTE
    assert registry.current_version(site) == CHALLENGER
    assert not site.experiment_path.exists()  # the experiment ended: everybody gets the new current
    (entry,) = evidence_entries(site)
    assert entry["version"] == CHALLENGER and entry["verdict"] == "promote" and entry["control"] == INCUMBENT
    low, high = entry["interval"]
    assert low < entry["effect"] < high and low > 0 and entry["p_value"] < 0.05
    assert entry["metric"] == "follow_rate" and entry["srm"]["mismatch"] is False
    assert entry["users"] == {"control": 350, "treatment": 350}
    assert CHALLENGER in registry.published_versions(site)  # a rollback target from now on
    assert control.load_state(site, "trial").verdict["verdict"] == "promote"

    page = Path(lifecycle.write_report(site, "trial", now=DECIDED))
    text = page.read_text()
    assert "Welch's t-test" in text and "chi-square" in text
    assert "**promote** (treatment beats control on follow_rate" in text and f"next to `{CHALLENGER}`" in text
    assert (page.parent / "metric.png").stat().st_size > 5_000
    assert (page.parent / "assignment.png").stat().st_size > 5_000


def test_no_difference_at_the_horizon_rolls_back_and_keeps_the_incumbent(
    site: settings_module.Settings,
) -> None:
    state = start(site)
    same = (np.random.default_rng(3).random(320) < 0.3).tolist()
    write_outcomes(site, state, {"control": same, "treatment": same})  # identical outcomes in both arms
    result = lifecycle.decide_experiment(site, now=DECIDED)
    assert result["decision"]["action"] == promotion.ROLLBACK
    assert "no significant difference" in result["decision"]["reason"]
    assert registry.current_version(site) == INCUMBENT and not site.experiment_path.exists()
    (entry,) = evidence_entries(site)
    assert entry["version"] == CHALLENGER and entry["verdict"] == "rollback"
    assert entry["effect"] == 0 and entry["p_value"] == pytest.approx(1.0)
    assert CHALLENGER not in registry.published_versions(site)  # evidence is not a publish


def test_before_the_horizon_nothing_is_decided(site: settings_module.Settings) -> None:
    state = start(site)
    rng = np.random.default_rng(5)
    write_outcomes(site, state, {"control": (rng.random(100) < 0.1).tolist(),
                                 "treatment": (rng.random(100) < 0.9).tolist()})  # fmt: skip
    result = lifecycle.decide_experiment(site, now=DECIDED)
    assert result["decision"]["action"] == promotion.KEEP  # 100 of 300 users: an interim look only
    assert site.experiment_path.exists() and evidence_entries(site) == []
    status = lifecycle.status(site, now=DECIDED)
    assert status["users"] == {"control": 100, "treatment": 100} and status["service"]["reachable"] is False


def test_a_broken_split_is_rolled_back_at_once(site: settings_module.Settings) -> None:
    state = start(site)
    # the service labelled 3 of 4 users "control" whatever the salt said
    write_outcomes(site, state, {"control": [0.0] * 150, "treatment": [1.0] * 50},
                   label=lambda user: "treatment" if user % 4 == 0 else "control")  # fmt: skip
    result = lifecycle.decide_experiment(site, now=STARTED + timedelta(hours=20))
    assert result["decision"]["action"] == promotion.ROLLBACK
    assert "sample ratio mismatch" in result["decision"]["reason"]
    assert "than the salt assigns" in result["decision"]["reason"]
    (entry,) = evidence_entries(site)
    assert entry["srm"]["mismatch"] is True and entry["srm"]["p_value"] < 0.001
    assert registry.current_version(site) == INCUMBENT


# --- the retrain's canary ----------------------------------------------------------------------


def test_a_retrained_model_goes_out_as_a_canary_and_a_newer_one_supersedes_it(
    site: settings_module.Settings,
) -> None:
    message = lifecycle.publish_or_canary(site, CHALLENGER)
    state = control.running(site)
    assert state is not None and state.name == f"canary-{CHALLENGER}".lower() and message.startswith("canary")
    assert state.serving == {"control": INCUMBENT, "canary": CHALLENGER}
    assert state.definition.shares == {"control": 0.7, "canary": 0.3} and state.definition.auto_decide
    assert state.power_analysis["baseline"]["source"].startswith("the definition's prior")
    assert state.planned_users["canary"] < state.planned_users["control"]
    assert registry.current_version(site) == INCUMBENT  # nothing published before it wins

    newer = "20261130T040000Z"
    write_serving_file(site.serving_dir, newer, range(1, 2_001))
    lifecycle.publish_or_canary(site, newer)
    assert control.running(site).serving["canary"] == newer
    (entry,) = evidence_entries(site)
    assert (
        entry["version"] == CHALLENGER and entry["verdict"] == "rollback" and "superseded" in entry["reason"]
    )


def test_a_canary_tests_the_challenger_evaluate_named_in_its_own_serving_file(
    site: settings_module.Settings,
) -> None:
    newer = "20261130T040000Z"
    model_json = versions.model_dir(site, newer) / versions.MODEL_FILE
    model_json.parent.mkdir(parents=True)

    def named(challenger: str) -> None:
        model_json.write_text(json.dumps({"candidate": "popularity", "challenger": challenger}))

    named("als_r16")
    write_serving_file(site.serving_dir, newer, range(1, 2_001))
    write_serving_file(site.serving_dir, f"{newer}-als_r16", range(1, 2_001))
    assert lifecycle.canary_candidate(site, newer) == "als_r16"

    message = lifecycle.publish_or_canary(site, newer)
    state = control.running(site)
    assert message.startswith("canary") and state is not None
    assert state.serving == {"control": INCUMBENT, "canary": f"{newer}-als_r16"}
    assert registry.current_version(site) == INCUMBENT

    # a challenger that is the chosen candidate is the version's own file
    named("popularity")
    assert lifecycle.canary_candidate(site, newer) is None


def first_model(tmp_path: Path, challenger: str) -> tuple[settings_module.Settings, str]:
    """A home with nothing published and one version whose evaluate chose popularity and named
    ``challenger``, with the serving files the retrain would have written for both."""
    home = settings_module.load({"MOVIEREC_HOME": str(tmp_path / "home"), "MOVIEREC_SERVER_PORT": "9"})
    first = "20261201T000000Z"
    write_version(home, first)
    model = {"version": first, "model": "popularity", "candidate": "popularity", "challenger": challenger}
    (versions.model_dir(home, first) / versions.MODEL_FILE).write_text(json.dumps(model))
    if challenger != "popularity":
        write_candidate_file(home, first, challenger)
    return home, first


def test_a_first_model_is_published_and_its_challenger_goes_out_as_a_canary_against_it(
    tmp_path: Path,
) -> None:
    home, first = first_model(tmp_path, "als_r16_demo")
    assert registry.current_version(home) is None
    assert lifecycle.canary_candidate(home, first) == "als_r16_demo"  # precompute_challenger writes it

    message = lifecycle.publish_or_canary(home, first)
    assert registry.current_version(home) == first  # the chosen candidate serves, behind the gate
    state = control.running(home)
    assert state is not None and state.name == f"canary-{first}-als_r16_demo".lower()
    assert state.serving == {"control": first, "canary": f"{first}-als_r16_demo"}
    assert state.definition.shares == {"control": 0.7, "canary": 0.3} and state.definition.auto_decide
    assert message.startswith(f"publish: current is {first}") and f"canary {state.name} started" in message


@pytest.mark.parametrize("force", [False, True])
def test_a_first_model_without_another_challenger_or_forced_is_only_published(
    tmp_path: Path, force: bool
) -> None:
    home, first = first_model(tmp_path, "als_r16" if force else "popularity")
    message = lifecycle.publish_or_canary(home, first, force=force)
    assert registry.current_version(home) == first
    assert control.running(home) is None and not home.experiment_path.exists()
    assert "canary" not in message


# --- the command --------------------------------------------------------------------------------


def test_the_command_starts_reports_and_stops_with_clear_errors(
    site: settings_module.Settings,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture,
) -> None:
    from movierec.cli import main

    for key, value in settings_module.as_env(site).items():
        monkeypatch.setenv(key, value)
    definition = tmp_path / "trial.toml"
    definition.write_text(DEFINITION.replace(CHALLENGER, "20261130T040000Z"))
    assert main(["experiment", "start", str(definition)]) == 2  # that file does not exist
    assert "no serving file" in capsys.readouterr().err
    assert main(["experiment", "start", str(definition), "--serving", f"treatment={CHALLENGER}"]) == 0
    started = json.loads(capsys.readouterr().out)
    assert started["serving"] == {"control": INCUMBENT, "treatment": CHALLENGER}
    assert main(["experiment", "status"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert status["in_force"] == "trial" and status["decision"]["action"] == promotion.KEEP
    assert main(["experiment", "report"]) == 0
    assert Path(json.loads(capsys.readouterr().out)["report"]).exists()
    assert main(["experiment", "stop"]) == 0
    assert not site.experiment_path.exists()
    assert main(["experiment", "stop"]) == 2 and "no experiment is in force" in capsys.readouterr().err
    assert main(["experiment", "start", "no-such-definition"]) == 2
    assert "als_vs_popularity" in capsys.readouterr().err  # the known definitions are listed
