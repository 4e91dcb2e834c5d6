"""The exposure mitigation (tail-quota re-ranking) measured: what it costs in accuracy offline and
what it does to the long tail's exposure, offline and in the served file.

    .venv/bin/python bench/bench_fairness.py [--users 2000] [--movies 300] [--sessions 3000]
        [--days 5] [--quotas 0,2,4,6,8,10] [--depth 100] [--serve 4] [--candidates all|als]
        [--json out.json] [--plot docs/figures/fairness-rerank.png]

One simulated history (no scenario) is written into a fresh lake (``simulator.spam_check``'s
lake, as the learning tests build theirs), then the retrain's jobs run as the DAG runs them:
prepare, train (``--candidates``), evaluate. For each quota of ``--quotas`` the chosen
candidate's top-``--depth`` lists of the test users are re-ranked (``movierec.fairness.rerank``)
exactly as precompute does and scored as evaluate scores them (``spark_jobs.evaluate.fairness_section``):
Recall@20, NDCG@20 (the cost), the long tail's share of list slots against its share of what the
test users chose after T, Recall@20 per gender, age band and occupation against the rest. Quota 0
is the model as served today; every row is from the same model, so differences are the re-ranking's.

Then precompute writes the serving file twice, without and with ``--serve`` tail slots, and each
file's lists for every user are measured as telemetry would measure them if every user asked once
(``movierec.fairness.measures.exposure``: slots of the long tail, older films and each language
against the viewers' choices in the lake).
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from bench_shilling import bench_settings  # bench/ is the script's folder: the same small world
from world_scale import retrain_options, start_logging

from movierec import lake
from movierec import settings as settings_module
from movierec.fairness import measures
from movierec.files import save_figure
from movierec.models import candidates
from simulator import commands, spam_check

log = logging.getLogger("bench_fairness")
VERSION = "20261201T000000Z"


def offline_sweep(settings: settings_module.Settings, quotas: list[int], depth: int) -> list[dict[str, Any]]:
    """Each quota's offline figures for the version's chosen candidate (what evaluate reports)."""
    from spark_jobs import evaluate
    from spark_jobs.files import read_json

    data = evaluate.EvaluationData(settings, VERSION)
    chosen = read_json(evaluate.versions.model_dir(settings, VERSION) / evaluate.versions.MODEL_FILE)[
        "candidate"
    ]
    fixed: dict[int, list[int]] = {}
    cold_name = candidates.cold_start_name(settings, VERSION)
    if cold_name is not None:
        group = candidates.load(settings, VERSION, cold_name, "before_t")
        group_lists, _ = evaluate.candidate_lists(data, group, 20)
        fixed = {int(r): group_lists[r] for r in evaluate.newcomer_rows(data, group)}
    ranked, _ = evaluate.candidate_lists(data, candidates.load(settings, VERSION, chosen, "before_t"), depth)
    rows = []
    for quota in quotas:
        section = evaluate.fairness_section(data, ranked, fixed, 20, quota, depth)
        part = section["mitigation"] or section["as_evaluated"]
        tail = part["exposure"]["segments"]["long_tail"]
        smallest = {a: d["min_ratio"] for a, d in part["quality"]["attributes"].items()}
        rows.append(
            {
                "candidate": chosen,
                "tail_slots": quota,
                "recall_at_20": part["recall_at_20"],
                "ndcg_at_20": part["ndcg_at_20"],
                "tail_slot_share": tail["slot_share"]["value"],
                "tail_choice_share": tail["choice_share"]["value"],
                "tail_ratio": tail["ratio"],
                "smallest_group_ratio": smallest,
                "quality_breached": part["quality"]["breached"],
                "exposure_breached": part["exposure"]["breached"],
                "tail_movies": section["long_tail"]["movies"],
                "test_users": len(data.users),
            }
        )
        log.info("quota %d: %s", quota, rows[-1])
    return rows


def served_exposure(settings: settings_module.Settings, path: Path) -> dict[str, Any]:
    """The serving file's lists (every user once) against the viewers' choices in the lake."""
    import sqlite3

    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
        frame = pd.DataFrame(
            db.execute("SELECT user_id, items FROM recs").fetchall(), columns=["user_id", "items"]
        )
    slots = frame.assign(movie_id=frame["items"].str.split(",")).explode("movie_id")[["user_id", "movie_id"]]
    choices = lake.read_table(settings, "watch_session", ["user_id", "movie_id", "last_time"]).to_pandas()
    movies = lake.read_table(settings, "movies", ["id", "release_date", "original_language"]).to_pandas()
    segments = measures.movie_segments(
        movies, choices["movie_id"].value_counts(), choices["last_time"].max().date()
    )
    found = measures.exposure(slots, choices, segments)
    return {
        name: {k: row[k]["value"] for k in ("slot_share", "choice_share")} | {"ratio": row["ratio"]}
        for name, row in found["segments"].items()
    } | {"breached": found["breached"], "users": int(frame["user_id"].nunique())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=2_000)
    parser.add_argument("--movies", type=int, default=300)
    parser.add_argument("--sessions", type=int, default=3_000, help="sessions per day")
    parser.add_argument("--days", type=float, default=5.0)
    parser.add_argument("--quotas", default="0,2,4,6,8,10")
    parser.add_argument("--depth", type=int, default=100)
    parser.add_argument("--serve", type=int, default=4, help="tail slots of the second serving file")
    parser.add_argument(
        "--candidates", choices=["all", "als"], default="all", help="all: what the DAG trains"
    )
    retrain_options(parser)
    args = parser.parse_args()
    start_logging()
    from spark_jobs.evaluate import evaluate
    from spark_jobs.precompute import precompute
    from spark_jobs.prepare import prepare
    from spark_jobs.session import build_session
    from spark_jobs.train import train

    quotas = [int(q) for q in args.quotas.split(",")]
    began = time.monotonic()
    results: dict[str, Any] = {"args": {k: str(v) for k, v in vars(args).items()}, "seconds": {}}
    with tempfile.TemporaryDirectory(prefix="bench-fairness-") as scratch:
        settings = bench_settings(Path(scratch), args)
        spam_check.simulated_lake(
            settings, commands.load_history(settings), days=args.days, sessions_per_day=args.sessions
        )
        results["seconds"]["lake"] = round(time.monotonic() - began, 1)
        fitting = candidates.default_candidates(settings)
        if args.candidates == "als":
            fitting = [c for c in fitting if c.name == "als_r16"]
        spark = build_session(settings, "bench-fairness")
        try:
            t0 = time.monotonic()
            prepare(spark, settings, VERSION)
            train(spark, settings, VERSION, fitting)
            evaluate(settings, VERSION)
            results["seconds"]["retrain"] = round(time.monotonic() - t0, 1)
            t0 = time.monotonic()
            results["offline"] = offline_sweep(settings, quotas, args.depth)
            results["seconds"]["sweep"] = round(time.monotonic() - t0, 1)
            results["served"] = {}
            for slots in (0, args.serve):
                t0 = time.monotonic()
                quota = replace(settings, fairness_tail_slots=slots, fairness_rerank_depth=args.depth)
                path = Path(str(precompute(quota, VERSION, spark=spark)["path"]))
                results["seconds"][f"precompute_{slots}"] = round(time.monotonic() - t0, 1)
                results["served"][slots] = served_exposure(settings, path)
                path.unlink()  # never published: the next run writes the same serving id
                log.info("served with %d tail slots: %s", slots, results["served"][slots]["long_tail"])
        finally:
            spark.stop()
    results["seconds"]["total"] = round(time.monotonic() - began, 1)
    print_tables(results)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, default=str) + "\n")
    if args.plot:
        plot(results, args.plot)


def _ci(ratio: dict[str, Any]) -> str:
    if ratio["value"] is None:
        return "-"
    if ratio["low"] is None:
        return f"{ratio['value']:.2f}"
    return f"{ratio['value']:.2f} [{ratio['low']:.2f}, {ratio['high']:.2f}]"


def print_tables(results: dict[str, Any]) -> None:
    base = results["offline"][0]
    print("\n| tail slots | Recall@20 | vs quota 0 | NDCG@20 | vs quota 0 | tail share of slots | "
          "of choices | ratio [95% CI] | smallest group ratio (gender / age / occupation) |")  # fmt: skip
    print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |")
    for r in results["offline"]:
        g = r["smallest_group_ratio"]
        groups = " / ".join(
            "-" if g[a] is None else f"{g[a]:.2f}" for a in ("gender", "age_band", "occupation")
        )
        print(
            f"| {r['tail_slots']} | {r['recall_at_20']:.4f} | "
            f"{r['recall_at_20'] / base['recall_at_20'] - 1:+.1%} | "
            f"{r['ndcg_at_20']:.4f} | {r['ndcg_at_20'] / base['ndcg_at_20'] - 1:+.1%} | "
            f"{r['tail_slot_share']:.3f} | {r['tail_choice_share']:.3f} | {_ci(r['tail_ratio'])} | {groups} |"
        )
    print("\n| served file | segment | share of slots | share of choices | ratio [95% CI] |")
    print("| --- | --- | ---: | ---: | ---: |")
    for slots, found in results["served"].items():
        for name, row in found.items():
            if isinstance(row, dict) and row.get("slot_share") is not None:
                print(
                    f"| {slots} tail slots | {name} | {row['slot_share']:.3f} | "
                    f"{row['choice_share'] or 0:.3f} | "
                    f"{_ci(row['ratio'])} |"
                )
    print(f"\nseconds: {results['seconds']}")


def plot(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    rows = results["offline"]
    figure, (left, right) = pyplot.subplots(1, 2, figsize=(11, 4.5))
    quotas = [r["tail_slots"] for r in rows]
    left.plot(quotas, [r["recall_at_20"] for r in rows], "o-", label="Recall@20")
    left.plot(quotas, [r["ndcg_at_20"] for r in rows], "s-", label="NDCG@20")
    left.set_xlabel("tail slots guaranteed in the top 20")
    left.set_title("accuracy on the test window (the cost)")
    left.legend()
    ratios = [r["tail_ratio"] for r in rows]
    values = np.array([r["value"] for r in ratios])
    errors = np.array([[r["value"] - r["low"], r["high"] - r["value"]] for r in ratios]).T
    right.errorbar(quotas, values, yerr=errors, fmt="o-", capsize=3)
    right.axhline(measures.EXPOSURE_RATIO, color="red", linestyle="--", linewidth=1, label="requirement")
    right.axhline(1.0, color="grey", linewidth=0.5)
    right.set_xlabel("tail slots guaranteed in the top 20")
    right.set_title("long tail: share of slots / share of choices (95% CI)")
    right.legend()
    figure.suptitle(
        f"tail-quota re-ranking, {results['args']['users']} users x {results['args']['movies']} movies"
    )
    save_figure(figure, path)


if __name__ == "__main__":
    main()
