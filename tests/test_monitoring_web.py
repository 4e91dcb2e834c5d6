"""The alert receiver keeps every notification Alertmanager sends (firing and resolved, one line per
alert), refuses what is not one, and the dashboard's files are served."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from movierec import settings as settings_module
from movierec.monitoring import alert_log, web
from movierec.settings import Settings
from tests.conftest import free_port

NOTIFICATION = {  # Alertmanager's webhook payload (version 4), as it sends it
    "version": "4",
    "status": "firing",
    "receiver": "movierec-log",
    "groupLabels": {"alertname": "ServiceDown"},
    "alerts": [
        {
            "status": "firing",
            "labels": {"alertname": "ServiceDown", "severity": "page", "job": "movierec-service"},
            "annotations": {"summary": "the recommendation service does not answer /metrics"},
            "startsAt": "2026-11-30T10:00:00Z",
            "endsAt": "0001-01-01T00:00:00Z",
            "fingerprint": "abc",
        },
        {
            "status": "resolved",
            "labels": {"alertname": "DriftFlagged", "severity": "ticket", "signal": "rating"},
            "annotations": {},
            "startsAt": "2026-11-30T09:00:00Z",
            "endsAt": "2026-11-30T09:30:00Z",
            "fingerprint": "def",
        },
    ],
}


@pytest.fixture
def receiver(tmp_path: Path) -> Iterator[tuple[Settings, str]]:
    settings = settings_module.load(
        {"MOVIEREC_HOME": str(tmp_path), "MOVIEREC_DASHBOARD_PORT": str(free_port())}
    )
    server = ThreadingHTTPServer(("127.0.0.1", settings.dashboard_port), web.make_handler(settings))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield settings, f"http://127.0.0.1:{settings.dashboard_port}"
    finally:
        server.shutdown()
        server.server_close()


def test_every_alert_of_a_notification_is_kept_and_listed(receiver: tuple[Settings, str]) -> None:
    settings, url = receiver
    assert httpx.post(f"{url}/api/alerts", json=NOTIFICATION).json() == {"kept": 2}
    assert httpx.post(f"{url}/api/alerts", json=NOTIFICATION).status_code == 200
    kept = alert_log.read(settings)
    assert [(a["alertname"], a["status"]) for a in kept] == [
        ("ServiceDown", "firing"),
        ("DriftFlagged", "resolved"),
    ] * 2
    assert kept[0]["labels"]["severity"] == "page" and kept[1]["ends_at"] == "2026-11-30T09:30:00Z"
    assert httpx.get(f"{url}/api/alerts", params={"limit": 1}).json() == kept[-1:]


@pytest.mark.parametrize("body", [b"not json", b"{}", b'{"alerts": [{"status": "firing"}]}', b"[]"])
def test_what_is_not_a_notification_is_refused_and_nothing_is_kept(
    receiver: tuple[Settings, str], body: bytes
) -> None:
    settings, url = receiver
    answer = httpx.post(f"{url}/api/alerts", content=body)
    assert answer.status_code == 400
    assert alert_log.read(settings) == []


def test_the_page_its_script_and_the_prometheus_address_are_served(receiver: tuple[Settings, str]) -> None:
    settings, url = receiver
    page = httpx.get(f"{url}/")
    assert page.status_code == 200 and "/vendor/uplot.js" in page.text
    assert "uPlot" in httpx.get(f"{url}/static/dashboard.js").text
    assert httpx.get(f"{url}/config.json").json() == {
        "prometheus": f"http://127.0.0.1:{settings.prometheus_port}"
    }
    assert httpx.get(f"{url}/static/../../movierec/settings.py").status_code == 404
    vendor = httpx.get(f"{url}/vendor/uplot.js")
    assert vendor.status_code == 200 and "uPlot" in vendor.text  # installed from npm by `make install`
