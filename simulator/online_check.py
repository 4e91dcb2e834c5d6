"""Does the online metric rank lists as the truth does? (Evaluation only: this module reads the truth.)

Three serving files of known, different quality are written for every user of the world: a random
20, the global popularity top-20 (the site's own list) and each user's true top-20. They are served
side by side to comparable user groups (one experiment, three variants split by the salt) on the
real path: a private Kafka broker, ``movierec serve`` with the experiment hook, live viewers calling
it, ingest of the movielog and of our served records, the online metrics (movierec.online) and the
experiment's analysis (experiments/). The online metrics must order the variants as the truth
does, and the gaps between them are reported beside the truth's own gaps.

The truth's measure of a list is what drives the simulated viewers: ``list fit``, the mean true
enjoyment of its top 5 (a viewer follows a list with probability follow x fit, simulator.viewers).

    .venv/bin/python bench/bench_online_truth.py [--users 100000] [--sessions 9000]
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np

from experiments import control, evaluation, lifecycle
from experiments.definition import Definition, VariantSpec
from experiments.population import per_user
from movierec import serving_file
from movierec.ingest import consume, served
from movierec.ingest.stream import TopicWriter
from movierec.models import registry, topk
from movierec.online import compute
from movierec.ops import services
from movierec.ops.broker import broker
from movierec.settings import Settings
from simulator.catalog import World, load_world
from simulator.history import History, site_list
from simulator.live import run_live
from simulator.truth import Truth, affinity, enjoyment, load_truth, scores_for_users
from simulator.viewers import LIST_FIT_TOP

log = logging.getLogger(__name__)

# Pseudo-versions (the serving-file name contract wants version ids); the order is the truth's
POLICIES = {"random": "20000101T000001Z", "popularity": "20000101T000002Z", "truth": "20000101T000003Z"}
K = 20
BATCH = 2_000


def policy_lists(
    policy: str, truth: Truth, world: World, users: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """(users, K) movie indices of ``policy``'s list for each user, best first."""
    if policy == "popularity":
        return np.tile(site_list(np.asarray(world.popularity)), (len(users), 1))
    if policy == "random":
        return np.stack([rng.choice(world.n_movies, K, replace=False) for _ in users])
    items, _ = topk.top_k_of_scores(scores_for_users(truth, users).astype(np.float32), K)
    return items.astype(np.int64)


def list_fit(truth: Truth, users: np.ndarray, lists: np.ndarray) -> np.ndarray:
    """Per user: the mean true enjoyment of the list's top 5 (what makes a viewer follow it)."""
    top = lists[:, :LIST_FIT_TOP]
    users_grid = np.repeat(users[:, None], top.shape[1], axis=1)
    return enjoyment(affinity(truth, users_grid, top)).mean(axis=1)


def _batches(policy: str, truth: Truth, world: World, seed: int) -> Iterator[tuple[list[int], list[str]]]:
    rng = np.random.default_rng(seed)
    for first in range(1, world.n_users + 1, BATCH):
        users = np.arange(first, min(first + BATCH, world.n_users + 1))
        lists = policy_lists(policy, truth, world, users, rng)
        yield users.tolist(), [",".join(str(world.movie_ids[m]) for m in row) for row in lists]


def write_policy_files(settings: Settings, world: World, truth: Truth, seed: int) -> None:
    """A serving file per policy for every user of the world (skipped when it exists)."""
    fallback = ",".join(str(world.movie_ids[m]) for m in site_list(np.asarray(world.popularity)))
    for policy, version in POLICIES.items():
        path = serving_file.file_path(settings.serving_dir, version)
        if path.exists():
            continue
        meta = {
            "model_version": version,
            "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "git_commit": "simulator-online-check",
            "params": f'{{"policy": "{policy}"}}',
            "data_manifest": "{}",
            "metrics": '{"recall_at_20": 0.0}',
            "fallback": fallback,
        }
        serving_file.write(path, _batches(policy, truth, world, seed), meta, total=world.n_users)


