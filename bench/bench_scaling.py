"""How cost grows: precompute, ALS training and ingest at several world sizes, and at 2x the
interactions, with each figure's ratio to linear growth.

    .venv/bin/python bench/bench_scaling.py [--users 250000,500000,1000000] [--movies 27000]
        [--interactions-per-user 3] [--double-at 1000000] [--rank 64] [--als-iterations 2]
        [--interactions-per-line 3] [--stages precompute,als,ingest] [--json FILE] [--plot FILE]
        [--table-from FILE]

Each size is a row of (users, interactions): ``--interactions-per-user`` x users (3M at 1M users,
as the other benches' default), plus a row of twice the interactions at ``--double-at`` users.
The stages reuse the other benches' code, nothing copied:

- precompute: ``bench_precompute``'s model folder of random factors and uniform seen pairs (the
  interactions), then its timing of our job (every user's top-20, seen excluded, written to
  Parquet). Its size is users. The GEMM bound at the measured GFLOP/s is shown beside it.
  ``recommendForAllUsers`` and ``implicit`` are not run (the scaling question is about our job).
- ALS: ``bench_als_training``'s heavy-tailed synthetic interactions and its fit timing of our
  estimator, once with 1 iteration and once with ``--als-iterations``: seconds per iteration
  ``(t(N) - t(1)) / (N - 1)`` and the fixed cost ``t(1) - per iteration``, in wall seconds and in
  CPU seconds of the driver JVM (``local[*]``: the executors are in it), which other processes on a
  shared box disturb less than wall time. Its size is interactions.
- ingest: ``bench_ingest.py`` in a subprocess with ``--json``, ``interactions /
  --interactions-per-line`` lines (1M at 1M users), its own broker, the measured batch's wall
  seconds (``consume.ingest_batch`` in a fresh process). Its size is lines.

Precompute and ALS share one Spark session (``local[*]``), warmed up first by an untimed small
run of each, so the figures are the jobs' own costs, not the JVM's start or JIT. The table
gives, per stage and row, the seconds, the cost per unit of size, the ratio to the smallest row,
and that ratio over the size ratio: 1.00 is linear growth, below 1 is fixed costs being spread,
above 1 is worse than linear. Figures are written to ``--json`` after each measurement, so an
interrupted run keeps what it measured (``--table-from FILE`` prints its table again).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from bench_als_training import fit_cost, synthetic_interactions  # bench/ is the script's folder
from bench_precompute import build_model, gemm_flops, random_factors, seen_pairs, time_ours

from movierec import settings as settings_module
from movierec.models.candidates.als import als_estimator
from spark_jobs import precompute
from spark_jobs.progress import Cost, setup_logging
from spark_jobs.session import build_session

log = logging.getLogger("bench_scaling")
BENCH = Path(__file__).resolve().parent
# What each stage's size is counted in (the unit of "µs per ...") and the row field that holds it.
UNITS = {
    "precompute": "user",
    "ALS per iteration": "interaction",
    "ALS fixed cost": "interaction",
    "ALS fit": "interaction",
    "ingest": "line",
}
FIELD = {"user": "users", "interaction": "interactions", "line": "lines"}
WARM_UP_USERS = 20_000


def sizes(args: argparse.Namespace) -> list[dict[str, int]]:
    """The rows: (users, interactions, lines) for each size, then 2x interactions at ``--double-at``."""
    rows = [(users, args.interactions_per_user * users) for users in args.users]
    if args.double_at:
        rows.append((args.double_at, 2 * args.interactions_per_user * args.double_at))
    return [
        {"users": u, "interactions": int(i), "lines": int(i / args.interactions_per_line)} for u, i in rows
    ]


def save(results: dict[str, Any], path: Path | None) -> None:
    if path:
        path.write_text(json.dumps(results, indent=2))


def record(results: dict[str, Any], path: Path | None, stage: str, row: dict[str, int], **figures) -> None:
    """One measurement: kept in ``results`` and written out at once (an interrupted run keeps it)."""
    results["measurements"].append({"stage": stage, **row, **figures})
    save(results, path)
    log.info("measured %s at %s: %.1f s", stage, row, figures["seconds"])


def run_precompute(spark, home: Path, args: argparse.Namespace, row: dict[str, int]) -> tuple[float, float]:
    """Seconds of our precompute job on a ``row``-sized model, and its GEMM bound's seconds."""
    shape = argparse.Namespace(
        users=row["users"], movies=args.movies, rank=args.rank, interactions=row["interactions"]
    )
    settings = settings_module.load(
        {"MOVIEREC_HOME": str(home / f"precompute-{row['users']}-{row['interactions']}")}
    )
    factors = {
        "userFactors": random_factors(shape.users, shape.rank, 1),
        "itemFactors": random_factors(shape.movies, shape.rank, 2),
    }
    folder = build_model(spark, settings, shape, factors, seen_pairs(shape))
    del factors
    seconds, _cost, _lists = time_ours(spark, folder, shape.rank, shape.users, np.zeros(1, dtype=np.int64))
    bound = 2.0 * shape.users * shape.movies * shape.rank / args.gemm_flops
    return seconds, bound


