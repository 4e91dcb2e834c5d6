"""The simulator's real catalog API (what ``movierec world api`` runs) in a subprocess on a free port.

Shared by the tests of the API itself, of catalog sync and of the live scenarios: each wraps the
URL in what it needs (an admin client, a client id per request).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import pytest

from movierec.ops.broker.broker import free_port
from movierec.settings import REPO_ROOT, Settings


@contextmanager
def running_catalog_api(
    settings: Settings, rate: float | None = None, burst: int | None = None
) -> Iterator[str]:
    """``simulator.api.serve`` over ``settings``' world (cached in its home: build it first, so the
    server only loads it); yields the base URL once the API answers, stops it gracefully after."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MOVIEREC_", "SANIC_"))}
    env |= {
        "MOVIEREC_HOME": str(settings.home),
        "MOVIEREC_SCALE_USERS": str(settings.scale_users),
        "MOVIEREC_SCALE_MOVIES": str(settings.scale_movies),
        "MOVIEREC_SEED": str(settings.seed),
        "MOVIEREC_API_PORT": str(port),
    }
    limits = {"rate": rate, "burst": burst}
    keywords = "".join(f", {name}={value!r}" for name, value in limits.items() if value is not None)
    serve = (
        f"from movierec import settings; from simulator.api import serve; serve(settings.load(){keywords})"
    )
    log_path = settings.home / "api.log"
    with log_path.open("wb") as log:
        server = subprocess.Popen(
            [sys.executable, "-c", serve], cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if server.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"catalog API did not start:\n{log_path.read_text()}")
            try:
                httpx.get(f"{url}/_faults", timeout=2)  # the admin route: outside the rate limit
                break
            except httpx.TransportError:
                time.sleep(0.1)
        yield url
    finally:
        server.send_signal(signal.SIGINT)  # Sanic's graceful shutdown
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
