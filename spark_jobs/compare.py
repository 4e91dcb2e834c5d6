"""The model comparison: which candidate to serve and why, as ``report.json`` and ``report.md``.

    $MOVIEREC_HOME/reports/<version>/report.json   everything measured (the Markdown is made from it)
    $MOVIEREC_HOME/reports/<version>/report.md     for people: definitions, tables, the argument

Rendering is pure (``build_report``, ``render_markdown``); only ``write_report`` touches files.
Precompute measures a serving file once it is written (``lookup_latency``) into a file of its own,
``serving-<id>.json`` beside the report: each task of the retrain writes its own files.
"""

from __future__ import annotations

import random
import time
from pathlib import Path
from typing import Any

from movierec import serving_file
from movierec.files import write_text
from movierec.models import versions
from movierec.settings import Settings
from spark_jobs import files

# The three-step definition of every measure: what it is, on which data, how it is computed.
DEFINITIONS: dict[str, tuple[str, str, str]] = {
    "recall_at_20": (
        "Recall@20: the share of the movies a user went on to watch that the list had foreseen.",
        "Test users: every user with at least one relevant pair in the test window [T, data end]; "
        "relevant = a movie the user watched or rated positively (strength > 0) after T and had not "
        "met before T.",
        "Per user |top-20 ∩ relevant| / |relevant|, then the mean over test users. Lists exclude "
        "movies met before T; users without history before T get their demographic group's list "
        "(group_popularity, fitted before T) and other users without factors the fallback list, "
        "as served.",
    ),
    "ndcg_at_20": (
        "NDCG@20: recall that rewards hits near the top of the list.",
        "The same test users and relevant sets.",
        "Per user DCG = Σ over hits at 0-based position i of 1/log2(i+2), divided by the DCG of "
        "min(|relevant|, 20) hits at the top; mean over test users.",
    ),
    "map_at_20": (
        "MAP@20: the precision at each hit, averaged.",
        "The same test users and relevant sets.",
        "Per user (1/min(|relevant|, 20)) Σ over hits at position i of precision@(i+1); "
        "mean over test users.",
    ),
    "snips_recall_at_20": (
        "SNIPS Recall@20: recall that does not reward what the site's exposure made popular.",
        "The same test users and relevant sets; propensities from the training data (before T).",
        "Per user Σ over hits of 1/P_i divided by Σ over relevant movies of 1/P_i (Yang et al. 2018, "
        "self-normalised IPS, eqn 9), P_i = (n_i / max n) ** ((gamma+1)/2) (their eqn 15), n_i = training "
        "users who met movie i (at least 1), gamma the power-law exponent of n fitted by maximum "
        "likelihood (Clauset et al. 2009); mean over test users.",
    ),
    "unlisted_recall_at_20": (
        "Recall@20 on what no list had shown: the watches our lists could not have caused.",
        "Test users with at least one relevant movie that no successful recommendation line of the "
        "movielog (the site's own or ours) had listed to them before they first took it up.",
        "Recall@20 of each such user against those movies only; mean over those users.",
    ),
    "coverage": (
        "Catalog coverage: how much of the catalog the model ever recommends.",
        "The lists of all test users; the catalog = movies in the model's index.",
        "Distinct movies in any list / movies in the index.",
    ),
    "mean_popularity": (
        "Mean popularity of what is recommended: how much the model leans on hits.",
        "The lists of all test users; popularity from the training data (before T).",
        "Mean over every list slot of the recommended movie's share of training users who met it.",
    ),
    "training": (
        "Training cost.",
        "The fit before T (what was evaluated) and the refit on all data (what is served).",
        "Wall seconds and CPU seconds (driver JVM + Python; in local mode all executors' work).",
    ),
    "inference": (
        "Inference cost.",
        "The test users' lists, movies met before T excluded.",
        "Microseconds per user of the blocked numpy top-20 (movierec.models.topk) on the factors; serving "
        "latency of the SQLite file per lookup once precompute has written it.",
    ),
    "size": (
        "Model size.",
        "The refit served (on all data).",
        "Bytes of the float32 factors (rows x rank x 4), bytes of the saved model on disk, and of "
        "the SQLite serving file once written.",
    ),
}
SUBGROUP_TITLES = {
    "tenure": "new vs returning users (new: no interaction before T)",
    "activity": "activity level (interactions before T)",
    "age_band": "age band (catalog; unknown if not fetched yet)",
    "gender": "gender",
    "occupation": "occupation",
}


