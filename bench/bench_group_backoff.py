"""Group popularity's minimum group size: offline quality of several back-off thresholds side by side.

    MOVIEREC_HOME=<a home with a lake> .venv/bin/python bench/bench_group_backoff.py \\
        [--min-viewers 25,100,400] [--version 20261201T120000Z] [--json out.json]

Runs the retrain's own jobs in one Spark session on the home's lake: ``prepare`` once, then
``train`` with popularity and one ``group_popularity`` per threshold (a group with fewer distinct
recent viewers backs off to age band x gender, then to everyone), and scores every candidate
fitted before T on the same test window with evaluate's own functions. Unlike evaluate it does
not give users without history the group list of one chosen threshold: each threshold is scored
on them with its own lists, which is what the threshold decides. Prints Recall@20 and NDCG@20
overall, for test users without history before T (the group list is all they get) and with
history, and how many users each level serves; the ratio to popularity is the figure to compare.
"""

from __future__ import annotations

import argparse
import json
import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from movierec import settings as settings_module
from movierec.models import candidates, versions
from spark_jobs import evaluate as evaluate_job
from spark_jobs.prepare import prepare
from spark_jobs.progress import measured, setup_logging
from spark_jobs.session import build_session
from spark_jobs.train import train

log = logging.getLogger("bench.group_backoff")


def measure(settings: Any, version: str, thresholds: list[int]) -> dict[str, Any]:
    spark = build_session(settings, "bench-group-backoff")
    try:
        with measured(spark, "prepare") as spent:
            counts = prepare(spark, settings, version)
        log.info("prepared in %.0f s: %s", spent.wall_seconds, counts)
        fitting: list[candidates.Candidate] = [candidates.Popularity()]
        fitting += [candidates.GroupPopularity(f"group_popularity_m{m}", min_viewers=m) for m in thresholds]
        trained = train(spark, settings, version, fitting)
    finally:
        spark.stop()
    data = evaluate_job.EvaluationData(settings, version)
    tenure = data.groups["tenure"].to_numpy()
    rows: dict[str, Any] = {}
    for candidate in fitting:
        factors = candidates.load(settings, version, candidate.name, "before_t")
        lists, _micros = evaluate_job.candidate_lists(data, factors, 20)
        scored = evaluate_job.score(data, lists)
        row = {
            "overall": scored["overall"],
            "tenure": scored["subgroups"]["tenure"],
            "activity": scored["subgroups"]["activity"],
            "fit_wall_seconds": {w: c["wall_seconds"] for w, c in trained[candidate.name]["cost"].items()},
        }
        if isinstance(factors, candidates.GroupFactors):
            row["levels_before_t"] = factors.summary()["levels"]
            served = candidates.load(settings, version, candidate.name, "all")
            row["levels_served"] = served.summary()["levels"]  # type: ignore[attr-defined]
        rows[candidate.name] = row
    return {
        "version": version,
        "counts": counts,
        "test_users": len(data.users),
        "test_users_new": int((tenure == "new").sum()),
        "candidates": rows,
    }


def render(result: dict[str, Any]) -> str:
    base = result["candidates"]["popularity"]

    def cell(row: dict[str, Any], part: str, group: str | None, metric: str) -> str:
        value = (row[part] if group is None else row[part].get(group, {})).get(metric)
        ref = (base[part] if group is None else base[part].get(group, {})).get(metric)
        if value is None:
            return "-"
        return f"{value:.4f} ({value / ref:.2f}x)" if ref else f"{value:.4f}"

    counts = result["counts"]
    lines = [
        f"version {result['version']}: {counts['users']:,} users listed ({counts['users_with_history']:,} "
        f"with history, {counts['catalog_users']:,} in the catalog); {result['test_users']:,} test users, "
        f"{result['test_users_new']:,} without history before T",
        "",
        "| candidate | Recall@20 all | NDCG@20 all | Recall@20 new | NDCG@20 new | Recall@20 returning | "
        "users served per level (all data): fine / age x gender / everyone |",
        "| --- | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for name, row in result["candidates"].items():
        levels = row.get("levels_served")
        served = " / ".join(f"{v['users']:,} in {v['groups']}" for v in levels.values()) if levels else "-"
        cells = [
            cell(row, "overall", None, "recall_at_20"),
            cell(row, "overall", None, "ndcg_at_20"),
            cell(row, "tenure", "new", "recall_at_20"),
            cell(row, "tenure", "new", "ndcg_at_20"),
            cell(row, "tenure", "returning", "recall_at_20"),
        ]
        lines.append(f"| {name} | {' | '.join(cells)} | {served} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--min-viewers", default="25,100,400", help="comma-separated thresholds")
    parser.add_argument("--version", default=None, help="model version id (default: now)")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    setup_logging()
    thresholds = [int(m) for m in args.min_viewers.split(",") if m]
    version = versions.check_version(args.version or versions.new_version_id(datetime.now(UTC)))
    result = measure(settings_module.load(), version, thresholds)
    print(render(result))
    if args.json:
        args.json.write_text(json.dumps(result, indent=1, default=str) + "\n")


if __name__ == "__main__":
    main()
