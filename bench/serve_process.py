"""``movierec serve`` as a child process, its output in a file, and what is left of its process group:
for the benches and tests that start it.

Used by bench/bench_worker_start.py, bench/bench_worker_kill.py,
bench/drill_stop_during_start.py and tests/test_server_live.py.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from movierec.settings import REPO_ROOT

NO_BROKER = "127.0.0.1:1"  # the service only queues its provenance records: no broker needed


def serve_env(
    home: Path, port: int, ops_port: int, bootstrap: str = NO_BROKER, **extra: str
) -> dict[str, str]:
    """This environment without movierec's, Sanic's or prometheus_client's settings, plus a private
    home, the two ports, 2 workers and the broker (``extra``: more settings)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MOVIEREC_", "SANIC_", "PROMETHEUS_"))}
    return env | {
        "MOVIEREC_HOME": str(home),
        "MOVIEREC_SERVER_PORT": str(port),
        "MOVIEREC_SERVER_OPS_PORT": str(ops_port),
        "MOVIEREC_SERVER_WORKERS": "2",
        "MOVIEREC_KAFKA_BOOTSTRAP": bootstrap,
        **extra,
    }


def start_serve(env: dict[str, str], log: Path, *, own_group: bool = False) -> subprocess.Popen:
    """``movierec serve`` with its output in ``log``; ``own_group``: in a process group of its own."""
    with log.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "movierec.cli", "serve"],
            cwd=REPO_ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=own_group,
        )


def group_members(pgid: int) -> list[str]:
    """Command lines of the live processes in process group ``pgid``."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if os.getpgid(int(entry.name)) == pgid:
                members.append((entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace"))
        except (ProcessLookupError, FileNotFoundError, PermissionError):
            continue
    return members