def run_als(spark, home: Path, args: argparse.Namespace, row: dict[str, int], settings) -> tuple[Cost, Cost]:
    """The costs (wall and CPU) of our ALS estimator's fits with 1 and N iterations on ``row``'s
    synthetic interactions."""
    uidx, iidx, strength = synthetic_interactions(row["users"], args.movies, row["interactions"])
    path = home / f"interactions-{row['users']}-{row['interactions']}.parquet"
    pq.write_table(pa.table({"uidx": uidx, "iidx": iidx, "strength": strength}), path)
    del uidx, iidx, strength
    frame = spark.read.parquet(str(path))

    def estimator(iterations: int):
        return als_estimator(args.rank, settings.als_reg, settings.als_alpha, iterations, settings.seed)

    label = f"ALS {row['users']:,} x {row['interactions']:,}"
    short = fit_cost(spark, estimator(1), frame, f"{label}, 1 iteration")
    long = fit_cost(
        spark, estimator(args.als_iterations), frame, f"{label}, {args.als_iterations} iterations"
    )
    path.unlink()
    return short, long


def run_ingest(home: Path, args: argparse.Namespace, row: dict[str, int]) -> dict[str, Any]:
    """``bench_ingest.py`` at ``row``'s lines and users, in a subprocess; its measured batch's report."""
    out = home / f"ingest-{row['lines']}.json"
    command = [
        sys.executable,
        str(BENCH / "bench_ingest.py"),
        f"--lines={row['lines']}",
        f"--users={row['users']}",
        f"--movies={args.movies}",
        f"--json={out}",
    ]
    log.info("ingest: %s", " ".join(command[1:]))
    subprocess.run(command, check=True, cwd=BENCH.parent)  # its progress lines go to our stdout
    return json.loads(out.read_text())["reports"]["this tree"]


