"""``movierec monitor web``: the dashboard page and the alert receiver, on 127.0.0.1:<dashboard_port>.

    GET  /                  the dashboard (monitoring/dashboard/index.html); the page itself asks
                            Prometheus's HTTP API (CORS is open there by default) and draws with uPlot
    GET  /static/<file>     the page's script and style
    GET  /vendor/<file>     uPlot, installed from npm by `make install` (monitoring/dashboard/node_modules)
    GET  /config.json       where Prometheus is
    POST /api/alerts        Alertmanager's webhook: every alert kept (movierec.monitoring.alert_log)
    GET  /api/alerts        the kept alerts, newest last (?limit=N)
    GET  /healthz           200

The standard library's threading HTTP server: a loopback tool for one person and Alertmanager.
"""

from __future__ import annotations

import json
import logging
import mimetypes
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from movierec.monitoring import alert_log
from movierec.monitoring.stack import MONITORING_DIR
from movierec.settings import Settings

log = logging.getLogger(__name__)

PAGE_DIR = MONITORING_DIR / "dashboard"
VENDOR = {
    "uplot.js": PAGE_DIR / "node_modules" / "uplot" / "dist" / "uPlot.iife.min.js",
    "uplot.css": PAGE_DIR / "node_modules" / "uplot" / "dist" / "uPlot.min.css",
}
STATIC = {"dashboard.js", "dashboard.css"}
MAX_BODY = 10 * 1024 * 1024


def make_handler(settings: Settings) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "movierec-monitor"

        def log_message(self, format: str, *args: Any) -> None:
            log.debug("%s " + format, self.address_string(), *args)

        def do_GET(self) -> None:
            url = urlsplit(self.path)
            path = url.path
            if path in ("/", "/index.html"):
                self._file(PAGE_DIR / "index.html")
            elif path.startswith("/static/") and path.removeprefix("/static/") in STATIC:
                self._file(PAGE_DIR / path.removeprefix("/static/"))
            elif path.startswith("/vendor/") and path.removeprefix("/vendor/") in VENDOR:
                self._file(VENDOR[path.removeprefix("/vendor/")])
            elif path == "/config.json":
                self._json({"prometheus": f"http://127.0.0.1:{settings.prometheus_port}"})
            elif path == "/api/alerts":
                limit = int((parse_qs(url.query).get("limit") or ["200"])[0])
                self._json(alert_log.read(settings, limit))
            elif path == "/healthz":
                self._json({"status": "ok"})
            else:
                self._text(HTTPStatus.NOT_FOUND, "not found\n")

        def do_POST(self) -> None:
            if urlsplit(self.path).path != "/api/alerts":
                self._text(HTTPStatus.NOT_FOUND, "not found\n")
                return
            length = int(self.headers.get("Content-Length") or 0)
            if length > MAX_BODY:
                self._text(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, "notification too large\n")
                return
            try:
                lines = alert_log.records(json.loads(self.rfile.read(length) or b"null"))
            except (ValueError, alert_log.BadNotification) as exc:
                self._text(HTTPStatus.BAD_REQUEST, f"{exc}\n")
                return
            alert_log.append(settings, lines)
            for line in lines:
                log.info("alert %s %s %s", line["status"], line["alertname"], json.dumps(line["labels"]))
            self._json({"kept": len(lines)})

        def _file(self, path: Path) -> None:
            if not path.is_file():
                missing = (
                    "run `make install` (npm installs uPlot)" if "node_modules" in str(path) else "missing"
                )
                self._text(HTTPStatus.NOT_FOUND, f"{path.name}: {missing}\n")
                return
            body = path.read_bytes()
            self.send_response(HTTPStatus.OK)
            self.send_header("Content-Type", mimetypes.guess_type(path.name)[0] or "application/octet-stream")
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-cache")
            self.end_headers()
            self.wfile.write(body)

        def _json(self, value: object) -> None:
            body = json.dumps(value).encode()
            self.send_response(HTTPStatus.OK)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _text(self, status: HTTPStatus, text: str) -> None:
            body = text.encode()
            self.send_response(status)
            self.send_header("Content-Type", "text/plain; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    return Handler


def serve(settings: Settings) -> None:
    """Until interrupted (SIGTERM is turned into KeyboardInterrupt by the CLI)."""
    server = ThreadingHTTPServer(("127.0.0.1", settings.dashboard_port), make_handler(settings))
    server.daemon_threads = True
    log.info(
        "dashboard on http://127.0.0.1:%d/, alerts kept in %s",
        settings.dashboard_port,
        alert_log.log_path(settings),
    )
    try:
        server.serve_forever()
    finally:
        server.server_close()
