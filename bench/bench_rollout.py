"""A service image rolled over compose.yaml's replicas under load, with a file swap: failures and p99.

One run, same machine:
1. a full-scale serving file (1M users, 20 ids each) and a copy as a second version;
2. compose.yaml's serving part under a private project (bench/fleet.py): two replicas
   of the old image (2 workers each, read-only root, the serving folder mounted
   read-only) behind its HAProxy, a private broker taking the provenance records;
   the new image is the same Dockerfile built with another revision label (a new
   commit's image: a distinct image id, every layer cached);
3. phase 1, fixed rate: bench/fixed_rate.py (open loop: latency from each request's
   due time, the site's 800 ms timeout) at ``--rate`` req/s over random users, for
   ``--before`` seconds, then during the rollout to the new image (drain, stop, start,
   health, re-admit, one replica at a time; the serving file re-pointed to the second
   version once the first replica is done), then ``--after`` seconds. Failed (no answer
   or not 200) and p50/p99/max per window, and p99 during / before;
4. phase 2, closed loop: wrk with ``--connections`` connections (as fast as the machine
   goes) for the whole rollback to the old image: wrk's non-2xx and socket errors.

    .venv/bin/python bench/bench_rollout.py [--users 1000000] [--rate 300] [--before 20] [--after 10]

Needs the images (``make image IMAGES="service loadbalancer"``), podman-compose
(requirements.txt) and wrk (containers/install-tools.sh).
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from bench_serving import copy_as_version, lua_script, point_current, progress, run_wrk, write_full_file
from fixed_rate import Answer, FixedRateLoad, Window, window
from fleet import start_fleet

from movierec.ops import rollout
from movierec.ops.broker import broker
from movierec.ops.broker.broker import free_port
from movierec.settings import REPO_ROOT

OLD = "localhost/movierec-service:latest"
NEW = "localhost/movierec-service:bench-rollout"
LB_IMAGE = "localhost/movierec-loadbalancer:latest"


def build_new_image() -> None:
    """The same Dockerfile with another revision label: what a new commit's image differs by at least."""
    env = os.environ | {
        "IMAGE_TAG": "bench-rollout",
        "GIT_COMMIT": f"bench-{time.time():.0f}",
        "TAG_LATEST": "0",
    }
    subprocess.run([REPO_ROOT / "containers" / "build-images.sh", "service"], env=env, check=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=1_000_000)
    parser.add_argument("--rate", type=float, default=300.0, help="requests/s of the fixed-rate phase")
    parser.add_argument("--before", type=float, default=20.0, help="seconds of load before the rollout")
    parser.add_argument("--after", type=float, default=10.0, help="seconds of load after the rollout")
    parser.add_argument(
        "--connections", type=int, default=32, help="wrk connections of the closed-loop phase"
    )
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    args = parser.parse_args()
    for tool in ("podman", "wrk"):
        if shutil.which(tool) is None:
            sys.exit(f"bench_rollout needs {tool}: containers/install-tools.sh installs it")
    for image in (OLD, LB_IMAGE):
        if subprocess.run(["podman", "image", "exists", image], check=False).returncode != 0:
            sys.exit(f"no image {image}: make image IMAGES='service loadbalancer' first")

    work = Path(tempfile.mkdtemp(prefix="bench-rollout-"))
    work.chmod(0o755)
    state = work / "state"
    serving = state / "serving"
    serving.mkdir(parents=True)
    kafka = broker.private_settings(work / "kafka", MOVIEREC_KAFKA_HEAP="512m")
    fleet = None
    try:
        progress("building the new image (the same Dockerfile, another revision label)")
        build_new_image()
        progress(f"writing a {args.users:,}-user serving file and a copy as a second version")
        write_full_file(serving / "recs-bench-a.sqlite", "bench-a", args.users)
        copy_as_version(serving / "recs-bench-a.sqlite", serving / "recs-bench-b.sqlite", "bench-b")
        point_current(serving, "bench-a")
        progress("starting a private broker, then compose.yaml's two replicas and the load balancer")
        broker.start(kafka)
        broker.ensure_topics(kafka)
        ports = (free_port(), free_port(), free_port(), free_port())
        fleet = start_fleet(state, "bench-rollout", ports, OLD, LB_IMAGE, kafka.kafka_bootstrap)
        rng = random.Random(5)
        users = [rng.randint(1, args.users) for _ in range(100_000)]

        progress(f"phase 1: {args.rate:.0f} req/s fixed rate; rollout of {NEW} after {args.before:.0f} s")
        load = FixedRateLoad(lambda i: f"{fleet.url}/recommend/{users[i % len(users)]}", args.rate).start()
        time.sleep(args.before)
        began = load.now()
        marks: list[tuple[float, str]] = []

        def step(s: rollout.Step) -> None:
            marks.append((load.now(), f"{s.replica}: {s.what}"))
            progress(f"  {s}")
            if s.what.startswith("done") and s.replica == fleet.replicas[0]:
                point_current(serving, "bench-b")
                marks.append((load.now(), "serving file: current -> bench-b"))
                progress("  serving file: current -> bench-b")

        rollout.Rollout(fleet.lb, NEW, progress=step).run()
        ended = load.now()
        time.sleep(args.after)
        answers = load.stop()
        windows = [
            window("before", answers, 0.0, began),
            window("during", answers, began, ended),
            window("after", answers, ended, ended + args.after),
            window("all", answers, 0.0, ended + args.after),
        ]
        timeline = [window(f"{t:5.0f} s", answers, t, t + 5) for t in range(0, int(ended + args.after), 5)]

        progress(f"phase 2: wrk, {args.connections} connections, during a rollback to {OLD}")
        ids_file = work / "ids.txt"
        ids_file.write_text("\n".join(map(str, users[:20_000])) + "\n")
        script = lua_script(work, ids_file, "pick")
        outcome: dict[str, object] = {}
        seconds = 90
        runner = threading.Thread(
            target=lambda: outcome.update(wrk=run_wrk(fleet.url, script, seconds, args.connections))
        )
        runner.start()
        time.sleep(5)
        wrk_began = time.monotonic()
        rollout.Rollout(fleet.lb, OLD, progress=lambda s: progress(f"  {s}")).run()
        rollback_seconds = time.monotonic() - wrk_began
        runner.join()
        report(args, windows, timeline, marks, answers, outcome["wrk"], rollback_seconds, seconds)
    finally:
        if fleet is not None:
            fleet.down()
        broker.stop(kafka)
        subprocess.run(["podman", "rmi", NEW], capture_output=True, check=False)
        if args.keep:
            progress(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


def report(
    args: argparse.Namespace,
    windows: list[Window],
    timeline: list[Window],
    marks: list[tuple[float, str]],
    answers: list[Answer],
    wrk: object,
    rollback_seconds: float,
    wrk_seconds: int,
) -> None:
    print(f"\n== phase 1: fixed rate {args.rate:.0f} req/s, {args.users:,}-user serving file")
    for w in windows:
        print(w.line())
    before, during = windows[0], windows[1]
    print(f"p99 during / before: {during.p99_ms / before.p99_ms:.2f}x")
    errors = sorted({a.error or str(a.status) for a in answers if a.status != 200})
    if errors:
        print("failures:", "; ".join(errors[:5]))
    print("\ntimeline (5 s windows; rollout steps at their load-clock time):")
    events = sorted(marks)
    for w in timeline:
        start = float(w.name.split()[0])
        print("  " + w.line())
        for at, what in events:
            if start <= at < start + 5:
                print(f"      {at:6.1f} s  {what}")
    print(f"\n== phase 2: wrk -c{args.connections} {wrk_seconds} s; rollback {rollback_seconds:.0f} s")
    print(
        f"{wrk.requests:,} requests, {wrk.failed} failed (non-2xx + socket errors), "  # type: ignore[attr-defined]
        f"{wrk.rate:,.0f} req/s, p50 {wrk.p50:.2f} ms, p99 {wrk.p99:.2f} ms"  # type: ignore[attr-defined]
    )


if __name__ == "__main__":
    main()