def measure(args: argparse.Namespace) -> dict[str, Any]:
    rows = sizes(args)
    results: dict[str, Any] = {
        "movies": args.movies,
        "rank": args.rank,
        "als_iterations": args.als_iterations,
        "cores": os.cpu_count(),
        "rows": rows,
        "measurements": [],
    }
    began = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="bench-scaling-") as tmp:
        home = Path(tmp)
        if {"precompute", "als"} & set(args.stages):
            settings = settings_module.load(
                {"MOVIEREC_HOME": str(home / "session"), "MOVIEREC_SPARK_DRIVER_MEMORY": args.driver_memory}
            )
            spark = build_session(settings, "bench-scaling")
            results["spark_master"] = spark.sparkContext.master
            precompute._ship_by_value()  # as bench_precompute does
            if "precompute" in args.stages:
                args.gemm_flops = max(gemm_flops(args.movies, args.rank))
                results["gemm_gflops"] = args.gemm_flops / 1e9
                log.info("warm-up: precompute at %s users (untimed)", f"{WARM_UP_USERS:,}")
                run_precompute(spark, home, args, {"users": WARM_UP_USERS, "interactions": 3 * WARM_UP_USERS})
                for n, row in enumerate(rows, 1):
                    log.info(
                        "precompute %d/%d: %s (%.0f s so far)", n, len(rows), row, time.monotonic() - began
                    )
                    seconds, bound = run_precompute(spark, home, args, row)
                    record(results, args.json, "precompute", row, seconds=seconds, gemm_bound=bound)
            if "als" in args.stages:
                warm = {"users": rows[0]["users"], "interactions": rows[0]["interactions"]}
                log.info("warm-up: ALS at %s (untimed)", warm)
                uidx, iidx, strength = synthetic_interactions(
                    warm["users"], args.movies, warm["interactions"]
                )
                path = home / "warm-up.parquet"
                pq.write_table(pa.table({"uidx": uidx, "iidx": iidx, "strength": strength}), path)
                estimator = als_estimator(args.rank, settings.als_reg, settings.als_alpha, 1, settings.seed)
                fit_cost(spark, estimator, spark.read.parquet(str(path)), "ALS warm-up")
                for n, row in enumerate(rows, 1):
                    log.info("ALS %d/%d: %s (%.0f s so far)", n, len(rows), row, time.monotonic() - began)
                    short, long = run_als(spark, home, args, row, settings)
                    # per iteration (t(N) - t(1)) / (N - 1), fixed t(1) - per iteration, in wall and CPU
                    each, each_cpu = (
                        (b - a) / (args.als_iterations - 1)
                        for a, b in (
                            (short.wall_seconds, long.wall_seconds),
                            (short.cpu_seconds, long.cpu_seconds),
                        )
                    )
                    record(results, args.json, "ALS per iteration", row, seconds=each, cpu_seconds=each_cpu)
                    record(
                        results,
                        args.json,
                        "ALS fixed cost",
                        row,
                        seconds=short.wall_seconds - each,
                        cpu_seconds=short.cpu_seconds - each_cpu,
                    )
                    record(
                        results,
                        args.json,
                        "ALS fit",
                        row,
                        seconds=long.wall_seconds,
                        cpu_seconds=long.cpu_seconds,
                        iterations=args.als_iterations,
                    )
            spark.stop()
        if "ingest" in args.stages:
            for n, row in enumerate(rows, 1):
                log.info("ingest %d/%d: %s (%.0f s so far)", n, len(rows), row, time.monotonic() - began)
                report = run_ingest(home, args, row)
                record(results, args.json, "ingest", row, seconds=report["wall"], stages=report["seconds"])
    results["total_seconds"] = time.monotonic() - began
    save(results, args.json)
    return results


