"""The monitoring stack's programs: Prometheus, Alertmanager and node-exporter (Debian's packages),
with their configuration rendered from ``monitoring/`` into ``$MOVIEREC_HOME/monitoring/``.

``monitoring/prometheus.yml`` and ``monitoring/alertmanager.yml`` are templates (``${name}``
placeholders, ``string.Template``) filled with the settings' ports and folders; the rules in
``monitoring/rules/`` are read in place. State: ``$MOVIEREC_HOME/prometheus`` (TSDB, 15 days),
``$MOVIEREC_HOME/alertmanager`` (silences, notification log). Everything binds 127.0.0.1.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from string import Template

from movierec.settings import REPO_ROOT, Settings

MONITORING_DIR = REPO_ROOT / "monitoring"
RULES_DIR = MONITORING_DIR / "rules"
# Debian's package names; the binaries under the names upstream uses work too
PACKAGES = "prometheus prometheus-alertmanager prometheus-node-exporter"
INSTALL = f"apt-get install -y {PACKAGES}  (as root; `make install` does it when run as root)"
BINARIES = {
    "prometheus": ("prometheus",),
    "alertmanager": ("prometheus-alertmanager", "alertmanager"),
    "node-exporter": ("prometheus-node-exporter", "node_exporter"),
    "promtool": ("promtool",),
    "amtool": ("amtool",),
}


class MonitoringNotInstalled(RuntimeError):
    """A binary of the monitoring stack is missing: the message names the command that installs it."""


def binary(name: str) -> str:
    for candidate in BINARIES[name]:
        found = shutil.which(candidate)
        if found:
            return found
    raise MonitoringNotInstalled(f"{name} is not installed ({' or '.join(BINARIES[name])}): {INSTALL}")


def config_dir(settings: Settings) -> Path:
    return settings.home / "monitoring"


def group_timing(settings: Settings) -> tuple[int, int]:
    """Alertmanager's group_wait and group_interval: Google-like defaults (30 s, 5 min), shorter
    when Prometheus evaluates faster (tests), so a notification never waits much longer than a rule."""
    return min(30, 2 * settings.prometheus_interval), min(300, 4 * settings.prometheus_interval)


def values(settings: Settings) -> dict[str, object]:
    group_wait, group_interval = group_timing(settings)
    return {
        "interval": settings.prometheus_interval,
        "rules_dir": RULES_DIR,
        "server_ops_host": settings.server_ops_host,
        "server_ops_port": settings.ops_port,
        "node_exporter_port": settings.node_exporter_port,
        "prometheus_port": settings.prometheus_port,
        "alertmanager_port": settings.alertmanager_port,
        "dashboard_port": settings.dashboard_port,
        "group_wait": group_wait,
        "group_interval": group_interval,
    }


def render(settings: Settings, name: str) -> Path:
    """``monitoring/<name>`` with the settings filled in, written to ``$MOVIEREC_HOME/monitoring/``."""
    text = Template((MONITORING_DIR / name).read_text()).substitute(values(settings))
    target = config_dir(settings) / name
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text)
    return target


def prometheus_command(settings: Settings) -> list[str]:
    return [
        binary("prometheus"),
        f"--config.file={render(settings, 'prometheus.yml')}",
        f"--storage.tsdb.path={settings.home / 'prometheus'}",
        "--storage.tsdb.retention.time=15d",
        f"--web.listen-address=127.0.0.1:{settings.prometheus_port}",
        f"--web.external-url=http://127.0.0.1:{settings.prometheus_port}/",
        "--web.enable-lifecycle",  # a POST /-/reload after the rules change
    ]


def alertmanager_command(settings: Settings) -> list[str]:
    return [
        binary("alertmanager"),
        f"--config.file={render(settings, 'alertmanager.yml')}",
        f"--storage.path={settings.home / 'alertmanager'}",
        f"--web.listen-address=127.0.0.1:{settings.alertmanager_port}",
        f"--web.external-url=http://127.0.0.1:{settings.alertmanager_port}/",
        "--cluster.listen-address=",  # one instance: no gossip (its default port, 9094, is ours)
    ]


def node_exporter_command(settings: Settings, textfiles: Path) -> list[str]:
    return [
        binary("node-exporter"),
        f"--web.listen-address=127.0.0.1:{settings.node_exporter_port}",
        f"--collector.textfile.directory={textfiles}",
        # the pipeline's files and what a person asks of the machine first; not the 40 defaults
        "--collector.disable-defaults",
        "--collector.textfile",
        "--collector.cpu",
        "--collector.loadavg",
        "--collector.meminfo",
        "--collector.filesystem",
    ]