def definition(users_per_variant: int) -> Definition:
    share = 1 / len(POLICIES)
    return Definition(
        name=f"online-check-{datetime.now(UTC):%Y%m%dt%H%M%S}",
        variants=tuple(VariantSpec(p, v, share) for p, v in POLICIES.items()),
        primary_metric="list_minutes_per_answer",
        guardrail_metrics=("minutes_per_answer", "follow_rate"),
        minimum_detectable_effect=3.0,
        users_per_variant=users_per_variant,
        salt="online-check",
        description="Lists of known quality (random, popularity, true top-20) to check the online metric.",
    )


@dataclass
class Check:
    table: list[dict[str, Any]]
    gaps: list[dict[str, Any]]
    ordered_as_truth: dict[str, bool]
    report: str
    counts: dict[str, Any]


def _wait_for_experiment(settings: Settings, name: str, timeout: float = 60.0) -> None:
    """Until 10 answers of /healthz in a row (new connections: spread over workers) show it."""
    deadline, seen = time.monotonic() + timeout, 0
    while seen < 10:
        view = control.service_view(settings)
        seen = seen + 1 if (view.get("experiment") or {}).get("name") == name else 0
        if time.monotonic() > deadline:
            raise RuntimeError(f"the service did not take up experiment {name}: {view}")
        time.sleep(0.05)


def run_viewers(settings: Settings, history: History, sessions: int, **live: Any) -> dict[str, int]:
    """Live viewers until ``sessions`` successful answers were logged (a loaded machine has more time-outs:
    the count of answers, not the clock, is what the check needs)."""

    async def main() -> dict[str, int]:
        stop = asyncio.Event()
        recos = 0
        with TopicWriter(settings) as writer:

            def write(line: str | bytes, user_id: int) -> None:
                nonlocal recos
                writer.write(line, user_id)
                if isinstance(line, str) and "recommendation request" in line and ", status 200," in line:
                    recos += 1
                    if recos >= sessions:
                        stop.set()

            url = f"http://{settings.server_host}:{settings.server_port}"
            return await run_live(history, write, url, seed=settings.seed, stop=stop, **live)

    return asyncio.run(main())


def drain(settings: Settings) -> dict[str, int]:
    """Ingest every movielog line and served record there is, then the online metrics."""
    lines = records = 0
    while (batch := consume.ingest_batch(settings))["batch_id"] is not None:
        lines += batch["lines"]
    while (batch := served.ingest_served(settings))["batch_id"] is not None:
        records += batch["records"]
    compute.compute_answer_outcomes(settings)
    compute.compute_online_metrics(settings)
    return {"lines": lines, "served_records": records}


def served_lists(settings: Settings, world: World, version: str, users: np.ndarray) -> np.ndarray:
    """(users, K) movie indices of the lists ``version``'s serving file holds for ``users``."""
    index_of = {str(slug): i for i, slug in enumerate(world.movie_ids)}
    path = serving_file.file_path(settings.serving_dir, version)
    connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        lines = [
            connection.execute("SELECT items FROM recs WHERE user_id = ?", (int(u),)).fetchone()[0]
            for u in users
        ]
    finally:
        connection.close()
    return np.array([[index_of[m] for m in line.split(",")] for line in lines], dtype=np.int64)


def truth_table(
    settings: Settings, truth: Truth, world: World, users_by_variant: dict[str, np.ndarray]
) -> dict[str, float]:
    """The truth's list fit of the lists each variant served, over the users it served."""
    fits = {}
    for policy, users in users_by_variant.items():
        lists = served_lists(settings, world, POLICIES[policy], users)
        fits[policy] = float(list_fit(truth, users, lists).mean()) if len(users) else float("nan")
    return fits


