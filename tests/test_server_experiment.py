"""Experiment configs and assignment: deterministic, salted, shares respected, bad configs refused."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from server.experiment import ExperimentConfig, ExperimentError, bucket, parse_experiment
from tests.test_server_store import V1, V2, V9, write_serving_file


def config(**overrides: object) -> dict[str, object]:
    raw: dict[str, object] = {
        "name": "rank-test",
        "salt": "s1",
        "variants": [
            {"name": "control", "model_version": "current", "share": 0.7},
            {"name": "treatment", "model_version": V2, "share": 0.3},
        ],
    }
    return raw | overrides


def test_assignment_is_deterministic_and_respects_shares() -> None:
    experiment = parse_experiment(json.dumps(config()))
    first = [experiment.assign(user).name for user in range(1, 20_001)]
    again = [parse_experiment(json.dumps(config())).assign(user).name for user in range(1, 20_001)]
    assert first == again
    share = first.count("treatment") / len(first)
    assert 0.28 < share < 0.32  # 20,000 draws: the standard error is 0.003


def test_a_new_salt_reshuffles_users() -> None:
    one = parse_experiment(json.dumps(config()))
    two = parse_experiment(json.dumps(config(salt="s2")))
    moved = sum(one.assign(u).name != two.assign(u).name for u in range(1, 5_001))
    assert moved > 1_000  # independent draws: about 2 * 0.7 * 0.3 = 42% change variant


def test_bucket_is_in_the_unit_interval_and_depends_on_salt_and_user() -> None:
    points = {bucket("s", u) for u in range(1, 1_001)}
    assert all(0 <= p < 1 for p in points) and len(points) == 1_000
    assert bucket("s", 1) != bucket("t", 1)


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("{not json", "not JSON"),
        (json.dumps([1]), "expected a JSON object"),
        (json.dumps(config(name="")), "'name'"),
        (json.dumps(config(salt=3)), "'salt'"),
        (json.dumps(config(variants=[])), "'variants'"),
        (json.dumps(config(variants=[{"name": "a", "model_version": V1, "share": 0.5}])), "sum to 0.5"),
        (json.dumps(config(variants=[{"name": "a", "model_version": V1, "share": "1"}])), "'share'"),
        (json.dumps(config(variants=[{"name": "a", "model_version": "../x", "share": 1}])), "model_version"),
        (json.dumps(config(variants=[{"name": "a", "model_version": "v1", "share": 1}])), "not a serving id"),
        (
            json.dumps(config(variants=[{"name": "a", "model_version": f"{V1}-ALS", "share": 1}])),
            "not a serving id",
        ),
        (
            json.dumps(
                config(
                    variants=[
                        {"name": "a", "model_version": V1, "share": 0.5},
                        {"name": "a", "model_version": V2, "share": 0.5},
                    ]
                )
            ),
            "repeat",
        ),
    ],
)
def test_bad_configs_are_refused_with_a_reason(raw: str, reason: str) -> None:
    with pytest.raises(ExperimentError, match=reason):
        parse_experiment(raw)


def test_the_config_is_followed_and_a_bad_change_keeps_the_running_one(tmp_path: Path) -> None:
    serving, path = tmp_path / "serving", tmp_path / "experiment.json"
    write_serving_file(serving, V2)
    refused: list[str] = []
    followed = ExperimentConfig(path, serving, refused.append)
    followed.poll()
    assert followed.running is None  # no file: no experiment

    path.write_text(json.dumps(config()))
    followed.poll()
    assert followed.running is not None
    assert followed.running.models["control"] is None  # follows current
    assert followed.running.models["treatment"].version == V2

    path.write_text(json.dumps(config(variants=[{"name": "x", "model_version": V9, "share": 1}])))
    followed.poll()
    assert followed.running.experiment.name == "rank-test", "a config naming a missing file is refused"
    assert len(refused) == 1 and f"recs-{V9}.sqlite does not exist" in refused[0]

    path.unlink()
    followed.poll()
    assert followed.running is None
    followed.close()


def test_a_variant_may_serve_any_candidate_of_a_version(tmp_path: Path) -> None:
    serving, path = tmp_path / "serving", tmp_path / "experiment.json"
    challenger = f"{V2}-als_r16"
    write_serving_file(serving, challenger)
    path.write_text(json.dumps(config(variants=[{"name": "x", "model_version": challenger, "share": 1}])))
    followed = ExperimentConfig(path, serving, lambda reason: None)
    followed.poll()
    assert followed.running is not None
    assert followed.running.models["x"].version == challenger
    followed.close()
