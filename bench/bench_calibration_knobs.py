"""Calibration sweep: the calibration statistics for several settings of the viewers' knobs, side by side.

Each setting replays the same sessions (same users, same random stream) of a backfill-sized
history, straight from simulator.viewers.session (no lines, no Kafka: the figure of record is
`movierec world calibration`, which parses the backfill's lines), shown the site's global
popularity list, and reports the statistics of simulator.calibration against the real ranges.
It is how the knobs of simulator.viewers were chosen. Run on demand (full scale by default):

    .venv/bin/python bench/bench_calibration_knobs.py [--days 3] [--variant name:key=value,...]

Knobs: follow, hits (scales the ground truth's taste for hits, in the replay only),
browse_candidates, browse_popularity_power, choice_temperature,
perception_noise, list_fit_power (simulator.viewers.Behaviour).
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import time

import numpy as np
from bench_key_property import key_property  # bench/ is the script's folder

from movierec import settings as settings_module
from simulator import calibration
from simulator.calibration_report import TARGETS, Interactions, in_range, measure, truth_ranking
from simulator.commands import DEFAULT_SESSIONS_PER_DAY, load_history
from simulator.history import History
from simulator.viewers import Audience, Behaviour, session

# What was tried (the last is what simulator.viewers now uses); --variant adds more.
DEFAULT_VARIANTS = (
    "before:follow=0.5,browse_popularity_power=1,list_fit_power=1,browse_candidates=20,perception_noise=0.8",
    "calibrated:follow=0.5",
)


def parse_variant(spec: str) -> tuple[str, dict[str, float], Behaviour]:
    """``name:key=value,...``: the viewers' knobs, plus ``follow`` and ``hits`` (see below)."""
    name, _, body = spec.partition(":")
    site, knobs = {"follow": 0.5, "hits": 1.0}, {}
    for part in filter(None, body.split(",")):
        key, _, value = part.partition("=")
        if key in site:
            site[key] = float(value)
        else:
            field = {f.name: f for f in dataclasses.fields(Behaviour)}[key]
            knobs[key] = int(value) if field.type in (int, "int") else float(value)
    return name, site, Behaviour(**knobs)


def replay(history: History, behaviour: Behaviour, site: dict[str, float], sessions: int, seed: int) -> dict:
    """The sessions' interactions (first start of each user and movie) and their outcomes.

    ``site["hits"]`` scales every user's taste for hits (truth.user_pop_affinity) in this replay
    only: how much of the concentration the ground truth itself makes.
    """
    truth = history.audience.truth
    if site["hits"] != 1.0:
        truth = dataclasses.replace(truth, user_pop_affinity=truth.user_pop_affinity * site["hits"])
    audience = Audience.build(truth, history.audience.runtimes, history.popularity, behaviour=behaviour)
    follow = site["follow"]
    rng = np.random.default_rng(seed)
    users = history.draw_users(rng, sessions)
    movies = np.empty(sessions, np.int64)
    from_list = np.empty(sessions, bool)
    minutes = np.empty(sessions, np.int64)
    for i, user_id in enumerate(users):
        outcome = session(rng, audience, int(user_id), history.baseline, follow)
        movies[i], from_list[i], minutes[i] = outcome.movie, outcome.from_list, outcome.minutes
    pairs = users * len(history.slugs) + movies
    _, first = np.unique(pairs, return_index=True)  # the first session of each (user, movie)
    data = Interactions(
        users=users[first],
        items=movies[first],
        times=first,  # session order is time order
        n_items=len(history.slugs),
        source="sessions",
        sessions=sessions,
        starts_from_list=int(from_list.sum()),
    )
    return {
        "audience": audience,
        "data": data,
        "minutes": float(minutes.mean()),
        "truth_scores": truth_ranking(dataclasses.replace(history, audience=audience)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=float, default=3.0)
    parser.add_argument("--sessions-per-day", type=int, default=DEFAULT_SESSIONS_PER_DAY)
    parser.add_argument("--variant", action="append", default=[], metavar="NAME:KEY=VALUE,...")
    parser.add_argument("--only", action="store_true", help="only the --variant settings, not the defaults")
    parser.add_argument("--ease-items", type=int, default=calibration.EASE_MAX_ITEMS)
    parser.add_argument("--key-sessions", type=int, default=3_000, help="of the key-property check")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    calibration.EASE_MAX_ITEMS = args.ease_items  # the sweep may fit EASE on fewer items, faster
    settings = settings_module.load()
    history = load_history(settings)
    sessions = round(args.days * args.sessions_per_day)
    variants = [parse_variant(v) for v in ([] if args.only else list(DEFAULT_VARIANTS)) + args.variant]
    print(f"{settings.scale_users:,} users x {settings.scale_movies:,} movies; {sessions:,} sessions each")
    keys = list(TARGETS)
    head = " ".join(f"{k:>10}" for k in keys)
    tail = f"{'from list':>9} {'min/sess':>8} {'pairs':>8} {'EASE/pop/truth R@20':>21} {'s':>5}"
    print(f"{'setting':<12} {head} {tail}")
    print(f"{'real range':<12} " + " ".join(f"{f'{TARGETS[k].low:g}-{TARGETS[k].high:g}':>10}" for k in keys))
    for name, site, behaviour in variants:
        began = time.monotonic()
        run = replay(history, behaviour, site, sessions, settings.seed)
        stats = measure(run["data"], others={"truth": run["truth_scores"]})
        ref = stats["reference"]
        key = key_property(history, run["audience"], args.key_sessions, site["follow"])
        cells = " ".join(f"{stats[k]:>9.3f}{'' if in_range(k, stats[k]) else '!'}" for k in keys)
        print(
            f"{name:<12} {cells} {stats['starts_from_list']:>9.1%} {run['minutes']:>8.1f} "
            f"{stats['pairs']:>8,} {ref['ease_recall']:>7.3f}/{ref['popularity_recall']:.3f}"
            f"/{ref['others']['truth']:.3f} "
            f"{time.monotonic() - began:>5.0f}",
            flush=True,
        )
        key_row = "  ".join(f"{minutes:.1f} min {share:.1%}" for minutes, share in key.values())
        print(f"{'':<12} key property (oracle, popularity, random): {key_row}")
        print(f"{'':<12} {behaviour} {site}", flush=True)
    print("! outside the real range")


if __name__ == "__main__":
    main()