def training_cpu(result: dict[str, Any]) -> float:
    """CPU seconds a candidate's fit before T took (0 if not measured): the tie-break of a choice."""
    return float(result.get("training", {}).get("before_t", {}).get("cpu_seconds", 0.0))


def choose(results: dict[str, dict[str, Any]]) -> tuple[str, str]:
    """The candidate with the best Recall@20 (ties: the cheaper to train), and the argument for it."""
    ranked = sorted(results, key=lambda n: (-results[n]["overall"]["recall_at_20"], training_cpu(results[n])))
    best = ranked[0]
    recall = results[best]["overall"]["recall_at_20"]
    others = "; ".join(
        f"{name} {results[name]['overall']['recall_at_20']:.4f}"
        + (
            f" ({(recall / r - 1) * 100:+.0f}% for {best})"
            if (r := results[name]["overall"]["recall_at_20"])
            else ""
        )
        for name in ranked[1:]
    )
    argument = (
        f"{best} is served: it has the best Recall@20 on the test window, {recall:.4f} "
        f"(NDCG@20 {results[best]['overall']['ndcg_at_20']:.4f}), against {others or 'no other candidate'}. "
        f"Its training cost {training_cpu(results[best]):.0f} CPU s before T, and its refit on all data is "
        "what serves, so users and movies of the test window are known to it."
    )
    return best, argument


def challenger(results: dict[str, dict[str, Any]], chosen: str) -> tuple[str, str]:
    """The candidate a retrain's canary tests online against the model serving now, and why.

    Recall@20 on logs collected under the site's lists rewards the lists that were shown (the
    chosen candidate wins it by exposure, not only by taste), so the challenger is the candidate
    with the best Recall@20 on the test watches that no list shown to the user started
    (``unlisted_recall_at_20``), which exposure cannot earn. Ties keep the chosen candidate (no
    second serving file), then the cheaper to train. The experiment decides; this only picks.
    """

    def unlisted(name: str) -> float:
        value = results[name]["overall"].get("unlisted_recall_at_20")
        return -1.0 if value is None else float(value)

    best = sorted(results, key=lambda n: (-unlisted(n), n != chosen, training_cpu(results[n])))[0]
    if best == chosen:
        return best, (
            f"{best}, the chosen candidate, also has the best Recall@20 on test watches not started "
            f"from a list shown ({unlisted(best):.4f}): the canary tests it."
        )
    return best, (
        f"{best} has the best Recall@20 on test watches not started from a list shown, "
        f"{unlisted(best):.4f} against {unlisted(chosen):.4f} for {chosen}, which exposure cannot earn: "
        f"a retrain's canary tests {best} online (its own serving file)."
    )


def build_report(
    version: str,
    params: dict[str, Any],
    results: dict[str, Any],
    chosen: str,
    argument: str,
    lists: dict[str, Any] | None = None,
    challenger: tuple[str, str] | None = None,
) -> dict[str, Any]:
    return {
        "version": version,
        "chosen": chosen,
        "argument": argument,
        "challenger": challenger[0] if challenger else None,
        "challenger_argument": challenger[1] if challenger else None,
        "split_time": params.get("split_time"),
        "data": {
            key: params.get(key) for key in ("data_start", "data_end", "test_days", "counts", "strength")
        },
        "definitions": {name: list(steps) for name, steps in DEFINITIONS.items()},
        "models": results,
        "lists": lists or {},
    }


