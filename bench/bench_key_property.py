"""The simulator's key property, measured: better lists earn more watching.

The same viewers (same users, same random stream) are shown, side by side:
  1. their ground-truth top-20 (the oracle),
  2. the site's global popularity top-20,
  3. a random 20,
and we report minutes watched per session and the share of watches started
from the list. Without oracle > popularity > random, no online metric of ours
could mean anything. Session i of every strategy draws from its own random
stream seeded (seed, i) (common random numbers): a session whose viewer does not
follow the list browses and watches exactly alike under every strategy, so the
differences come from the lists alone, not from streams drifting apart. Run on
demand (full scale by default):

    .venv/bin/python bench/bench_key_property.py [--sessions 3000] [--follow 0.5]
"""

from __future__ import annotations

import argparse
import logging

import numpy as np

from movierec import settings as settings_module
from simulator.commands import load_history
from simulator.history import History
from simulator.truth import true_top_k
from simulator.viewers import Audience, session


def key_property(
    history: History, audience: Audience, sessions: int, follow: float
) -> dict[str, tuple[float, float]]:
    """(minutes per session, share started from the list) of each list strategy, same viewers."""
    truth = audience.truth
    index_of = {str(slug): i for i, slug in enumerate(history.slugs)}
    users = history.draw_users(np.random.default_rng(1), sessions)
    list_rng = np.random.default_rng(7)
    strategies = {
        "ground-truth top-20 (oracle)": lambda u: np.array([index_of[s] for s in true_top_k(truth, u)]),
        "global popularity top-20": lambda u: history.baseline,
        "random 20": lambda u: list_rng.choice(len(history.slugs), 20, replace=False),
    }
    results = {}
    for name, shown_for in strategies.items():
        outcomes = [
            # the same viewers, session by session, for every strategy
            session(np.random.default_rng([42, i]), audience, int(u), shown_for(int(u)), follow)
            for i, u in enumerate(users)
        ]
        results[name] = (
            float(np.mean([o.minutes for o in outcomes])),
            float(np.mean([o.from_list for o in outcomes])),
        )
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=3_000)
    parser.add_argument("--follow", type=float, default=0.5)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    settings = settings_module.load()
    history = load_history(settings)
    print(
        f"{settings.scale_users:,} users x {settings.scale_movies:,} movies; {args.sessions:,} sessions each"
    )
    print(f"{'list shown':<30} {'minutes/session':>16} {'from the list':>14} {'vs popularity':>14}")
    results = key_property(history, history.audience, args.sessions, args.follow)
    base = results["global popularity top-20"][0]
    for name, (minutes, from_list) in results.items():
        print(f"{name:<30} {minutes:>16.1f} {from_list:>13.1%} {minutes / base:>13.2f}x")


if __name__ == "__main__":
    main()
