"""The simulator's key property, measured: better lists earn more watching.

The same viewers (same users, same random stream) are shown, side by side:
  1. their ground-truth top-20 (the oracle),
  2. the site's global popularity top-20,
  3. a random 20,
and we report minutes watched per session and the share of watches started
from the list. Without oracle > popularity > random, no online metric of ours
could mean anything. Run on demand (full scale by default):

    .venv/bin/python bench/bench_key_property.py [--sessions 3000] [--follow 0.5]
"""

from __future__ import annotations

import argparse
import logging

import numpy as np

from movierec import settings as settings_module
from simulator.commands import load_history
from simulator.truth import true_top_k
from simulator.viewers import session


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=3_000)
    parser.add_argument("--follow", type=float, default=0.5)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    settings = settings_module.load()
    history = load_history(settings)
    truth = history.audience.truth
    index_of = {str(slug): i for i, slug in enumerate(history.slugs)}
    users = history.draw_users(np.random.default_rng(1), args.sessions)
    list_rng = np.random.default_rng(7)
    strategies = {
        "ground-truth top-20 (oracle)": lambda u: np.array([index_of[s] for s in true_top_k(truth, u)]),
        "global popularity top-20": lambda u: history.baseline,
        "random 20": lambda u: list_rng.choice(len(history.slugs), 20, replace=False),
    }
    print(
        f"{settings.scale_users:,} users x {settings.scale_movies:,} movies; {args.sessions:,} sessions each"
    )
    print(f"{'list shown':<30} {'minutes/session':>16} {'from the list':>14} {'vs popularity':>14}")
    results = {}
    for name, shown_for in strategies.items():
        viewer_rng = np.random.default_rng(42)  # the same viewers for every strategy
        outcomes = [
            session(viewer_rng, history.audience, int(u), shown_for(int(u)), args.follow) for u in users
        ]
        results[name] = (np.mean([o.minutes for o in outcomes]), np.mean([o.from_list for o in outcomes]))
    base = results["global popularity top-20"][0]
    for name, (minutes, from_list) in results.items():
        print(f"{name:<30} {minutes:>16.1f} {from_list:>13.1%} {minutes / base:>13.2f}x")


if __name__ == "__main__":
    main()
