"""The ground truth: deterministic, with real genre and demographic structure, and a usable oracle."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from movierec.movielog import is_movie_id
from simulator import truth as truth_module
from simulator.catalog import AGE_BANDS, GENDERS, GENRE_INDEX, OCCUPATIONS, World, load_world, world_dir
from simulator.truth import (
    N_GENRES,
    Truth,
    affinity,
    enjoyment,
    generate_truth,
    load_truth,
    scores_for_user,
    scores_for_users,
    true_top_k,
)
from tests.test_simulator_catalog import small_settings


@pytest.fixture(scope="module")
def world(home: Path) -> World:
    return load_world(small_settings(home))


@pytest.fixture(scope="module")
def truth(home: Path, world: World) -> Truth:
    return load_truth(small_settings(home), world)


def band_of(world: World) -> np.ndarray:
    return np.searchsorted([hi for _, hi in AGE_BANDS], world.user_age)


def cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(-1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1))


def test_the_truth_is_deterministic_and_depends_on_the_seed(world: World, truth: Truth) -> None:
    again = generate_truth(17645, world)
    other = generate_truth(1, world)
    for name in ("user_factors", "user_pop_affinity", "activity", "movie_factors", "movie_quality"):
        assert np.array_equal(getattr(truth, name), getattr(again, name)), name
        assert not np.array_equal(getattr(truth, name), getattr(other, name)), name


def test_the_truth_is_its_own_file_beside_the_catalog_and_is_reused(
    home: Path, world: World, truth: Truth, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = small_settings(home)
    path = world_dir(settings) / "truth.npz"
    assert path.is_file() and (world_dir(settings) / "movies.parquet").is_file()
    stamp = path.stat().st_mtime_ns

    def no_generation(*args: object) -> None:
        raise AssertionError("regenerated although cached")

    monkeypatch.setattr(truth_module, "generate_truth", no_generation)
    cached = load_truth(settings, world)
    assert np.array_equal(cached.user_factors, truth.user_factors)
    assert list(cached.movie_ids) == list(world.movie_ids)
    assert path.stat().st_mtime_ns == stamp


def test_users_sharing_demographics_have_more_similar_tastes(world: World, truth: Truth) -> None:
    group = (band_of(world) * 2 + world.user_gender) * len(OCCUPATIONS) + world.user_occupation
    same = []
    for g in np.unique(group):
        members = np.flatnonzero(group == g)
        if len(members) >= 2:
            i, j = np.triu_indices(len(members), 1)
            same.append(cosine(truth.user_factors[members[i]], truth.user_factors[members[j]]))
    rng = np.random.default_rng(0)
    a, b = rng.integers(0, world.n_users, (2, 20_000))
    random_pairs = cosine(truth.user_factors[a], truth.user_factors[b])
    assert np.concatenate(same).mean() > random_pairs.mean() + 0.1


def test_movies_sharing_genres_have_more_similar_factors(world: World, truth: Truth) -> None:
    genres = world.movie_genres
    i, j = np.triu_indices(world.n_movies, 1)
    similarity = cosine(truth.movie_factors[i], truth.movie_factors[j])
    share = (genres[i] & genres[j]).any(1)
    assert similarity[share].mean() > similarity[~share].mean() + 0.1


def mean_affinity(truth: Truth, users: np.ndarray, movies: np.ndarray) -> float:
    return float(affinity(truth, users[:, None] + 1, movies[None, :]).mean())


def test_tastes_follow_age_and_gender(world: World, truth: Truth) -> None:
    genres, band = world.movie_genres, band_of(world)
    young, old = np.flatnonzero(band == 0), np.flatnonzero(band == len(AGE_BANDS) - 1)
    animation = np.flatnonzero(genres[:, GENRE_INDEX["Animation"]])
    war_western = np.flatnonzero(genres[:, GENRE_INDEX["War"]] | genres[:, GENRE_INDEX["Western"]])
    young_gap = mean_affinity(truth, young, animation) - mean_affinity(truth, young, war_western)
    old_gap = mean_affinity(truth, old, animation) - mean_affinity(truth, old, war_western)
    assert young_gap > old_gap + 0.3

    women = np.flatnonzero(world.user_gender == GENDERS.index("F"))
    men = np.flatnonzero(world.user_gender == GENDERS.index("M"))
    romance = np.flatnonzero(genres[:, GENRE_INDEX["Romance"]])
    assert mean_affinity(truth, women, romance) > mean_affinity(truth, men, romance) + 0.2


def test_genre_columns_of_a_movie_are_its_genre_mix(world: World, truth: Truth) -> None:
    mix = truth.movie_factors[:, :N_GENRES]
    assert np.array_equal(mix > 0, world.movie_genres)
    assert np.allclose(np.linalg.norm(mix, axis=1), 1, atol=1e-5)


def test_affinity_broadcasts_and_agrees_with_scalar_calls(truth: Truth) -> None:
    users, movies = np.array([1, 5, 2000]), np.array([0, 17, 299, 3])
    grid = affinity(truth, users[:, None], movies[None, :])
    assert grid.shape == (3, 4)
    for a, user in enumerate(users):
        for b, movie in enumerate(movies):
            assert grid[a, b] == pytest.approx(float(affinity(truth, int(user), int(movie))), rel=1e-5)
    assert np.allclose(affinity(truth, 5, np.arange(300)), scores_for_user(truth, 5), atol=1e-5)
    grid = scores_for_users(truth, np.array([5, 9]))
    assert grid.shape == (2, 300)
    assert np.allclose(grid[1], affinity(truth, 9, np.arange(300)), atol=1e-5)
    assert affinity(truth, users, movies[:3]).shape == (3,)


def test_random_pairs_score_about_standard_normal(world: World, truth: Truth) -> None:
    rng = np.random.default_rng(1)
    scores = affinity(
        truth, rng.integers(1, world.n_users + 1, 20_000), rng.integers(0, world.n_movies, 20_000)
    )
    assert abs(scores.mean()) < 0.5 and 0.6 < scores.std() < 1.5


def test_true_top_k_is_the_users_best_20_distinct_slugs(world: World, truth: Truth) -> None:
    for user in (1, 77, world.n_users):
        top = true_top_k(truth, user)
        assert len(top) == 20 == len(set(top))
        assert all(is_movie_id(slug) and slug in world.movie_index for slug in top)
        scores = scores_for_user(truth, user)
        ranked = [world.movie_index[slug] for slug in top]
        assert np.all(np.diff(scores[ranked]) <= 0)  # best first
        assert scores[ranked[-1]] >= np.sort(scores)[-20]  # nothing outside beats the 20th


def test_true_top_k_leaves_out_excluded_movies(world: World, truth: Truth) -> None:
    top = true_top_k(truth, 3)
    watched = {world.movie_index[slug] for slug in top[:5]}
    after = true_top_k(truth, 3, exclude=watched)
    assert after[:15] == top[5:] and not set(after) & set(top[:5])
    assert len(true_top_k(truth, 3, k=5)) == 5


def test_the_oracle_beats_popularity_which_beats_random(world: World, truth: Truth) -> None:
    rng = np.random.default_rng(2)
    users = rng.integers(1, world.n_users + 1, 200)
    popular = np.argsort(-world.popularity)[:20]
    oracle = np.array([[world.movie_index[s] for s in true_top_k(truth, int(u))] for u in users])
    random_lists = rng.integers(0, world.n_movies, (200, 20))
    joy = {
        "oracle": enjoyment(affinity(truth, users[:, None], oracle)).mean(),
        "popular": enjoyment(affinity(truth, users[:, None], popular[None, :])).mean(),
        "random": enjoyment(affinity(truth, users[:, None], random_lists)).mean(),
    }
    assert joy["oracle"] > joy["popular"] + 0.15 and joy["popular"] > joy["random"] + 0.05, joy


def test_enjoyment_is_an_increasing_share() -> None:
    values = enjoyment(np.linspace(-10, 10, 101))
    assert np.all((values >= 0) & (values <= 1)) and np.all(np.diff(values) > 0)
    assert enjoyment(-1.0) < 0.2 < 0.9 < enjoyment(3.5)


def test_activity_is_heavy_tailed_with_mean_one(truth: Truth) -> None:
    activity = np.sort(truth.activity)[::-1]
    assert activity.min() > 0 and activity.mean() == pytest.approx(1, rel=1e-3)
    assert activity[: len(activity) // 100].sum() / activity.sum() > 0.05
    assert activity[0] > 10 * np.median(activity)


def test_users_differ_in_their_taste_for_hits(truth: Truth) -> None:
    assert truth.user_pop_affinity.std() > 0.1
    assert (truth.user_pop_affinity > 0).mean() > 0.6  # most users lean towards what is popular


def test_a_damaged_truth_file_is_rebuilt(tmp_path: Path) -> None:
    settings = small_settings(tmp_path, users=40, movies=30)
    world = load_world(settings)
    first = load_truth(settings, world)
    path = world_dir(settings) / "truth.npz"
    path.write_bytes(b"not a zip file")
    rebuilt = load_truth(settings, world)
    assert np.array_equal(rebuilt.user_factors, first.user_factors)
    assert path.stat().st_size > 1000
