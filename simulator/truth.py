"""The ground truth of the simulated site: what every user really likes, and how often they come.

The product's training path never reads this; only evaluation code that says so
(the oracle list, the key-property check, scenario evaluation) may import
``simulator.truth``. Everything the product learns must come from the movielog
stream and the catalog API, as on the real site.

The model, in standard units (a random user-movie pair scores about N(0, 1)):

    affinity(u, m) = user_factors[u] . movie_factors[m]          (taste)
                     + movie_bias[m]                              (quality)
                     + user_pop_affinity[u] * movie_pop[m]        (taste for hits)

- Factor columns ``0..18`` are the genres in ``catalog.GENRES`` order: a user's
  genre preferences (built from their age band, gender and occupation, plus a
  personal part) against a movie's genre mix (unit norm over its genres).
  Columns ``19..`` are free latent taste, shared in part by users of the same
  age band and gender, and by the films of one collection.
- ``movie_quality`` is a noisy public signal (the catalog's vote average,
  trusted by its vote count) plus a part no one can see.
- ``activity`` is a heavy-tailed (lognormal) relative session rate, mean 1:
  a user's sessions per day = activity * site sessions per day / users.
- ``enjoyment`` maps an affinity to 0..1 (the share of a movie watched).

``load_truth`` caches the arrays in ``truth.npz`` beside the catalog cache.
"""

from __future__ import annotations

import json
import logging
import os
import time
import zipfile
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow.compute as pc

from movierec.settings import Settings
from simulator.catalog import AGE_BANDS, GENRE_INDEX, GENRES, OCCUPATIONS, World, world_dir

log = logging.getLogger(__name__)

TRUTH_VERSION = 1
_TRUTH_STREAM = 3  # SeedSequence spawn key, apart from the catalog's streams

N_GENRES = len(GENRES)
LATENT_DIM = 16
DIM = N_GENRES + LATENT_DIM

# Weights of the affinity terms (see the module docstring), chosen so that a
# random pair scores about N(0, 1) and a user's best movies about +3.
_PERSONAL_GENRE_SD = 0.45  # a user's own genre taste beyond their demographics
_LATENT_SD = 0.35
_GROUP_LATENT_SD = 0.15  # latent taste shared by an age band x gender group
_COLLECTION_SHARE = 0.7  # how much of its latent taste a sequel shares with its collection
QUALITY_WEIGHT = 0.4
# enjoyment = sigmoid(slope * (affinity - midpoint)): a random movie is enjoyed
# little (about 0.2), a user's best movies almost fully.
ENJOYMENT_MIDPOINT = 1.0
ENJOYMENT_SLOPE = 1.5

# Genre preferences by demographic group (added to each other and to a seeded
# jitter). Hand-set so the structure is plausible and checkable.
_BAND_GENRE_PRIOR: tuple[dict[str, float], ...] = (
    {"Animation": 1.0, "Family": 0.8, "Action": 0.5, "Fantasy": 0.5, "Comedy": 0.3, "Documentary": -0.5,
     "History": -0.6, "War": -0.6, "Western": -0.7},
    {"Horror": 0.6, "Action": 0.5, "Comedy": 0.5, "Science Fiction": 0.4, "Animation": 0.2, "Western": -0.5},
    {"Thriller": 0.3, "Crime": 0.3, "Science Fiction": 0.3, "Comedy": 0.2},
    {"Drama": 0.3, "Crime": 0.3, "Family": 0.3, "Thriller": 0.2},
    {"Drama": 0.4, "History": 0.3, "Mystery": 0.3, "Horror": -0.2},
    {"Drama": 0.5, "History": 0.5, "War": 0.4, "Western": 0.3, "Horror": -0.4},
    {"Drama": 0.6, "History": 0.6, "War": 0.6, "Western": 0.7, "Horror": -0.6, "Animation": -0.6},
)  # fmt: skip
_GENDER_GENRE_PRIOR: tuple[dict[str, float], ...] = (
    {"Action": 0.4, "Science Fiction": 0.4, "War": 0.4, "Western": 0.3, "Romance": -0.3},
    {"Romance": 0.8, "Drama": 0.4, "Family": 0.3, "Music": 0.3, "War": -0.5, "Action": -0.3, "Western": -0.4},
)
_OCCUPATION_GENRE_PRIOR: dict[str, dict[str, float]] = {
    "academic/educator": {"Documentary": 0.4, "History": 0.4},
    "artist": {"Drama": 0.3, "Music": 0.5, "Animation": 0.3},
    "college/grad student": {"Comedy": 0.4, "Horror": 0.3},
    "doctor/health care": {"Drama": 0.3, "Mystery": 0.2},
    "homemaker": {"Family": 0.5, "Romance": 0.4},
    "K-12 student": {"Animation": 0.5, "Family": 0.3},
    "lawyer": {"Crime": 0.5, "Thriller": 0.3},
    "programmer": {"Science Fiction": 0.6, "Fantasy": 0.3},
    "retired": {"History": 0.4, "Western": 0.3},
    "scientist": {"Documentary": 0.5, "Science Fiction": 0.4},
    "writer": {"Drama": 0.4, "Mystery": 0.3},
}
# Relative activity and taste for hits by age band (young users come more often, like hits more).
_BAND_ACTIVITY = np.array([0.9, 1.3, 1.2, 1.0, 0.9, 0.8, 0.7])
_BAND_POP_AFFINITY = np.array([0.45, 0.4, 0.3, 0.25, 0.2, 0.15, 0.1])
_ACTIVITY_SIGMA = 1.1


