"""Viewers: the key property that makes online metrics meaningful, and determinism."""

from __future__ import annotations

import numpy as np
import pytest

from simulator.backfill import History
from simulator.catalog import World, load_world
from simulator.truth import Truth, load_truth, true_top_k
from simulator.viewers import session
from tests.test_simulator_catalog import small_settings

SESSIONS = 2_000


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> tuple[World, Truth, History]:
    # bigger than the catalog tests: with 300 movies a random 20 is not far from popular
    settings = small_settings(tmp_path_factory.mktemp("viewers"), users=5_000, movies=1_000)
    world = load_world(settings)
    truth = load_truth(settings, world)
    return world, truth, History.build(world, truth)


def serve_and_watch(
    site: tuple[World, Truth, History], strategy: str, follow: float = 0.5
) -> dict[str, float]:
    """The same viewers (same users, same random stream) shown lists of one strategy."""
    world, truth, history = site
    users = history.draw_users(np.random.default_rng(1), SESSIONS)
    viewer_rng = np.random.default_rng(42)
    list_rng = np.random.default_rng(7)
    minutes, from_list = [], []
    for user_id in users:
        if strategy == "oracle":
            shown = np.array([world.movie_index[slug] for slug in true_top_k(truth, int(user_id))])
        elif strategy == "popular":
            shown = history.baseline
        else:
            shown = list_rng.choice(world.n_movies, 20, replace=False)
        outcome = session(viewer_rng, history.audience, int(user_id), shown, follow)
        minutes.append(outcome.minutes)
        from_list.append(outcome.from_list)
    return {"minutes": float(np.mean(minutes)), "from_list": float(np.mean(from_list))}


def test_better_lists_earn_more_minutes_and_more_watches_from_the_list(
    site: tuple[World, Truth, History],
) -> None:
    oracle = serve_and_watch(site, "oracle")
    popular = serve_and_watch(site, "popular")
    random = serve_and_watch(site, "random")
    # "markedly": a gap far beyond the noise of 2,000 sessions
    assert oracle["minutes"] > 1.08 * popular["minutes"]
    assert popular["minutes"] > random["minutes"]
    assert oracle["from_list"] > 1.4 * popular["from_list"]
    assert popular["from_list"] > 1.4 * random["from_list"]


def test_the_follow_knob_drives_how_much_lists_matter(site: tuple[World, Truth, History]) -> None:
    ignored = serve_and_watch(site, "oracle", follow=0.0)
    followed = serve_and_watch(site, "oracle", follow=1.0)
    assert ignored["from_list"] == 0.0
    assert followed["from_list"] > 0.6
    assert followed["minutes"] > ignored["minutes"]


def test_sessions_are_deterministic_for_a_seed(site: tuple[World, Truth, History]) -> None:
    _, _, history = site

    def run(seed: int) -> list[tuple[int, bool, int, int | None]]:
        rng = np.random.default_rng(seed)
        out = []
        for user_id in history.draw_users(rng, 200):
            o = session(rng, history.audience, int(user_id), history.baseline, 0.5)
            out.append((o.movie, o.from_list, o.minutes, o.rating))
        return out

    assert run(5) == run(5)
    assert run(5) != run(6)


def test_outcomes_stay_within_the_movie_and_the_rating_scale(site: tuple[World, Truth, History]) -> None:
    world, _, history = site
    rng = np.random.default_rng(3)
    ratings = []
    for user_id in history.draw_users(rng, 500):
        o = session(rng, history.audience, int(user_id), history.baseline, 0.5)
        assert 1 <= o.minutes <= world.runtime[o.movie]
        if o.rating is not None:
            ratings.append(o.rating)
    assert ratings and set(ratings) <= {1, 2, 3, 4, 5}
    assert len(set(ratings)) >= 3  # ratings spread with enjoyment


def test_active_users_come_more_often(site: tuple[World, Truth, History]) -> None:
    _, truth, history = site
    drawn = history.draw_users(np.random.default_rng(9), 50_000)
    counts = np.bincount(drawn, minlength=len(truth.activity) + 1)[1:]
    top = np.argsort(-truth.activity)[: len(truth.activity) // 10]
    assert counts[top].sum() > 0.3 * counts.sum()  # the most active tenth brings far more than a tenth
