"""A stop during the start, many times: how often ``movierec serve`` ends cleanly, fails, or hangs.

``tests/test_server_live.py`` stops the service once at each moment of its start;
a race that spoils a few stops in a hundred passes there most days. This drill repeats
one moment ``--runs`` times, with ``--load`` busy processes beside it (a shared CI
box), and counts the outcomes: exit 0 with "recommendation service stopped" and
no process of its group left (clean); another exit code or a process left
(failed); no exit within 30 s (hung, then SIGKILLed). The SIGTERM goes at a random
point 0-``--delay-ms`` ms after the moment's log line (100: as the test's 0.1 s
polling does; a smaller one aims at the first steps after the line).

    .venv/bin/python bench/drill_stop_during_start.py [--runs 60] [--load 3] [--delay-ms 100]
        [--moment before_the_workers]

No broker is needed: the service only queues its provenance records.
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from serve_process import group_members, serve_env, start_serve  # bench/ is the script's folder

from movierec.ops.broker.broker import free_port

MOMENTS = {  # the log line after which the stop is sent (as in tests/test_server_live.py)
    "before_the_workers": "recommendation service on",
    "while_the_workers_start": "Starting worker",
}
PATIENCE = 30.0


def one_stop(home: Path, moment: str, delay_ms: float) -> tuple[str, str]:
    """Start, stop at ``moment``; the outcome and, unless clean, the log's end."""
    env = serve_env(home, free_port(), free_port())
    log = home / "serve.log"
    process = start_serve(env, log, own_group=True)
    try:
        deadline = time.monotonic() + 60
        while MOMENTS[moment] not in log.read_text(errors="replace") and process.poll() is None:
            if time.monotonic() > deadline:
                break
            time.sleep(0.002)
        time.sleep(random.uniform(0.0, delay_ms / 1000))
        process.send_signal(signal.SIGTERM)
        code = process.wait(timeout=PATIENCE)
    except subprocess.TimeoutExpired:
        return "hung", log.read_text(errors="replace")[-1500:]
    finally:
        if process.poll() is None:  # hung, or the drill itself interrupted: leave nothing running
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    deadline = time.monotonic() + 10
    while len(group_members(process.pid)) and time.monotonic() < deadline:
        time.sleep(0.1)
    text = log.read_text(errors="replace")
    left = len(group_members(process.pid))
    if left:
        os.killpg(process.pid, signal.SIGKILL)
    if code == 0 and "recommendation service stopped" in text and not left:
        return "clean", ""
    return f"exit {code}" + (f", {left} left" if left else ""), text[-1500:]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=60)
    parser.add_argument("--load", type=int, default=3, help="busy processes beside the service")
    parser.add_argument("--delay-ms", type=float, default=100.0, help="the stop's latest time after the line")
    parser.add_argument("--moment", choices=list(MOMENTS), default="before_the_workers")
    args = parser.parse_args()
    hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(args.load)]
    outcomes: Counter[str] = Counter()
    try:
        for run in range(1, args.runs + 1):
            with tempfile.TemporaryDirectory(prefix="movierec-stop-drill-") as home:
                outcome, tail = one_stop(Path(home), args.moment, args.delay_ms)
            outcomes[outcome] += 1
            print(f"run {run}/{args.runs}: {outcome}", flush=True)
            if tail:
                print("  " + tail.replace("\n", "\n  "), flush=True)
    finally:
        for hog in hogs:
            hog.kill()
            hog.wait()
    print(
        f"\n{args.moment}, {args.runs} stops 0-{args.delay_ms:g} ms after its line, "
        f"beside {args.load} busy processes:"
    )
    for outcome, count in outcomes.most_common():
        print(f"  {outcome:<20} {count:>4}  ({count / args.runs:.0%})")


if __name__ == "__main__":
    main()
