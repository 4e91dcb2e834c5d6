"""Build time and peak memory of the simulated world (catalog + ground truth) at full scale.

The budget (issue 3): the full-scale catalog (27,000 movies, 1,000,000 users)
builds in under 60 s and 2 GB. Run on demand, in a temporary home by default:

    .venv/bin/python bench/bench_catalog.py [--users N] [--movies M] [--seed S] [--home DIR]

Each row is one stage, in order; "peak RSS" is the process's high-water mark
(``ru_maxrss``) at the end of the stage, so it only grows. Exit status 1 if the
cold build (world + truth) breaks the budget.
"""

from __future__ import annotations

import argparse
import dataclasses
import resource
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from movierec import settings as settings_module
from simulator.api import create_app
from simulator.catalog import load_world, world_dir
from simulator.truth import load_truth

BUDGET_SECONDS = 60.0
BUDGET_MB = 2048.0


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def main() -> int:
    defaults = settings_module.load()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=defaults.scale_users)
    parser.add_argument("--movies", type=int, default=defaults.scale_movies)
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--home", type=Path, help="state folder (default: a temporary one, removed after)")
    args = parser.parse_args()

    home = args.home or Path(tempfile.mkdtemp(prefix="bench-catalog-"))
    settings = dataclasses.replace(
        defaults, home=home, scale_users=args.users, scale_movies=args.movies, seed=args.seed
    )
    rows: list[tuple[str, float, float]] = []

    def stage(name: str, step: Callable[[], Any]) -> Any:
        started = time.perf_counter()
        result = step()
        rows.append((name, time.perf_counter() - started, peak_mb()))
        return result

    try:
        rows.append(("python + numpy/pyarrow/sanic imported", 0.0, peak_mb()))
        world = stage("world: build, write Parquet, load (cold)", lambda: load_world(settings))
        truth = stage("truth: build, write truth.npz (cold)", lambda: load_truth(settings, world))
        cold = rows[1][1] + rows[2][1]
        cold_peak = rows[2][2]
        stage("world: load from cache", lambda: load_world(settings))
        stage("truth: load from cache", lambda: load_truth(settings, world))
        stage("catalog API start-up (records to JSON)", lambda: create_app(world, settings))
        sizes = {p.name: p.stat().st_size / 2**20 for p in world_dir(settings).iterdir()}
        del truth
    finally:
        if args.home is None:
            shutil.rmtree(home, ignore_errors=True)

    print(f"\nworld {args.seed}-{args.users}x{args.movies}\n")
    print(f"| {'stage':<42} | {'seconds':>8} | {'peak RSS MB':>11} |")
    print(f"| {'-' * 42} | {'-' * 8}:| {'-' * 11}:|")
    for name, seconds, mb in rows:
        print(f"| {name:<42} | {seconds:>8.2f} | {mb:>11.0f} |")
    print("\nfiles: " + ", ".join(f"{name} {mb:.1f} MB" for name, mb in sorted(sizes.items())))
    ok = cold < BUDGET_SECONDS and cold_peak < BUDGET_MB
    verdict = "within" if ok else "OVER"
    print(
        f"\ncold build {cold:.1f} s (budget {BUDGET_SECONDS:.0f} s), peak {cold_peak:.0f} MB "
        f"(budget {BUDGET_MB:.0f} MB): {verdict} budget"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
