"""Prometheus text files under ``$MOVIEREC_HOME/metrics/``, which node-exporter's textfile collector
serves to Prometheus (a well-kept exporter rather than one of ours). Written beside and renamed by
prometheus_client, so a scrape never reads half a file."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from movierec.settings import Settings

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry


def metrics_dir(settings: Settings) -> Path:
    return settings.home / "metrics"


def write(settings: Settings, name: str, registry: CollectorRegistry) -> Path:
    """``metrics/<name>`` (a ``.prom`` file) from the registry's current values."""
    from prometheus_client import write_to_textfile

    if not name.endswith(".prom"):
        raise ValueError(f"{name}: node-exporter reads only *.prom files")
    path = metrics_dir(settings) / name
    path.parent.mkdir(parents=True, exist_ok=True)
    write_to_textfile(str(path), registry)
    return path