def _fmt(value: Any, digits: int = 4) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def render_markdown(report: dict[str, Any]) -> str:
    models = report["models"]
    lines = [
        f"# Model report {report['version']}",
        "",
        f"**Chosen: {report['chosen']}.** {report['argument']}",
        *(
            ["", f"**Canary challenger: {report['challenger']}.** {report['challenger_argument']}"]
            if report.get("challenger")
            else []
        ),
        "",
        f"Split time T = {report['split_time']}; data {report['data']['data_start']} .. "
        f"{report['data']['data_end']}; test window {report['data']['test_days']} day(s). "
        f"Interaction strength r = {report['data']['strength']}.",
        "",
        "## Accuracy (test window)",
        "",
        "| model | users | Recall@20 | NDCG@20 | MAP@20 | SNIPS Recall@20 | Recall@20 unlisted "
        "| coverage | mean popularity |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, r in models.items():
        o = r["overall"]
        lines.append(
            f"| {name} | {o['users']} | {_fmt(o['recall_at_20'])} | {_fmt(o['ndcg_at_20'])} | "
            f"{_fmt(o['map_at_20'])} | {_fmt(o.get('snips_recall_at_20'))} | "
            f"{_fmt(o.get('unlisted_recall_at_20'))} ({o.get('unlisted_users', 0)} users) | "
            f"{_fmt(o['coverage'])} | {_fmt(o['mean_popularity'])} |"
        )
    lines += [
        "",
        "`random` (unseen movies drawn uniformly) is a reference floor, never a candidate.",
        "",
        "## Cost and size",
        "",
        "| model | train before T: wall s / CPU s | refit all data: wall s / CPU s | top-20 µs/user | "
        "factor bytes | model bytes on disk |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, r in models.items():
        if "training" not in r:
            continue
        before, after = r["training"].get("before_t", {}), r["training"].get("all", {})
        lines.append(
            f"| {name} | {_fmt(before.get('wall_seconds'), 1)} / {_fmt(before.get('cpu_seconds'), 1)} | "
            f"{_fmt(after.get('wall_seconds'), 1)} / {_fmt(after.get('cpu_seconds'), 1)} | "
            f"{_fmt(r['inference']['topk_us_per_user'], 1)} | {r['size']['factor_bytes']} | "
            f"{r['size']['model_bytes']} |"
        )
    lines += ["", *_lists_section(report.get("lists") or {})]
    lines += [
        "",
        "## Serving file",
        "",
        f"Precompute writes each serving file's size and lookup latency beside this report, "
        f"`{versions.SERVING_REPORT.format(serving_id=report['version'])}` for the chosen candidate.",
    ]
    chosen = models[report["chosen"]]
    lines += ["", f"## Subgroups ({report['chosen']}; Recall@20 of every candidate beside it)", ""]
    others = [n for n in models if n != report["chosen"]]
    for dimension, title in SUBGROUP_TITLES.items():
        groups = chosen["subgroups"].get(dimension, {})
        lines += [
            f"### {title}",
            "",
            "| group | users | Recall@20 | NDCG@20 | MAP@20 | "
            + " | ".join(f"{n} R@20" for n in others)
            + " |",
            "| --- | ---: | ---: | ---: | ---: | " + " | ".join("---:" for _ in others) + " |",
        ]
        for group, g in groups.items():
            beside = [
                _fmt(models[n]["subgroups"][dimension].get(group, {}).get("recall_at_20")) for n in others
            ]
            lines.append(
                f"| {group} | {g['users']} | {_fmt(g['recall_at_20'])} | {_fmt(g['ndcg_at_20'])} | "
                f"{_fmt(g['map_at_20'])} | " + " | ".join(beside) + " |"
            )
        lines.append("")
    lines += _fairness_section(report.get("fairness"))
    lines += ["## Definitions (metric / data / operationalization)", ""]
    for name, (metric, data, how) in report["definitions"].items():
        lines += [f"- **{name}** — {metric}", f"  - data: {data}", f"  - operationalization: {how}"]
    return "\n".join(lines) + "\n"


def _interval(estimate: dict[str, Any]) -> str:
    if estimate.get("value") is None:
        return "-"
    if estimate.get("low") is None:
        return _fmt(estimate["value"], 3)
    return f"{estimate['value']:.3f} [{estimate['low']:.3f}, {estimate['high']:.3f}]"


def _fairness_section(fairness: dict[str, Any] | None) -> list[str]:
    """The model requirement (Recall@20 per group against the rest), the long tail's exposure, and
    the tail-quota mitigation's cost (docs/fairness.md)."""
    if not fairness:
        return []
    tail = fairness["long_tail"]
    out = [
        "## Fairness (chosen candidate, test window)",
        "",
        f"Long tail: {tail['movies']} of {tail['catalog']} movies ({tail['definition']}). Requirement: "
        "every judged group's Recall@20 at least 0.8 x the other users' (breached: the 95% interval, "
        "delta method over users, lies below); the tail's share of slots at least 0.5 x its share of "
        "what test users chose.",
        "",
        "| lists | Recall@20 | NDCG@20 | tail share of slots | tail share of choices | ratio [95% CI] | "
        "smallest group ratio | breached |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for label, part in (
        ("as evaluated", fairness["as_evaluated"]),
        ("tail quota", fairness.get("mitigation")),
    ):
        if not part:
            continue
        if label == "tail quota":
            label = f"tail quota {part['tail_slots']} of top-{part['depth']}"
        segment = part["exposure"]["segments"]["long_tail"]
        smallest = [
            a["min_ratio"] for a in part["quality"]["attributes"].values() if a["min_ratio"] is not None
        ]
        broken = [
            n
            for n, b in (("quality", part["quality"]["breached"]), ("exposure", part["exposure"]["breached"]))
            if b
        ]
        out.append(
            f"| {label} | {_fmt(part['recall_at_20'])} | {_fmt(part['ndcg_at_20'])} | "
            f"{_fmt(segment['slot_share']['value'], 3)} | {_fmt(segment['choice_share']['value'], 3)} | "
            f"{_interval(segment['ratio'])} | {_fmt(min(smallest) if smallest else None, 3)} | "
            f"{', '.join(broken) or 'no'} |"
        )
    out += ["", "| attribute | group | users | Recall@20 | ratio to the rest [95% CI] | judged |",
            "| --- | --- | ---: | ---: | ---: | --- |"]  # fmt: skip
    for attribute, data in fairness["as_evaluated"]["quality"]["attributes"].items():
        for g in data["groups"]:
            out.append(
                f"| {attribute} | {g['group']} | {g['estimate']['users']} | {_fmt(g['estimate']['value'])} | "
                f"{_interval(g['ratio'])} | "
                f"{'BREACHED' if g['breached'] else ('yes' if g['judged'] else 'no')} |"
            )
    return [*out, ""]


def _lists_section(lists: dict[str, Any]) -> list[str]:
    """Who gets which list once served: the personalised, group and catalog counts."""
    if not lists:
        return []
    n = {key: _fmt(value) for key, value in lists.items()}
    out = [
        "## Lists for every user",
        "",
        f"The serving file lists {n['users']} users: {n['personalised_users']} with history get the "
        f"chosen candidate's list, {n['group_users']} without history their demographic group's list "
        f"({n['group_candidate']}); the catalog has {n['catalog_users']} users. In the test window, "
        f"{n['test_users_given_a_group_list']} of {n['test_users_without_history']} users without "
        "history before T were given their group's list (by every candidate).",
    ]
    levels = lists.get("group_levels") or {}
    if levels:
        out += ["", "| group level | groups | users served from it |", "| --- | ---: | ---: |"]
        out += [f"| {level} | {row['groups']} | {row['users']} |" for level, row in levels.items()]
    return out


def write_report(settings: Settings, version: str, report: dict[str, Any]) -> Path:
    folder = versions.report_dir(settings, version)
    files.write_json(folder / versions.REPORT_JSON, report)
    path = folder / versions.REPORT_MD
    write_text(path, render_markdown(report))
    return path


def lookup_latency(path: Path, lookups: int = 1000, seed: int = 0) -> dict[str, Any]:
    """Size of a serving file and the latency of looking up random users in it (read-only)."""
    with serving_file.open_readonly(path) as db:
        rows = db.execute("SELECT count(*) FROM recs").fetchone()[0]
        low, high = db.execute("SELECT min(user_id), max(user_id) FROM recs").fetchone()
        rng = random.Random(seed)
        timings = []
        for _ in range(lookups if rows else 0):
            user = rng.randint(low, high)
            began = time.perf_counter()
            db.execute("SELECT items FROM recs WHERE user_id = ?", (user,)).fetchone()
            timings.append(1e6 * (time.perf_counter() - began))
    timings.sort()
    pick = (lambda q: timings[min(int(q * len(timings)), len(timings) - 1)]) if timings else (lambda q: None)
    return {
        "path": str(path),
        "file_bytes": path.stat().st_size,
        "rows": rows,
        "lookups": len(timings),
        "lookup_us_p50": pick(0.5),
        "lookup_us_p99": pick(0.99),
    }
