"""Every notification Alertmanager sends us, kept: ``$MOVIEREC_HOME/alerts/alerts.jsonl``.

One JSON line per alert per notification (firing or resolved), as Alertmanager's webhook sent it
(version 4 payload: each alert's status, labels, annotations, startsAt, endsAt, fingerprint) plus
``received_at``. Appended under a lock with fsync, so concurrent notifications never interleave and
a crash loses at most the line being written. Tests and the dashboard read it back.
"""

from __future__ import annotations

import fcntl
import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from movierec.settings import Settings


class BadNotification(ValueError):
    """A request body that is not an Alertmanager webhook notification."""


def log_path(settings: Settings) -> Path:
    return settings.home / "alerts" / "alerts.jsonl"


def records(payload: Any, received_at: datetime | None = None) -> list[dict[str, Any]]:
    """The lines to keep for one webhook notification. Pure."""
    if not isinstance(payload, dict) or not isinstance(payload.get("alerts"), list):
        raise BadNotification("expected Alertmanager's webhook JSON with an 'alerts' list")
    at = (received_at or datetime.now(UTC)).isoformat(timespec="milliseconds")
    out = []
    for alert in payload["alerts"]:
        if not isinstance(alert, dict) or not isinstance(alert.get("labels"), dict):
            raise BadNotification("every alert needs a 'labels' object")
        out.append(
            {
                "received_at": at,
                "status": alert.get("status"),
                "alertname": alert["labels"].get("alertname"),
                "labels": alert["labels"],
                "annotations": alert.get("annotations", {}),
                "starts_at": alert.get("startsAt"),
                "ends_at": alert.get("endsAt"),
                "fingerprint": alert.get("fingerprint"),
                "receiver": payload.get("receiver"),
            }
        )
    return out


def append(settings: Settings, lines: list[dict[str, Any]]) -> None:
    path = log_path(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = "".join(json.dumps(line, sort_keys=True) + "\n" for line in lines)
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())


def read(settings: Settings, limit: int | None = None) -> list[dict[str, Any]]:
    """The kept notifications, oldest first (the last ``limit`` ones)."""
    path = log_path(settings)
    if not path.exists():
        return []
    lines = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return lines[-limit:] if limit else lines
