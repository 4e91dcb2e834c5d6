"""A simulated site's history, as the backfill, live mode and the scenario director share it.

``History``: what a history is drawn from (the audience, the catalog's ids, who is active,
the site's own list); ``Scripted``: one session decided in full; ``Line``: one line as
written, with its time and user. The backfill and live mode write lines from these; the
director (simulator.director) changes the ``History`` viewers see and scripts sessions.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import numpy as np
import pyarrow as pa

from simulator.catalog import World
from simulator.truth import Truth
from simulator.viewers import Audience, Behaviour

Line = tuple[datetime, int, str | bytes]  # (time, user id, line); bytes only for injected non-UTF-8 lines


@dataclass(frozen=True)
class History:
    """What a history is drawn from: the audience, the catalog's ids, and who is active."""

    audience: Audience
    slugs: np.ndarray  # movie id per movie index (str)
    activity_cdf: np.ndarray  # sessions are drawn from users (id = index + 1) by activity
    baseline: np.ndarray  # movie indices of the site's popularity list
    # public facts of the catalog that scenarios use
    popularity: np.ndarray  # per movie index
    genres: np.ndarray  # (n_movies, n_genres) bool, columns in catalog.GENRES order
    released: np.ndarray  # release date per movie index, days since 1970-01-01

    @classmethod
    def build(cls, world: World, truth: Truth, behaviour: Behaviour | None = None) -> History:
        audience = Audience.build(truth, world.runtime, world.popularity, behaviour=behaviour)
        weights = np.asarray(truth.activity, dtype=np.float64)
        cdf = np.cumsum(weights / weights.sum())
        cdf[-1] = 1.0
        popularity = np.asarray(world.popularity, dtype=np.float64)
        dates = world.movies.column("release_date").cast(pa.date32()).combine_chunks()
        released = dates.view(pa.int32()).to_numpy(zero_copy_only=False)
        return cls(
            audience, world.movie_ids, cdf, site_list(popularity), popularity, world.movie_genres, released
        )

    @property
    def n_users(self) -> int:
        return len(self.activity_cdf)

    def draw_users(self, rng: np.random.Generator, count: int) -> np.ndarray:
        """``count`` user ids, each drawn with probability proportional to activity."""
        return np.searchsorted(self.activity_cdf, rng.random(count)) + 1


def site_list(popularity: np.ndarray, k: int = 20) -> np.ndarray:
    """The site's own recommendations: the ``k`` most popular movies (ties by index)."""
    return np.argsort(-np.asarray(popularity), kind="stable")[:k]


@dataclass(frozen=True, slots=True)
class Scripted:
    """One session decided in full: who, when, which movie, how long, the rating, and its delays."""

    moment: datetime
    user_id: int
    movie: int
    minutes: int
    rating: int | None
    latency_ms: int  # of the site's recommendation request
    lead_ms: int  # until the first minute streams
    rate_delay_ms: int  # after the last minute, until the rating
