"""What a worker killed under load costs: `movierec serve` (2 workers) under `wrk -t2 -c8`, one
worker SIGKILLed in the middle, then wrk's count of requests that failed (socket errors and
non-2xx), the seconds until the replacement logged "Worker ready", and the service's
`movierec_worker_replacements_total`. The issue's measurement before the keeper: 3 failed of
157,446, and the worker never came back.

    .venv/bin/python bench/bench_worker_kill.py [--seconds 20] [--users 100000]
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import sqlite3
import subprocess
import tempfile
import time
from pathlib import Path

import httpx
from serve_process import serve_env, start_serve  # bench/ is the script's folder

from movierec.ops.broker.broker import free_port

VERSION = "20261128T040000Z"


def serving_file(home: Path, users: int) -> None:
    serving = home / "serving"
    serving.mkdir(parents=True)
    path = serving / f"recs-{VERSION}.sqlite"
    fallback = ",".join(f"popular+{n}+2001" for n in range(20))
    meta = {
        "model_version": VERSION,
        "created_at": "2026-11-28T04:00:00+00:00",
        "git_commit": "bench",
        "params": "{}",
        "data_manifest": "{}",
        "metrics": '{"recall_at_20": 0.1}',
        "row_count": str(users),
        "fallback": fallback,
    }
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE recs(user_id INTEGER PRIMARY KEY, items TEXT NOT NULL)")
        db.execute("CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT)")
        rows = (
            (u, ",".join(f"movie+{u % 997}+{n}+{1990 + n}" for n in range(20))) for u in range(1, users + 1)
        )
        db.executemany("INSERT INTO recs VALUES (?, ?)", rows)
        db.executemany("INSERT INTO meta VALUES (?, ?)", meta.items())
    os.symlink(path.name, serving / "current")


def ready(log: Path) -> list[str]:
    """Pids of workers that logged "Worker ready" (Sanic logs each line twice)."""
    return re.findall(r"Worker ready \[(\d+)\]", log.read_text(errors="replace"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=int, default=20)
    parser.add_argument("--users", type=int, default=100_000)
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="bench-worker-kill-"))
    serving_file(home, args.users)
    port, ops_port = free_port(), free_port()
    env = serve_env(home, port, ops_port)
    log = home / "serve.log"
    server = start_serve(env, log, own_group=True)
    try:
        while len(set(ready(log))) < 2:
            time.sleep(0.05)
        script = home / "users.lua"
        script.write_text(
            f'math.randomseed(7)\nrequest = function() return wrk.format("GET", "/recommend/" .. '
            f"math.random(1, {args.users})) end\n"
        )
        wrk = subprocess.Popen(
            ["wrk", "-t2", "-c8", f"-d{args.seconds}s", "-s", str(script), f"http://127.0.0.1:{port}"],
            stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        time.sleep(args.seconds / 2)
        first = set(ready(log))
        victim = int(min(first))
        killed = time.monotonic()
        os.kill(victim, signal.SIGKILL)
        while not set(ready(log)) - first and time.monotonic() - killed < 60:
            time.sleep(0.01)
        replaced = time.monotonic() - killed
        output = wrk.communicate()[0]
        metrics = httpx.get(f"http://127.0.0.1:{ops_port}/metrics").text  # the operator port
        count = re.search(r"^movierec_worker_replacements_total (\S+)", metrics, re.M)
        print(output)
        requests = re.search(r"(\d+) requests in", output)
        errors = re.search(r"Socket errors: (.*)", output)
        non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
        sockets = errors[1] if errors else "none"
        print(f"requests {requests[1] if requests else '?'}; socket errors: {sockets}; "
              f"non-2xx: {non2xx[1] if non2xx else 0}")  # fmt: skip
        print(f"replacement ready {replaced:.2f} s after SIGKILL; movierec_worker_replacements_total "
              f"{count[1] if count else 'missing'}")  # fmt: skip
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(30)


if __name__ == "__main__":
    main()
