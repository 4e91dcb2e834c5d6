"""The monitoring configuration is valid for the real tools: promtool checks the rules and runs
their unit tests (monitoring/tests/, synthetic series), promtool checks the rendered Prometheus
configuration and amtool the Alertmanager one."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from movierec import settings as settings_module
from movierec.monitoring import stack


def run(*command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)


def test_the_rules_pass_promtool_check_rules() -> None:
    rules = sorted(stack.RULES_DIR.glob("*.yml"))
    assert rules
    result = run(stack.binary("promtool"), "check", "rules", *map(str, rules))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout + result.stderr


def test_the_rules_pass_their_unit_tests_with_synthetic_series() -> None:
    tests = sorted((stack.MONITORING_DIR / "tests").glob("*.yml"))
    assert tests
    result = run(stack.binary("promtool"), "test", "rules", *map(str, tests))
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_has_a_severity_and_a_runbook_line() -> None:
    import yaml

    for path in stack.RULES_DIR.glob("*.yml"):
        for group in yaml.safe_load(path.read_text())["groups"]:
            for rule in group["rules"]:
                if "alert" in rule:
                    assert rule["labels"]["severity"] in {"page", "ticket", "info"}, rule["alert"]
                    assert rule["annotations"]["runbook"].strip(), rule["alert"]
                    assert rule["annotations"]["summary"].strip(), rule["alert"]


def test_the_rendered_configurations_pass_promtool_and_amtool(tmp_path: Path) -> None:
    settings = settings_module.load({"MOVIEREC_HOME": str(tmp_path), "MOVIEREC_SERVER_PORT": "18082"})
    prometheus = stack.render(settings, "prometheus.yml")
    # the service is scraped on its loopback operator port (the service port + 10), never the public one
    assert "127.0.0.1:18092" in prometheus.read_text() and ":18082" not in prometheus.read_text()
    result = run(stack.binary("promtool"), "check", "config", str(prometheus))
    assert result.returncode == 0, result.stdout + result.stderr
    alertmanager = stack.render(settings, "alertmanager.yml")
    assert f"127.0.0.1:{settings.dashboard_port}/api/alerts" in alertmanager.read_text()
    result = run(stack.binary("amtool"), "check-config", str(alertmanager))
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_missing_binary_names_the_command_that_installs_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(stack.MonitoringNotInstalled, match="apt-get install -y prometheus"):
        stack.binary("prometheus")