@dataclass(frozen=True)
class Truth:
    """The hidden taste of every user and the hidden quality of every movie (float32 arrays)."""

    user_factors: np.ndarray  # (n_users, DIM), row user_id - 1: genre preferences, then latent taste
    user_pop_affinity: np.ndarray  # (n_users,)
    activity: np.ndarray  # (n_users,) relative session rate, mean 1, heavy-tailed
    movie_factors: np.ndarray  # (n_movies, DIM), row = movie index: genre mix, then latent
    movie_quality: np.ndarray  # (n_movies,) standard units
    movie_pop: np.ndarray  # (n_movies,) standardised log popularity (public)
    movie_ids: np.ndarray  # (n_movies,) slugs, from the world

    @property
    def movie_bias(self) -> np.ndarray:
        return QUALITY_WEIGHT * self.movie_quality


def generate_truth(seed: int, world: World) -> Truth:
    """The ground truth of ``world``, deterministic in (seed, world)."""
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(_TRUTH_STREAM,)))
    n_users = world.n_users

    band = np.searchsorted([hi for _, hi in AGE_BANDS], world.user_age)  # index of the user's age band
    band_prefs = _priors(_BAND_GENRE_PRIOR) + rng.normal(0, 0.15, (len(AGE_BANDS), N_GENRES))
    gender_prefs = _priors(_GENDER_GENRE_PRIOR) + rng.normal(0, 0.1, (2, N_GENRES))
    occupation_prefs = _priors([_OCCUPATION_GENRE_PRIOR.get(name, {}) for name in OCCUPATIONS]) + rng.normal(
        0, 0.3, (len(OCCUPATIONS), N_GENRES)
    )
    group_latent = rng.normal(0, _GROUP_LATENT_SD, (len(AGE_BANDS), 2, LATENT_DIM))

    users = np.empty((n_users, DIM), np.float32)
    genre_part = users[:, :N_GENRES]
    genre_part[:] = rng.normal(0, _PERSONAL_GENRE_SD, (n_users, N_GENRES))
    genre_part += band_prefs[band]
    genre_part += gender_prefs[world.user_gender]
    genre_part += occupation_prefs[world.user_occupation]
    users[:, N_GENRES:] = rng.normal(0, _LATENT_SD, (n_users, LATENT_DIM))
    users[:, N_GENRES:] += group_latent[band, world.user_gender]

    pop_affinity = (_BAND_POP_AFFINITY[band] + rng.normal(0, 0.25, n_users)).astype(np.float32)
    activity = _BAND_ACTIVITY[band] * np.exp(_ACTIVITY_SIGMA * rng.standard_normal(n_users))
    activity = (activity / activity.mean()).astype(np.float32)

    movies = np.zeros((world.n_movies, DIM), np.float32)
    genres = world.movie_genres.astype(np.float32)
    movies[:, :N_GENRES] = genres / np.sqrt(np.maximum(genres.sum(1, keepdims=True), 1))
    latent = rng.normal(0, _LATENT_SD, (world.n_movies, LATENT_DIM))
    collection = _collection_codes(world)
    shared = rng.normal(0, _LATENT_SD, (max(collection.max() + 1, 1), LATENT_DIM))
    in_collection = collection >= 0
    latent[in_collection] = (
        _COLLECTION_SHARE * shared[collection[in_collection]]
        + np.sqrt(1 - _COLLECTION_SHARE**2) * latent[in_collection]
    )
    movies[:, N_GENRES:] = latent

    votes = world.movies.column("vote_count").to_numpy()
    average = world.movies.column("vote_average").to_numpy()
    rated = votes > 0
    public = np.zeros(world.n_movies)
    if rated.any():
        public[rated] = (average[rated] - average[rated].mean()) / max(average[rated].std(), 1e-9)
    trust = votes / (votes + 20.0)  # a handful of votes says little
    quality = 0.7 * trust * public + np.sqrt(1 - 0.49 * trust**2) * rng.standard_normal(world.n_movies)

    log_pop = np.log(world.popularity + 1e-3)
    movie_pop = (log_pop - log_pop.mean()) / max(log_pop.std(), 1e-9)

    return Truth(
        user_factors=users,
        user_pop_affinity=pop_affinity,
        activity=activity,
        movie_factors=movies,
        movie_quality=quality.astype(np.float32),
        movie_pop=movie_pop.astype(np.float32),
        movie_ids=world.movie_ids,
    )


