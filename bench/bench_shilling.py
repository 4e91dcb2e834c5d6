"""The rating-spam detector and the training-time defence, checked against what the simulator planted.

    .venv/bin/python bench/bench_shilling.py [--users 2000] [--movies 300] [--sessions 3000] [--days 5]
        [--ring-day 3] [--ring-hour 6] [--strength none,weak,strong] [--exposure weak,strong]
        [--candidates all|als] [--json out.json] [--plot docs/figures/shilling.png]

For every strength (none, weak, strong; simulator.spam_check.STRENGTHS) the same world and seed
write a history into a fresh lake, with the ring starting on day ``--ring-day`` at ``--ring-hour``
(none: no ring, the clean stream of the same length). The detector runs at the end of every hour
of every day, as the ingest DAG would see the lake grow (simulator.spam_check.detection): detected
or not, hours from the ring's start to the first check that named the planted target, the ring's
accounts found, and false alarms (accounts or targets outside the truth; on the clean stream,
anything flagged at all).

Then the defence: for each strength of ``--exposure`` the flags of every day are stored, and two
retrains run as the DAG runs them (prepare, train, evaluate, precompute) on the same lake: with
``MOVIEREC_SHILLING_DEFENCE`` off and on; the clean lake is trained once as the reference. Reported:
the share of the world's users whose served top-20 holds the target, and its mean position there.
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
import time
from dataclasses import asdict
from datetime import timedelta
from pathlib import Path
from typing import Any

from world_scale import retrain_options, scale_parser, start_logging  # bench/ is the script's folder

from movierec import settings as settings_module
from movierec.models import candidates
from simulator import spam_check
from simulator.commands import load_history

log = logging.getLogger("bench_shilling")
VERSIONS = {"clean": "20261201T000000Z", "off": "20261201T010000Z", "on": "20261201T020000Z"}


def bench_settings(home: Path, args: argparse.Namespace) -> settings_module.Settings:
    return spam_check.bench_settings(home, args.users, args.movies, args.iterations, args.driver_memory)


def detection_row(
    name: str, found: spam_check.Detection, planted: spam_check.Planted | None
) -> dict[str, Any]:
    return {
        "strength": name,
        "ring": "-" if planted is None else f"{len(planted.accounts)} accounts -> {planted.target}",
        "detected": found.detected,
        "hours_to_detection": found.hours_to_detection,
        "accounts_found": f"{found.found_accounts}/{found.ring_accounts}",
        "false_accounts": len(found.false_accounts),
        "false_targets": sorted(found.false_targets),
        "false_alarm_windows": found.false_alarm_windows,
        "hourly_checks": found.windows,
    }


def exposure_row(label: str, exposure: spam_check.Exposure) -> dict[str, Any]:
    return {"lists": label, **asdict(exposure), "share": exposure.share}


def main() -> None:
    parser = scale_parser(__doc__, users=2_000, movies=300)
    parser.add_argument("--sessions", type=int, default=3_000, help="sessions per day")
    parser.add_argument("--days", type=float, default=5.0)
    parser.add_argument("--ring-day", type=int, default=3, help="day (0-based) the ring starts on")
    parser.add_argument("--ring-hour", type=int, default=6)
    parser.add_argument("--strength", default="none,weak,strong")
    parser.add_argument(
        "--popular-rank",
        type=int,
        metavar="K",
        help="also run the rings against the K-th most popular movie (0: the most popular), detection only",
    )
    parser.add_argument("--exposure", default="strong", help="strengths to retrain on ('' for none)")
    parser.add_argument(
        "--candidates", choices=["all", "als"], default="all", help="all: what the DAG trains"
    )
    retrain_options(parser)
    args = parser.parse_args()
    start_logging()
    strengths = {s.name: s for s in spam_check.STRENGTHS}
    wanted = [strengths[name] for name in args.strength.split(",") if name]
    exposed = [name for name in args.exposure.split(",") if name]
    ring_start = spam_check.START + timedelta(days=args.ring_day, hours=args.ring_hour)
    began = time.monotonic()
    results: dict[str, Any] = {
        "args": {k: str(v) for k, v in vars(args).items()},
        "detection": [],
        "exposure": [],
    }
    with tempfile.TemporaryDirectory(prefix="bench-shilling-") as scratch:
        homes, truths = {}, {}
        runs = [(strength, "") for strength in wanted]
        if args.popular_rank is not None:
            site = load_history(bench_settings(Path(scratch) / "site", args))
            popular = spam_check.popular_movie(site, args.popular_rank)
            runs += [(strength, popular) for strength in wanted if strength.accounts]
        for strength, movie in runs:
            name = strength.name + (f" (popular #{args.popular_rank + 1})" if movie else "")
            settings = bench_settings(Path(scratch) / name.replace(" ", "_"), args)
            t0 = time.monotonic()
            log_records = spam_check.simulated_lake(
                settings,
                load_history(settings),
                days=args.days,
                sessions_per_day=args.sessions,
                scenarios=spam_check.ring(strength, ring_start, movie),
            )
            planted = spam_check.planted(log_records)
            t1 = time.monotonic()
            found = spam_check.detection(settings, planted)
            row = detection_row(name, found, planted) | {
                "lake_seconds": round(t1 - t0, 1),
                "detect_seconds": round(time.monotonic() - t1, 1),
            }
            log.info("detection %s", row)
            results["detection"].append(row)
            if not movie:
                homes[strength.name], truths[strength.name] = settings, planted
        target = next((p.target for p in truths.values() if p is not None), None)
        if exposed and target is not None:
            results["exposure"] = exposure_runs(args, homes, truths, exposed, target)
    results["seconds"] = round(time.monotonic() - began, 1)
    print_tables(results)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, default=str) + "\n")
    if args.plot and results["exposure"]:
        plot(results["exposure"], args.plot)


def exposure_runs(
    args: argparse.Namespace,
    homes: dict[str, settings_module.Settings],
    truths: dict[str, spam_check.Planted | None],
    exposed: list[str],
    target: str,
) -> list[dict[str, Any]]:
    from spark_jobs.session import build_session

    rows = []
    any_home = next(iter(homes.values()))
    fitting = candidates.default_candidates(any_home)
    if args.candidates == "als":
        fitting = [c for c in fitting if c.name == "als_r16"]
    spark = build_session(any_home, "bench-shilling")
    try:
        runs = [("none", "clean", False)] if "none" in homes else []
        runs += [(name, mode, mode == "on") for name in exposed for mode in ("off", "on")]
        for name, mode, defence in runs:
            settings = homes[name]
            if mode == "off":
                spam_check.flag_every_day(settings)
            t0 = time.monotonic()
            path = spam_check.served_version(settings, spark, VERSIONS[mode], fitting, defence=defence)
            label = "no ring" if mode == "clean" else f"{name} ring, defence {mode}"
            row = exposure_row(label, spam_check.exposure(path, target, args.users))
            row["seconds"] = round(time.monotonic() - t0, 1)
            log.info("exposure %s", row)
            rows.append(row)
    finally:
        spark.stop()
    return rows


def print_tables(results: dict[str, Any]) -> None:
    print("\n| strength | ring | detected | hours to detection | ring accounts found | false accounts "
          "| false targets | windows with a false alarm / hourly checks |")  # fmt: skip
    print("| --- | --- | --- | ---: | ---: | ---: | --- | ---: |")
    for r in results["detection"]:
        hours = "-" if r["hours_to_detection"] is None else f"{r['hours_to_detection']:.0f}"
        print(
            f"| {r['strength']} | {r['ring']} | {'yes' if r['detected'] else 'no'} | {hours} | "
            f"{r['accounts_found']} | {r['false_accounts']} | {', '.join(r['false_targets']) or '-'} | "
            f"{r['false_alarm_windows']} / {r['hourly_checks']} |"
        )
    if results["exposure"]:
        print(
            "\n| served lists | candidate | users with the target in their top-20 | share | mean position |"
        )
        print("| --- | --- | ---: | ---: | ---: |")
        for r in results["exposure"]:
            position = "-" if r["mean_position"] is None else f"{r['mean_position']:.1f}"
            print(
                f"| {r['lists']} | {r['candidate']} | {r['with_target']:,} / {r['users']:,} | "
                f"{100 * r['share']:.2f}% | {position} |"
            )
    print(f"\n{results['seconds']:.0f} s in all")


def plot(rows: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (share, position) = plt.subplots(1, 2, figsize=(10, 3.6))
    labels = [r["lists"] for r in rows]
    colors = [
        "#888888" if "no ring" in r["lists"] else ("#c0392b" if "off" in r["lists"] else "#2e86c1")
        for r in rows
    ]
    share.barh(labels, [100 * r["share"] for r in rows], color=colors)
    share.set_xlabel("users whose served top-20 holds the target (%)")
    share.invert_yaxis()
    position.barh(labels, [r["mean_position"] or 0 for r in rows], color=colors)
    position.set_xlabel("mean position of the target where listed (1 = top)")
    position.set_xlim(0, 20)
    position.invert_yaxis()
    position.set_yticklabels([])
    fig.suptitle("Rating-spam ring: the target in served lists, without and with the training-time defence")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    main()
