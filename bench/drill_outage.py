"""An outage drill on a running `make up` home: SIGKILL of every process of the recommendation
service while the site's viewers call it, measured as an operator would see it.

    MOVIEREC_HOME=<home> .venv/bin/python bench/drill_outage.py [--hold 0] [--alert-timeout 300]

With ``--hold 0`` supervisord respawns the service at once (a crash); with ``--hold S`` the program
is kept stopped for S seconds after the kill (a longer outage, e.g. a host that takes minutes to come
back), then started again. Prints: seconds until supervisord's new process, until ``/healthz``
answers, until the first outage alert reaches our webhook receiver, until it resolves; and the
site's request lines by outcome over the drill (the probe's counters in Prometheus).
``tests/test_monitoring_live.py`` runs the same drill on small data and asserts it.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import time
from datetime import UTC, datetime
from typing import Any

import httpx

from movierec import settings as settings_module
from movierec.monitoring import alert_log
from movierec.ops import supervisor
from movierec.ops.processes import descendants
from movierec.settings import Settings

OUTAGE_ALERTS = {
    "ServiceDown",
    "SiteAvailabilityFastBurn",
    "SiteAvailabilitySlowBurn",
    "SupervisedProgramDown",
}


def wait_for(condition: Any, timeout: float, every: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := condition():
            return value
        time.sleep(every)
    return None


def healthy(settings: Settings) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{settings.server_port}/healthz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def site_lines(settings: Settings, since: float) -> dict[str, float]:
    """The site's request lines by outcome since ``since`` (epoch seconds), from Prometheus."""
    window = max(int(time.time() - since), 60)
    answer = httpx.get(
        f"http://127.0.0.1:{settings.prometheus_port}/api/v1/query",
        params={"query": f"sum by (outcome) (increase(movierec_site_requests_total[{window}s]))"},
        timeout=10,
    )
    answer.raise_for_status()
    rows = answer.json()["data"]["result"]
    return {r["metric"].get("outcome", ""): round(float(r["value"][1])) for r in rows}


def alerts_since(settings: Settings, since: float, status: str) -> list[dict[str, Any]]:
    return [
        a
        for a in alert_log.read(settings)
        if a["status"] == status
        and a["alertname"] in OUTAGE_ALERTS
        and datetime.fromisoformat(a["received_at"]).timestamp() >= since
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hold", type=float, default=0.0, help="seconds to keep the service down")
    parser.add_argument("--alert-timeout", type=float, default=300.0, help="seconds to wait for an alert")
    parser.add_argument("--resolve-timeout", type=float, default=900.0)
    args = parser.parse_args()
    settings = settings_module.load()
    before = supervisor.pid(settings, "server")
    if before is None or not healthy(settings):
        raise SystemExit("the service is not running under this home's supervisor: start it with make up")
    group = descendants([before])
    began = time.time()
    killed = time.monotonic()
    if args.hold > 0:
        supervisor.rpc(settings).supervisor.stopProcess("server", False)  # no respawn while held
    os.killpg(os.getpgid(before), signal.SIGKILL)
    for pid in group:  # workers share the group; belt and braces
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    print(f"{datetime.now(UTC):%H:%M:%S} killed {len(group)} processes of the service", flush=True)
    if args.hold > 0:
        time.sleep(args.hold)
        supervisor.rpc(settings).supervisor.startProcess("server", False)
    respawned = wait_for(lambda: (p := supervisor.pid(settings, "server")) not in (None, before) and p, 120)
    respawn_s = time.monotonic() - killed
    wait_for(lambda: healthy(settings), 300, every=0.05)
    answering_s = time.monotonic() - killed
    print(f"{datetime.now(UTC):%H:%M:%S} answering again after {answering_s:.1f} s", flush=True)
    firing = wait_for(lambda: alerts_since(settings, began, "firing"), args.alert_timeout, every=1.0) or []
    alert_s = min((datetime.fromisoformat(a["received_at"]).timestamp() for a in firing), default=None)
    fired = sorted({a["alertname"] for a in firing})
    print(f"{datetime.now(UTC):%H:%M:%S} alerts at the receiver: {fired or 'none'}", flush=True)

    def all_resolved() -> bool:  # alerts keep arriving (the slower windows fire later)
        firing_now = {a["alertname"] for a in alerts_since(settings, began, "firing")}
        return {a["alertname"] for a in alerts_since(settings, began, "resolved")} >= firing_now

    if fired:  # the page alerts clear within minutes; the budget-burn tickets may take hours
        wait_for(all_resolved, args.resolve_timeout, every=2.0)
    fired = sorted({a["alertname"] for a in alerts_since(settings, began, "firing")})
    resolved = {
        a["alertname"]: round(datetime.fromisoformat(a["received_at"]).timestamp() - began, 1)
        for a in alerts_since(settings, began, "resolved")
    }
    report = {
        "hold_seconds": args.hold,
        "processes_killed": len(group),
        "pids": [before, respawned],
        "respawn_seconds": round(respawn_s, 2),
        "answering_seconds": round(answering_s, 2),
        "alerts_fired": fired,
        "alert_seconds_after_kill": round(alert_s - began, 1) if alert_s else None,
        "resolved_seconds_after_kill": resolved,
        "site_lines_by_outcome_during_drill": site_lines(settings, began),
    }
    print("OUTAGE DRILL", json.dumps(report), flush=True)


if __name__ == "__main__":
    main()