def _priors(groups: list[dict[str, float]] | tuple[dict[str, float], ...]) -> np.ndarray:
    table = np.zeros((len(groups), N_GENRES))
    for row, prior in enumerate(groups):
        for genre, weight in prior.items():
            table[row, GENRE_INDEX[genre]] = weight
    return table


def _collection_codes(world: World) -> np.ndarray:
    """0-based collection number of every movie, -1 for a film in no collection."""
    ids = pc.struct_field(world.movies.column("belongs_to_collection").combine_chunks(), "id")
    raw = ids.fill_null(-1).to_numpy()
    codes = np.full(world.n_movies, -1, np.int64)
    member = raw >= 0
    codes[member] = np.unique(raw[member], return_inverse=True)[1]
    return codes


# --- using the truth ------------------------------------------------------------


def affinity(truth: Truth, user_ids: np.ndarray | int, movie_indices: np.ndarray | int) -> np.ndarray:
    """How much each user likes each movie (standard units).

    ``user_ids`` (1-based) and ``movie_indices`` (0-based, as in the world)
    broadcast against each other: equal shapes give one score per pair,
    ``(n, 1)`` and ``(1, k)`` give an ``(n, k)`` grid.
    """
    users = np.asarray(user_ids) - 1
    movies = np.asarray(movie_indices)
    taste = np.einsum("...d,...d->...", truth.user_factors[users], truth.movie_factors[movies])
    return taste + truth.movie_bias[movies] + truth.user_pop_affinity[users] * truth.movie_pop[movies]


def scores_for_user(truth: Truth, user_id: int) -> np.ndarray:
    """The affinity of ``user_id`` for every movie, indexed by movie index."""
    return scores_for_users(truth, np.array([user_id]))[0]


def scores_for_users(truth: Truth, user_ids: np.ndarray) -> np.ndarray:
    """The affinity of each of ``user_ids`` for every movie: (users, movies), one GEMM."""
    rows = np.asarray(user_ids) - 1
    return (
        truth.user_factors[rows] @ truth.movie_factors.T
        + truth.movie_bias
        + truth.user_pop_affinity[rows, None] * truth.movie_pop
    )


def true_top_k(truth: Truth, user_id: int, k: int = 20, exclude: Collection[int] = ()) -> list[str]:
    """The slugs of the ``k`` movies ``user_id`` would like best, best first (the oracle list).

    ``exclude``: movie indices to leave out (e.g. what the user has already watched).
    """
    scores = scores_for_user(truth, user_id)
    if len(exclude):
        scores[np.fromiter(exclude, np.int64)] = -np.inf
    k = min(k, len(scores) - len(exclude))
    best = np.argpartition(-scores, k - 1)[:k] if k > 0 else np.zeros(0, np.int64)
    best = best[np.lexsort((best, -scores[best]))]  # ties broken by movie index, for determinism
    return [str(slug) for slug in truth.movie_ids[best]]


def enjoyment(scores: np.ndarray | float) -> np.ndarray:
    """The share (0..1) of a movie a user enjoys, from its affinity."""
    return 1.0 / (1.0 + np.exp(-ENJOYMENT_SLOPE * (np.asarray(scores, np.float64) - ENJOYMENT_MIDPOINT)))


# --- cache ----------------------------------------------------------------------


def truth_path(settings: Settings) -> Path:
    return world_dir(settings) / "truth.npz"


def load_truth(settings: Settings, world: World) -> Truth:
    """The truth of ``world``, from ``truth.npz`` beside the catalog, building it first if needed."""
    path = truth_path(settings)
    stamp = {
        "version": TRUTH_VERSION,
        "seed": settings.seed,
        "users": world.n_users,
        "movies": world.n_movies,
    }
    arrays = _read(path, stamp)
    if arrays is None:
        started = time.perf_counter()
        truth = generate_truth(settings.seed, world)
        log.info("truth: generated in %.1fs", time.perf_counter() - started)
        mark = time.perf_counter()
        _write(path, truth, stamp)
        log.info("truth: written to %s in %.1fs", path, time.perf_counter() - mark)
        return truth
    log.info("truth: loaded from %s", path)
    return Truth(**arrays, movie_ids=world.movie_ids)


_ARRAYS = ("user_factors", "user_pop_affinity", "activity", "movie_factors", "movie_quality", "movie_pop")


def _read(path: Path, stamp: dict[str, int]) -> dict[str, np.ndarray] | None:
    try:
        with np.load(path) as data:
            if json.loads(str(data["stamp"])) != stamp:
                return None
            return {name: data[name] for name in _ARRAYS}
    except (OSError, KeyError, ValueError, EOFError, zipfile.BadZipFile):  # missing or damaged: rebuild
        return None


def _write(path: Path, truth: Truth, stamp: dict[str, int]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
    with partial.open("wb") as out:  # a file object, so numpy does not append ".npz"
        np.savez(out, stamp=np.array(json.dumps(stamp)), **{name: getattr(truth, name) for name in _ARRAYS})
    os.replace(partial, path)