def table(results: dict[str, Any]) -> list[str]:
    """The markdown table: per stage, each row against the stage's smallest (first) row."""
    lines = [
        "| stage | users | interactions | size | seconds | µs per unit | x smallest | ÷ linear"
        " | CPU s | CPU ÷ linear |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for stage, unit in UNITS.items():
        rows = [m for m in results["measurements"] if m["stage"] == stage]
        if not rows:
            continue
        base = rows[0]
        for m in rows:
            size = m[FIELD[unit]]
            cost_ratio = m["seconds"] / base["seconds"] if base["seconds"] > 0 else float("nan")
            size_ratio = size / base[FIELD[unit]]
            cpu = cpu_linear = "-"
            if "cpu_seconds" in m and base.get("cpu_seconds", 0) > 0:
                cpu = f"{m['cpu_seconds']:,.1f}"
                cpu_linear = f"{m['cpu_seconds'] / base['cpu_seconds'] / size_ratio:.2f}"
            lines.append(
                f"| {stage} | {m['users']:,} | {m['interactions']:,} | {size:,} {unit}s | {m['seconds']:,.1f}"
                f" | {1e6 * m['seconds'] / size:.2f} | {cost_ratio:.2f}x | {cost_ratio / size_ratio:.2f}"
                f" | {cpu} | {cpu_linear} |"
            )
    return lines


def plot(results: dict[str, Any], path: Path) -> None:
    """Log-log: seconds against size per stage, each with the linear line through its smallest row."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(7, 5))
    # the stages' totals: ALS's split into per iteration and fixed is a difference of two noisy fits
    for stage in ("precompute", "ALS fit", "ingest"):
        unit = UNITS[stage]
        rows = [m for m in results["measurements"] if m["stage"] == stage and m["seconds"] > 0]
        if not rows:
            continue
        x = np.array([m[FIELD[unit]] for m in rows], dtype=float) / rows[0][FIELD[unit]]
        y = np.array([m["seconds"] for m in rows])
        (line,) = axis.plot(x, y, "o-", label=f"{stage} (by {unit}s)")
        axis.plot(x, y[0] * x, ":", color=line.get_color(), alpha=0.6)
    axis.set_xscale("log")
    axis.set_yscale("log")
    axis.set_xticks([1, 2, 4, 8], ["1", "2", "4", "8"])
    axis.minorticks_off()
    axis.set_xlabel("size / smallest size (users, interactions or lines by stage)")
    axis.set_ylabel("seconds")
    axis.set_title("How cost grows (dotted: linear from the smallest size)")
    axis.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--users",
        type=lambda text: [int(n) for n in text.split(",")],
        default=[250_000, 500_000, 1_000_000],
        help="the sizes, comma-separated users",
    )
    parser.add_argument("--movies", type=int, default=27_000)
    parser.add_argument("--interactions-per-user", type=float, default=3.0)
    parser.add_argument(
        "--double-at", type=int, default=1_000_000, help="users of the 2x interactions row (0: none)"
    )
    parser.add_argument("--rank", type=int, default=64)
    parser.add_argument(
        "--als-iterations", type=int, default=2, help="N of the long fit (the short one has 1)"
    )
    parser.add_argument(
        "--interactions-per-line", type=float, default=3.0, help="ingest lines = interactions / this"
    )
    parser.add_argument(
        "--stages",
        type=lambda text: text.split(","),
        default=["precompute", "als", "ingest"],
        help="comma-separated, of precompute, als, ingest",
    )
    parser.add_argument("--driver-memory", default="6g", help="Spark driver memory")
    parser.add_argument("--json", type=Path, help="write every figure here (after each measurement)")
    parser.add_argument("--plot", type=Path, help="draw the log-log figure here (PNG)")
    parser.add_argument(
        "--table-from", type=Path, help="print the table of an earlier --json, measure nothing"
    )
    args = parser.parse_args()
    if args.als_iterations < 2:
        parser.error("--als-iterations must be at least 2: per iteration = (t(N) - t(1)) / (N - 1)")
    if unknown := set(args.stages) - {"precompute", "als", "ingest"}:
        parser.error(f"unknown stages: {', '.join(sorted(unknown))}")
    if args.table_from:
        results = json.loads(args.table_from.read_text())
    else:
        setup_logging()
        results = measure(args)
    gemm = f", GEMM {results['gemm_gflops']:.1f} GFLOP/s" if "gemm_gflops" in results else ""
    print(
        f"\nhow cost grows: {results['movies']:,} movies, rank {results['rank']}, ALS"
        f" {results['als_iterations']} iterations, {results['cores']} cores{gemm}"
    )
    print("\n".join(table(results)))
    print("÷ linear = (seconds / smallest's) / (size / smallest's): 1.00 is linear, < 1 sublinear")
    for m in results["measurements"]:
        if m["stage"] == "precompute":
            print(
                f"precompute {m['users']:,} users, {m['interactions']:,} seen:"
                f" {m['seconds'] / m['gemm_bound']:.2f}x its GEMM bound"
            )
    if args.plot:
        plot(results, args.plot)
        print(f"figure: {args.plot}")


if __name__ == "__main__":
    main()
