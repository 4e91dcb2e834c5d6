"""Feedback loops over simulated retrain cycles: ``follow`` high vs low, and exploration slots.

    flock /tmp/movierec-heavy.lock .venv/bin/python bench/bench_feedback_loop.py \\
        [--users 10000] [--movies 1000] [--history-days 4] [--sessions 6000] [--cycle-days 2]
        [--cycles 4] [--high 0.9] [--low 0.05] [--explore 3] [--arms high,low,explore]
        [--work DIR] [--json out.json] [--plot docs/figures/feedback-loop.png]

One world, one initial history (the site's own popularity list, the backfill's default follow,
the calibrated viewers) and one first model (prepare, train, evaluate, precompute with real Spark,
ALS rank 16 only). Then three arms from copies of that lake: ``follow`` high, low, and high with
``--explore`` exploration slots (MOVIEREC_EXPLORATION_SLOTS). Each cycle
(simulator.feedback_check): the last serving file gives every user their list; viewers choose
with the arm's ``follow`` knob (the same random stream in every arm; ``--fit-power`` sets how
readily they look at a list at all); the sessions go into the lake as an ingest batch; the
product retrains on everything. Per cycle and arm: the loop measures (movierec.feedback.measures)
of what was shown and watched, and the truth's mean affinity and enjoyment of the watched movies.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import tempfile
import time
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
from world_scale import retrain_options, start_logging  # bench/ is the script's folder

from movierec import lake
from movierec import settings as settings_module
from movierec.files import save_figure
from movierec.models import candidates
from simulator import commands, feedback_check, spam_check

log = logging.getLogger("bench_feedback_loop")
CANDIDATE = "als_r16"
MEASURES = (
    ("exposure_gini", "exposure Gini"),
    ("exposure_top20", "exposure top-20 share"),
    ("watch_gini", "watch Gini"),
    ("watch_top20", "watch top-20 share"),
    ("list_share", "starts from our lists"),
    ("genres_per_user", "genres per user"),
    ("genre_entropy", "genre entropy per user (bits)"),
    ("mean_enjoyment", "true enjoyment of watches"),
)


def bench_settings(home: Path, args: argparse.Namespace) -> settings_module.Settings:
    return spam_check.bench_settings(home, args.users, args.movies, args.iterations, args.driver_memory)


def version(cycle: int) -> str:
    return f"202612{cycle + 1:02d}T000000Z"


def run_arm(
    args: argparse.Namespace,
    spark: Any,
    base: settings_module.Settings,
    home: Path,
    arm: dict[str, Any],
    fitting: list[Any],
) -> list[dict[str, Any]]:
    """The cycles of one arm, from a copy of the base lake and first model."""
    # not Spark's scratch: another arm's JVM may be using it
    shutil.copytree(base.home, home, ignore=shutil.ignore_patterns("spark-local"))
    settings = replace(base, home=home, exploration_slots=arm["explore"])
    site = feedback_check.load_site(settings, args.fit_power)
    path = settings.serving_dir / f"recs-{version(0)}.sqlite"
    if arm["explore"]:  # the first model's lists, with exploration slots
        path.unlink()
        path = Path(str(spam_check.precompute_only(settings, spark, version(0))))
    offset = max(r.end for m in lake.load_manifests(settings) for r in m.ranges)
    start = spam_check.START + timedelta(days=args.history_days)
    rows = []
    for cycle in range(1, args.cycles + 1):
        t0 = time.monotonic()
        lists, fallback = feedback_check.served_lists(path, site)
        rng = np.random.default_rng([args.seed, cycle])  # the same viewers and draws in every arm
        sessions = feedback_check.cycle_sessions(
            rng,
            site,
            lists,
            fallback,
            follow=arm["follow"],
            start=start,
            days=args.cycle_days,
            sessions_per_day=args.sessions,
        )
        measured = feedback_check.cycle_measures(site, sessions).to_json()
        truth = feedback_check.truth_of(site, sessions)
        offset = feedback_check.append_sessions(settings, rng, site, sessions, offset)
        start += timedelta(days=args.cycle_days)
        row = {
            "arm": arm["name"],
            "cycle": cycle,
            **measured,
            "mean_affinity": truth.mean_affinity,
            "mean_enjoyment": truth.mean_enjoyment,
            "seconds": round(time.monotonic() - t0, 1),
        }
        log.info("cycle row %s", json.dumps(row))  # before the retrain: a long run shows rows early
        rows.append(row)
        if cycle < args.cycles:
            path = spam_check.served_version(settings, spark, version(cycle), fitting, defence=False)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=10_000)
    parser.add_argument("--movies", type=int, default=1_000)
    parser.add_argument("--history-days", type=int, default=4)
    parser.add_argument("--sessions", type=int, default=6_000, help="sessions per day")
    parser.add_argument("--cycle-days", type=float, default=2.0, help="days of sessions between retrains")
    parser.add_argument("--cycles", type=int, default=4, help="cycles served (cycles - 1 retrains per arm)")
    parser.add_argument("--high", type=float, default=0.9, help="follow knob of the high arm")
    parser.add_argument("--low", type=float, default=0.05, help="follow knob of the low arm")
    parser.add_argument("--explore", type=int, default=3, help="exploration slots of the explore arm")
    parser.add_argument("--arms", default="high,low,explore", help="which arms to run now (any of the three)")
    parser.add_argument(
        "--work",
        type=Path,
        help="keep the first model and each arm's rows here, so arms can run one at a time "
        "(each in its own lock hold); the table and plot cover every arm found there",
    )
    parser.add_argument(
        "--fit-power",
        type=float,
        default=1.0,
        help="viewers look at a list with probability follow x fit ** power; the calibrated 10 makes "
        "a list that fits less than perfectly almost never looked at (simulator.viewers)",
    )
    parser.add_argument("--seed", type=int, default=7)
    retrain_options(parser)
    args = parser.parse_args()
    start_logging(logging.CRITICAL)
    arms = {
        "high": {"name": f"follow {args.high:g}", "follow": args.high, "explore": 0},
        "low": {"name": f"follow {args.low:g}", "follow": args.low, "explore": 0},
        "explore": {"name": f"follow {args.high:g} + {args.explore} exploration slots", "follow": args.high,
                    "explore": args.explore},
    }  # fmt: skip
    wanted = [key for key in args.arms.split(",") if key]
    unknown = set(wanted) - set(arms)
    if unknown:
        parser.error(f"unknown arms {sorted(unknown)} (known: {', '.join(arms)})")
    began = time.monotonic()
    from spark_jobs.session import build_session

    with tempfile.TemporaryDirectory(prefix="bench-feedback-") as scratch:
        work = args.work or Path(scratch)
        base = bench_settings(work / "base", args)
        ready = work / "base-ready.json"
        if not ready.exists():
            shutil.rmtree(base.home, ignore_errors=True)
            site = commands.load_history(base)
            spam_check.simulated_lake(base, site, days=args.history_days, sessions_per_day=args.sessions)
        spark = build_session(base, "bench-feedback-loop")
        try:
            fitting = [c for c in candidates.default_candidates(base) if c.name == CANDIDATE]
            if not ready.exists():
                spam_check.served_version(base, spark, version(0), fitting, defence=False)
                ready.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}}) + "\n")
            for key in wanted:
                shutil.rmtree(work / f"arm-{key}", ignore_errors=True)
                rows = run_arm(args, spark, base, work / f"arm-{key}", arms[key], fitting)
                shutil.rmtree(work / f"arm-{key}")  # only the figures are kept
                (work / f"rows-{key}.json").write_text(json.dumps(rows, indent=2) + "\n")
        finally:
            spark.stop()
        names = [arms[key]["name"] for key in arms if (work / f"rows-{key}.json").exists()]
        rows = [r for key in arms if (work / f"rows-{key}.json").exists()
                for r in json.loads((work / f"rows-{key}.json").read_text())]  # fmt: skip
    results = {"args": {k: str(v) for k, v in vars(args).items()}, "rows": rows,
               "seconds": round(time.monotonic() - began, 1)}  # fmt: skip
    print_table(rows, names)
    print(f"\n{results['seconds']:.0f} s in this run")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    if args.plot:
        plot(rows, names, args.plot)


def print_table(rows: list[dict[str, Any]], arms: list[str]) -> None:
    cycles = sorted({r["cycle"] for r in rows})
    by = {(r["arm"], r["cycle"]): r for r in rows}
    print("\n| measure | cycle | " + " | ".join(arms) + " |")
    print("| --- | ---: | " + " | ".join("---:" for _ in arms) + " |")
    for key, label in MEASURES:
        for cycle in cycles:
            cells = []
            for arm in arms:
                value = by.get((arm, cycle), {}).get(key)  # an arm may have run fewer cycles
                cells.append("-" if value is None else f"{value:.3f}")
            print(f"| {label} | {cycle} | " + " | ".join(cells) + " |")


def plot(rows: list[dict[str, Any]], arms: list[str], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 4, figsize=(15, 6.5))
    for ax, (key, label) in zip(axes.flat, MEASURES, strict=True):
        for arm in arms:
            mine = sorted((r for r in rows if r["arm"] == arm), key=lambda r: r["cycle"])
            ax.plot([r["cycle"] for r in mine], [r[key] for r in mine], marker="o", label=arm)
        ax.set_title(label, fontsize=10)
        ax.set_xlabel("retrain cycle")
        ax.set_xticks(sorted({r["cycle"] for r in rows}))
    axes.flat[0].legend(fontsize=8)
    fig.suptitle("Feedback loops over retrain cycles (simulated): follow high vs low, and exploration")
    fig.tight_layout()
    save_figure(fig, path)


if __name__ == "__main__":
    main()