def live_phase(
    settings: Settings,
    *,
    sessions: int,
    minute_seconds: float = 0.01,
    lines_per_second: float = 2_000.0,
    follow: float = 0.5,
) -> tuple[str, dict[str, int]]:
    """The serving files, ``movierec serve`` with the three-variant experiment, and live viewers
    until ``sessions`` answers were logged; (the experiment's name, the viewers' counts)."""
    world = load_world(settings)
    truth = load_truth(settings, world)
    history = History.build(world, truth)
    write_policy_files(settings, world, truth, settings.seed)
    if registry.current_version(settings) is None:
        registry.promote(settings, POLICIES["popularity"], "the site's list, the check's baseline")
    broker.ensure_topics(settings)
    server = services.catalog_of(settings)["server"]
    try:
        services.start(settings, server)  # supervised with these settings as its environment
        state = lifecycle.start_experiment(settings, definition(max(sessions // (3 * 4), 10)))
        _wait_for_experiment(settings, state.name)
        viewers = run_viewers(
            settings, history, sessions, lines_per_second=lines_per_second, follow=follow,
            minute_seconds=minute_seconds,
        )  # fmt: skip
    finally:
        services.stop(settings, server)  # flushes the provenance records
    return state.name, viewers


def conclude(settings: Settings, name: str, counts: dict[str, Any]) -> Check:
    """The analysis of the experiment once the lake holds its answers; the experiment stopped."""
    world = load_world(settings)
    truth = load_truth(settings, world)
    state = control.load_state(settings, name)
    moment = datetime.now(UTC)
    result, decision = lifecycle.analysed(settings, state, moment)
    people, _ = per_user(evaluation.answers_of(settings, state, moment).dropna(subset=["variant"]))
    if control.in_force(settings) == name:
        control.stop(settings, name)
    page = lifecycle.write_report(settings, name)
    served_users = {variant: group["user_id"].to_numpy() for variant, group in people.groupby("variant")}
    fits = truth_table(settings, truth, world, served_users)
    return summarise(fits, result, page, counts | {"verdict": decision.action})


def run_check(settings: Settings, **live: Any) -> Check:
    """The whole check in ``settings.home`` on a private broker (the settings' ports)."""
    broker.start(settings)
    try:
        name, viewers = live_phase(settings, **live)
        counts = drain(settings) | viewers
        return conclude(settings, name, counts)
    finally:
        broker.stop(settings)


def summarise(fits: dict[str, float], result: Any, page: str, counts: dict[str, Any]) -> Check:
    """The table (online metrics and the truth's list fit per variant), the gaps, the ordering."""
    means = {(c["treatment"], c["metric"]): c["mean_treatment"] for c in result.comparisons}
    means |= {(c["control"], c["metric"]): c["mean_control"] for c in result.comparisons}
    names = list(POLICIES)
    table = [
        {
            "variant": name,
            "users": result.users.get(name, 0),
            "answers": result.answers.get(name, 0),
            "truth_list_fit": fits.get(name),
            **{metric: means.get((name, metric)) for metric in METRICS},
        }
        for name in names
    ]
    gaps = [
        {
            "pair": f"{c['treatment']} - {c['control']}",
            "metric": c["metric"],
            "online": c["difference"],
            "interval": c["difference_ci"],
            "p_value": c["p_value"],
            "truth_list_fit": fits[c["treatment"]] - fits[c["control"]],
        }
        for c in result.comparisons
    ]
    truth_order = sorted(names, key=lambda n: fits[n])
    ordered = {
        metric: sorted(names, key=lambda n: means.get((n, metric), float("nan"))) == truth_order
        for metric in METRICS
    }
    return Check(table, gaps, ordered, page, counts | {"srm_p": result.srm["p_value"]})


METRICS = ("follow_rate", "list_minutes_per_answer", "minutes_per_answer")


def render(check: Check) -> str:
    """The two tables as Markdown."""
    lines = [
        "| variant (list) | users | answers | truth: list fit | follow_rate | list min/answer | min/answer |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
        *(
            f"| {r['variant']} | {r['users']:,} | {r['answers']:,} | {r['truth_list_fit']:.3f} | "
            f"{r['follow_rate']:.3f} | {r['list_minutes_per_answer']:.1f} | {r['minutes_per_answer']:.1f} |"
            for r in check.table
        ),
        "",
        "| pair | metric | online difference [95% CI] | p | truth: list fit difference |",
        "| --- | --- | ---: | ---: | ---: |",
        *(
            f"| {g['pair']} | {g['metric']} | {g['online']:+.3f} [{g['interval'][0]:+.3f}, "
            f"{g['interval'][1]:+.3f}] | {g['p_value']:.2g} | {g['truth_list_fit']:+.3f} |"
            for g in check.gaps
        ),
        "",
        "Ordered as the truth: "
        + ", ".join(f"{m} {'yes' if ok else 'NO'}" for m, ok in check.ordered_as_truth.items()),
    ]
    return "\n".join(lines) + "\n"
