"""Is the experiments' analysis honest? A/A false-positive rate and power, on the simulator's viewers.

Per-user outcomes come from the simulator's own viewers (sessions drawn by user activity, each
viewer shown the popularity top-20 and choosing, watching and stopping as simulator.viewers decides;
see simulator/ab_check.py), analysed exactly as experiments are (experiments.analysis: Welch's
t-test per user, or the two-proportion z-test for a 0/1 metric; alpha 0.05):

- A/A: ``--repeats`` random splits of users who all got the same list; the share of p < alpha;
- power: the users per variant the design's power analysis asks for (NormalIndPower, the users'
  own spread), and a planted effect of exactly the minimum detectable effect (treatment sessions get
  each user's true top-20 with the probability that raises the metric's mean by the MDE); the share
  of p < alpha. Both shares with Wilson 95% intervals.

    .venv/bin/python bench/bench_ab_validation.py [--sessions 80000] [--repeats 1000] \
        [--metric list_minutes_per_answer=3.0 ...]

Full scale by default (MOVIEREC_SCALE_*); the world and truth are cached under MOVIEREC_HOME.
"""

from __future__ import annotations

import argparse
import json
import logging
import time

from movierec import settings as settings_module
from simulator import ab_check
from simulator.commands import load_history

DEFAULT_METRICS = [
    "list_minutes_per_answer=3.0",
    "minutes_per_answer=3.0",
    "follow_rate=0.03",
    "followed_any=0.03",
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=80_000, help="sessions in the pool of users")
    parser.add_argument("--repeats", type=int, default=1_000, help="analyses per check")
    parser.add_argument(
        "--metric", action="append", metavar="NAME=MDE", help="metric and its MDE (repeatable)"
    )
    parser.add_argument("--seed", type=int, default=11)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    settings = settings_module.load()
    began = time.monotonic()
    history = load_history(settings)
    scale = f"{settings.scale_users:,} users x {settings.scale_movies:,} movies"
    print(f"{scale}; pool of {args.sessions:,} sessions")
    rows = []
    for spec in args.metric or DEFAULT_METRICS:
        metric, mde = spec.split("=")
        result = ab_check.check(
            history,
            sessions=args.sessions,
            metric=metric,
            mde=float(mde),
            repeats=args.repeats,
            seed=args.seed,
        )
        rows.append(result)
        print(json.dumps(result))
    print()
    print(
        "| metric | users in pool | mean (sd) per user | MDE | users per variant "
        "| A/A false positives [95% CI] | power at the MDE [95% CI] |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in rows:
        aa, power = r["aa"], r["power"]
        if "skipped" in power:
            power = {"share": float("nan"), "share_95ci": (float("nan"),) * 2, "significant": 0, "repeats": 0}
        print(
            f"| `{r['metric']}` | {r['pool']['users']:,} | {r['pool']['mean']:.3f} ({r['pool']['sd']:.3f}) | "
            f"{r['design']['mde']:g} | {r['design']['users_per_variant']:,} | {aa['share']:.1%} "
            f"[{aa['share_95ci'][0]:.1%}, {aa['share_95ci'][1]:.1%}] ({aa['significant']}/{aa['repeats']}) | "
            f"{power['share']:.1%} [{power['share_95ci'][0]:.1%}, {power['share_95ci'][1]:.1%}] "
            f"({power['significant']}/{power['repeats']}) |"
        )
    print(f"\n{time.monotonic() - began:.0f} s")


if __name__ == "__main__":
    main()
