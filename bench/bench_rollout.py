"""A service image rolled over compose.yaml's replicas under load, with a file swap: failures and p99.

One run, same machine:
1. a full-scale serving file (1M users, 20 ids each) and a copy as a second version;
2. compose.yaml's serving part under a private project (bench/fleet.py): two replicas
   of the old image (2 workers each, read-only root, the serving folder mounted
   read-only) behind its HAProxy, a private broker taking the provenance records;
   the new image is the same Dockerfile built with another revision label (a new
   commit's image: a distinct image id, every layer cached);
3. phase 1, paced load: wrk with ``--connections`` connections, each waiting
   ``--delay-ms`` between requests (bench_serving's fixed-rate form), random users:
   ``--before`` seconds with nothing happening, then ``--during`` seconds in which the
   rollout to the new image runs (drain, stop, start, health, re-admit, one replica at a
   time; the serving file re-pointed to the second version once the first replica is
   done). Failed (socket errors + non-2xx) and p50/p99 of each, and p99 during / before;
4. phase 2, closed loop: wrk with 4x the connections and no delay (as fast as the box
   goes) during the rollback to the old image: failed requests.

wrk, not a Python client: a Python HTTP client costs ~3 ms of CPU per request here and,
on a busy 2-core box, falls behind its own schedule (bench/fixed_rate.py, which the tests
use for correctness at 25 req/s, measured p50s of seconds that were its own).

    .venv/bin/python bench/bench_rollout.py [--users 1000000] [--before 20] [--during 120]

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
from collections.abc import Callable
from pathlib import Path

from bench_serving import (
    Result,
    copy_as_version,
    lua_script,
    point_current,
    progress,
    run_wrk,
    write_full_file,
)
from fleet import start_fleet

from movierec import serving_file
from movierec.ops import rollout
from movierec.ops.broker import broker
from movierec.ops.broker.broker import free_port
from movierec.settings import REPO_ROOT

OLD = "localhost/movierec-service:latest"
NEW = "localhost/movierec-service:bench-rollout"
LB_IMAGE = "localhost/movierec-loadbalancer:latest"
FIRST, SECOND = "20261128T040000Z", "20261129T040000Z"  # two serving ids (versions)


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
    parser.add_argument("--connections", type=int, default=8, help="wrk connections of the paced phase")
    parser.add_argument("--delay-ms", type=int, default=10, help="each connection's pause between requests")
    parser.add_argument("--before", type=int, default=20, help="seconds of paced load before the rollout")
    parser.add_argument("--during", type=int, default=120, help="seconds of paced load the rollout runs in")
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
        first = serving_file.file_path(serving, FIRST)
        write_full_file(first, FIRST, args.users)
        copy_as_version(first, serving_file.file_path(serving, SECOND), SECOND)
        point_current(serving, FIRST)
        progress("starting a private broker, then compose.yaml's two replicas and the load balancer")
        broker.start(kafka)
        broker.ensure_topics(kafka)
        ports = (free_port(), free_port(), free_port(), free_port())
        fleet = start_fleet(state, "bench-rollout", ports, OLD, LB_IMAGE, kafka.kafka_bootstrap)
        rng = random.Random(5)
        ids_file = work / "ids.txt"
        ids_file.write_text("\n".join(str(rng.randint(1, args.users)) for _ in range(100_000)) + "\n")
        paced = lua_script(work, ids_file, "paced", delay_ms=args.delay_ms)
        url = fleet.url

        progress(f"phase 1: wrk -c{args.connections}, {args.delay_ms} ms pause, {args.before} s before")
        before = run_wrk(url, paced, args.before, args.connections)
        progress(f"  {before}")

        def swap_after_first(step: rollout.Step) -> None:
            progress(f"  {step}")
            if step.what.startswith("done") and step.replica == fleet.replicas[0]:
                point_current(serving, SECOND)
                progress(f"  serving file: current -> {SECOND}")

        during, took = under_load(
            lambda: run_wrk(url, paced, args.during, args.connections),
            lambda: rollout.Rollout(fleet.lb, NEW, progress=swap_after_first).run(),
        )
        progress(f"  {during}")
        assert_swapped(url)

        connections = 4 * args.connections
        progress(f"phase 2: wrk -c{connections} unpaced during the rollback to {OLD}")
        unpaced = lua_script(work, ids_file, "unpaced")
        back = rollout.Rollout(fleet.lb, OLD, progress=lambda s: progress(f"  {s}"))
        flat_out, took_back = under_load(lambda: run_wrk(url, unpaced, args.during, connections), back.run)
        report(args, before, during, took, flat_out, took_back)
    finally:
        if fleet is not None:
            fleet.down()
        broker.stop(kafka)
        subprocess.run(["podman", "rmi", NEW], capture_output=True, check=False)
        if args.keep:
            progress(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


def under_load(load: Callable[[], Result], action: Callable[[], object]) -> tuple[Result, float]:
    """``action`` run 5 s into ``load`` (in a thread); the load's result and the action's seconds.
    The action must end before the load does, so every step of it ran under load."""
    outcome: list[Result] = []
    runner = threading.Thread(target=lambda: outcome.append(load()))
    runner.start()
    time.sleep(5)
    began = time.monotonic()
    action()
    took = time.monotonic() - began
    if not runner.is_alive():
        progress(f"warning: the load ended before the rollout did ({took:.0f} s): raise --during")
    runner.join()
    return outcome[0], took


def assert_swapped(url: str) -> None:
    import httpx

    versions = {httpx.get(f"{url}/recommend/{user}").headers["x-model-version"] for user in range(1, 50)}
    if versions != {SECOND}:
        raise SystemExit(f"after the rollout and swap the replicas answer from {versions}, not {SECOND}")


def report(
    args: argparse.Namespace, before: Result, during: Result, took: float, flat_out: Result, took_back: float
) -> None:
    print(f"\n== {args.users:,}-user serving file; 2 replicas x 2 workers behind HAProxy")
    print(f"paced load (wrk -c{args.connections}, {args.delay_ms} ms pause per connection):")
    print(f"  before:  {line(before)}")
    print(f"  during:  {line(during)}   (the rollout + swap took {took:.0f} s of these {args.during} s)")
    print(f"  p99 during / before: {during.p99_ms / before.p99_ms:.2f}x")
    print(f"closed loop (wrk -c{4 * args.connections}, no pause) during the rollback ({took_back:.0f} s):")
    print(f"  {line(flat_out)}")


def line(result: Result) -> str:
    return (
        f"{result.requests:>7,} requests {result.failed:>4} failed  {result.requests_per_s:7.0f} req/s  "
        f"p50 {result.p50_ms:7.2f} ms  p99 {result.p99_ms:7.2f} ms"
    )


if __name__ == "__main__":
    main()
