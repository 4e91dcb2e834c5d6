"""How fast a service worker starts: its imports against Sanic's own, and ``movierec serve`` to ready.

A worker is a spawned process: it imports Sanic and then what ``create_app``
needs. The longer that takes, the longer a stop can land in the middle of it and
the longer a replaced worker is missing. Side by side in one run, each in a fresh
interpreter, median of ``--repeat``:

- ``import sanic`` (the framework's floor), ``import server.app`` (what a worker
  imports), and the ratio of the two;
- ``movierec serve`` with 2 workers, from start until both logged "Worker ready".

    .venv/bin/python bench/bench_worker_start.py [--repeat 7]
"""

from __future__ import annotations

import argparse
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from serve_process import serve_env, start_serve  # bench/ is the script's folder

from movierec.ops.broker.broker import free_port

REPO = Path(__file__).resolve().parents[1]


def import_seconds(module: str) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", f"import {module}"], cwd=REPO, check=True)
    return time.perf_counter() - started


def serve_to_ready_seconds(home: Path) -> float:
    env = serve_env(home, free_port(), free_port())
    log = home / "serve.log"
    started = time.perf_counter()
    process = start_serve(env, log)
    try:
        while len(set(re.findall(r"Worker ready \[(\d+)\]", log.read_text(errors="replace")))) < 2:
            if process.poll() is not None or time.perf_counter() - started > 60:
                raise RuntimeError(f"movierec serve did not come up: {log.read_text()[-2000:]}")
            time.sleep(0.005)
        return time.perf_counter() - started
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args(argv)
    rows: dict[str, list[float]] = {"import sanic": [], "import server.app": [], "serve to ready": []}
    with tempfile.TemporaryDirectory() as tmp:
        for run in range(args.repeat):
            rows["import sanic"].append(import_seconds("sanic"))
            rows["import server.app"].append(import_seconds("server.app"))
            home = Path(tmp) / f"run{run}"
            home.mkdir()
            rows["serve to ready"].append(serve_to_ready_seconds(home))
            print(f"run {run + 1}/{args.repeat} done", file=sys.stderr)
    medians = {name: statistics.median(values) for name, values in rows.items()}
    for name, value in medians.items():
        print(f"{name:<20} median {value:6.3f} s  ({', '.join(f'{v:.2f}' for v in rows[name])})")
    print(f"worker imports / Sanic's own: {medians['import server.app'] / medians['import sanic']:.2f}x")


if __name__ == "__main__":
    main()
