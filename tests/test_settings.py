from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from movierec import settings as settings_module

CLI = str(Path(sys.executable).parent / "movierec")


def test_defaults_match_the_design_contract() -> None:
    settings = settings_module.load({})
    assert settings.kafka_bootstrap == "127.0.0.1:9092"
    assert settings.kafka_controller_port == 9093
    assert settings.topic == "movielog1"
    assert settings.spark_master == "local[*]"
    assert (settings.server_port, settings.api_port, settings.airflow_port) == (8082, 8083, 8080)
    assert (settings.prometheus_port, settings.alertmanager_port) == (9090, 9094)
    assert (settings.scale_users, settings.scale_movies) == (1_000_000, 27_000)
    assert settings.home == settings_module.REPO_ROOT / "var"
    assert settings.catalog_api_url == "http://127.0.0.1:8083"
    assert (settings.ops_port, settings.server_ops_host) == (8092, "127.0.0.1")  # loopback operator port


def test_environment_overrides_with_types(tmp_path: Path) -> None:
    settings = settings_module.load(
        {
            "MOVIEREC_HOME": str(tmp_path / "state"),
            "MOVIEREC_SERVER_PORT": "18082",
            "MOVIEREC_TOPIC": "movielog7",
            "MOVIEREC_API_URL": "http://site.example:8080",
            "MOVIEREC_SCALE_USERS": "",  # empty means "not set"
            "MOVIEREC_API_RATE": "2.5",
        }
    )
    assert settings.api_rate == 2.5
    assert settings.home == tmp_path / "state"
    assert settings.server_port == 18082
    assert settings.ops_port == 18092, "the operator port follows the service port unless set"
    assert settings.topic == "movielog7"
    assert settings.catalog_api_url == "http://site.example:8080"
    assert settings.scale_users == 1_000_000


def test_wrong_type_is_a_clear_error() -> None:
    with pytest.raises(
        settings_module.SettingsError, match="MOVIEREC_SERVER_PORT='eighty' is not an integer"
    ):
        settings_module.load({"MOVIEREC_SERVER_PORT": "eighty"})


def test_wrong_number_is_a_clear_error() -> None:
    with pytest.raises(settings_module.SettingsError, match="is not a number"):
        settings_module.load({"MOVIEREC_API_RATE": "fast"})


def test_describe_names_every_variable_and_its_source() -> None:
    env = {"MOVIEREC_TOPIC": "movielog9"}
    rows = settings_module.describe(settings_module.load(env), env)
    by_name = {row["env"]: row for row in rows}
    assert by_name["MOVIEREC_TOPIC"] == {
        "env": "MOVIEREC_TOPIC",
        "value": "movielog9",
        "source": "env",
        "doc": by_name["MOVIEREC_TOPIC"]["doc"],
    }
    assert by_name["MOVIEREC_SPARK_MASTER"]["source"] == "default"
    assert all(name.startswith("MOVIEREC_") and row["doc"] for name, row in by_name.items())


def test_config_command_prints_effective_settings(tmp_path: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", "MOVIEREC_HOME": str(tmp_path), "MOVIEREC_SERVER_PORT": "18082"}
    result = subprocess.run([CLI, "config", "--json"], env=env, capture_output=True, text=True, check=True)
    printed = json.loads(result.stdout)
    assert printed["MOVIEREC_HOME"] == str(tmp_path)
    assert printed["MOVIEREC_SERVER_PORT"] == "18082"
    assert printed["MOVIEREC_KAFKA_BOOTSTRAP"] == "127.0.0.1:9092"


def test_config_command_rejects_bad_values() -> None:
    env = {"PATH": "/usr/bin:/bin", "MOVIEREC_API_PORT": "x"}
    result = subprocess.run([CLI, "config"], env=env, capture_output=True, text=True)
    assert result.returncode == 2
    assert "MOVIEREC_API_PORT='x' is not an integer" in result.stderr
