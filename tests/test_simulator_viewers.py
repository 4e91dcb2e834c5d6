"""Viewers: the key property that makes online metrics meaningful, and determinism."""

from __future__ import annotations

import numpy as np
import pytest

from simulator.catalog import World, load_world
from simulator.history import History
from simulator.truth import Truth, load_truth, true_top_k
from simulator.viewers import session
from tests.test_simulator_catalog import small_settings

SESSIONS = 10_000


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> tuple[World, Truth, History]:
    # bigger than the catalog tests: with 300 movies a random 20 is not far from popular
    settings = small_settings(tmp_path_factory.mktemp("viewers"), users=5_000, movies=1_000)
    world = load_world(settings)
    truth = load_truth(settings, world)
    return world, truth, History.build(world, truth)


def serve_and_watch(
    site: tuple[World, Truth, History], strategy: str, follow: float = 0.5
) -> dict[str, np.ndarray]:
    """Per session: minutes and whether the movie came from the list, for the same viewers shown
    lists of one strategy. Session i draws from its own stream (42, i) under every strategy
    (common random numbers), so a viewer who does not take the list does exactly the same."""
    world, truth, history = site
    users = history.draw_users(np.random.default_rng(1), SESSIONS)
    list_rng = np.random.default_rng(7)
    minutes, from_list = [], []
    for i, user_id in enumerate(users):
        if strategy == "oracle":
            shown = np.array([world.movie_index[slug] for slug in true_top_k(truth, int(user_id))])
        elif strategy == "popular":
            shown = history.baseline
        else:
            shown = list_rng.choice(world.n_movies, 20, replace=False)
        outcome = session(np.random.default_rng([42, i]), history.audience, int(user_id), shown, follow)
        minutes.append(outcome.minutes)
        from_list.append(outcome.from_list)
    return {"minutes": np.array(minutes, float), "from_list": np.array(from_list, float)}


def paired_z(better: np.ndarray, worse: np.ndarray) -> float:
    """z of the mean per-session difference (paired: the same viewers, session by session)."""
    diff = better - worse
    return float(diff.mean() / max(diff.std(ddof=1) / np.sqrt(len(diff)), 1e-12))


def test_better_lists_earn_more_minutes_and_more_watches_from_the_list(
    site: tuple[World, Truth, History],
) -> None:
    oracle = serve_and_watch(site, "oracle")
    popular = serve_and_watch(site, "popular")
    random = serve_and_watch(site, "random")
    # one-sided paired z-tests over the 2,000 sessions, z > 3 (alpha 0.0013 each)
    assert paired_z(oracle["minutes"], popular["minutes"]) > 3
    assert paired_z(popular["minutes"], random["minutes"]) > 3
    assert paired_z(oracle["from_list"], popular["from_list"]) > 3
    assert paired_z(popular["from_list"], random["from_list"]) > 3
    # and by a margin: the true top-20 is taken far more often than the site's list
    assert oracle["from_list"].mean() > 3 * popular["from_list"].mean()


def test_the_follow_knob_drives_how_much_lists_matter(site: tuple[World, Truth, History]) -> None:
    ignored = serve_and_watch(site, "oracle", follow=0.0)
    followed = serve_and_watch(site, "oracle", follow=1.0)
    assert ignored["from_list"].sum() == 0
    assert followed["from_list"].mean() > 0.4
    assert paired_z(followed["minutes"], ignored["minutes"]) > 3


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
