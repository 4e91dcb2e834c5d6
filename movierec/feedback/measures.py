"""The feedback-loop measures of one period (a day, a retrain cycle): pure functions, no I/O.

- **concentration** of exposure (what we served) and of watches (what viewers started): the Gini
  coefficient of the per-movie counts over the whole catalog (movies never shown or watched count
  as zeros) and the share of the 20 most shown / watched movies (``top_share``);
- **list share**: of the viewing starts, the share that started from one of our lists;
- **genre diversity** per user: distinct genres among the movies a user watched in the period, and
  the Shannon entropy (bits) of their genre counts (a movie adds one to each of its genres),
  averaged over the users who watched anything.

Popularity reinforcement shows as concentration rising retrain after retrain; a filter bubble as
per-user diversity falling (docs/feedback-loops.md).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

TOP_K = 20


def catalog_counts(items: Iterable[str], catalog: Sequence[str]) -> np.ndarray:
    """How often each movie of ``catalog`` occurs in ``items`` (zeros included; others ignored)."""
    position = {movie: i for i, movie in enumerate(catalog)}
    counts = np.zeros(len(catalog), dtype=np.int64)
    for movie in items:
        index = position.get(movie)
        if index is not None:
            counts[index] += 1
    return counts


def gini(counts: np.ndarray | Sequence[float]) -> float:
    """The Gini coefficient of non-negative counts: 0 all equal, -> 1 all on one movie."""
    values = np.sort(np.asarray(counts, dtype=np.float64))
    if values.size == 0 or values.sum() <= 0:
        return 0.0
    if values[0] < 0:
        raise ValueError("gini: counts must be non-negative")
    n = values.size
    rank = np.arange(1, n + 1)
    return float(2.0 * np.sum(rank * values) / (n * values.sum()) - (n + 1) / n)


def top_share(counts: np.ndarray | Sequence[float], k: int = TOP_K) -> float:
    """The share of the total held by the ``k`` largest counts (0 when there is nothing)."""
    values = np.asarray(counts, dtype=np.float64)
    total = values.sum()
    if total <= 0:
        return 0.0
    return float(np.sort(values)[::-1][:k].sum() / total)


def list_share(starts: int, list_starts: int) -> float | None:
    """The share of viewing starts that came from our lists (None without starts)."""
    if list_starts < 0 or list_starts > starts:
        raise ValueError(f"list starts {list_starts} must be within 0..{starts}")
    return list_starts / starts if starts else None


def genre_diversity(watches: pd.DataFrame, genres: Mapping[str, Sequence[str]]) -> tuple[float, float, int]:
    """(mean distinct genres, mean genre entropy in bits, users) over the users of ``watches``
    (columns user_id, movie_id; one row per viewing). A movie without genres adds nothing."""
    if watches.empty:
        return 0.0, 0.0, 0
    pairs = watches[["user_id", "movie_id"]].copy()
    pairs["genre"] = pairs["movie_id"].map(lambda movie: list(genres.get(movie, ())))
    pairs = pairs.explode("genre").dropna(subset=["genre"])
    users = watches["user_id"].nunique()
    if pairs.empty:
        return 0.0, 0.0, users
    counts = pairs.groupby(["user_id", "genre"]).size()
    distinct = counts.groupby(level="user_id").size().reindex(watches["user_id"].unique(), fill_value=0)
    share = counts / counts.groupby(level="user_id").transform("sum")
    entropy = (-(share * np.log2(share))).groupby(level="user_id").sum()
    entropy = entropy.reindex(distinct.index, fill_value=0.0)
    return float(distinct.mean()), float(entropy.mean()), int(users)


@dataclass(frozen=True)
class PeriodMeasures:
    """The loop measures of one period (see the module docstring)."""

    exposure_gini: float
    exposure_top20: float
    watch_gini: float
    watch_top20: float
    list_share: float | None
    genres_per_user: float
    genre_entropy: float
    users: int  # users who watched anything
    slots: int  # list slots served
    watches: int  # viewings started

    def to_json(self) -> dict[str, float | int | None]:
        return asdict(self)


def period_measures(
    served_items: Iterable[str],
    watches: pd.DataFrame,
    catalog: Sequence[str],
    genres: Mapping[str, Sequence[str]],
    *,
    starts: int | None,
    list_starts: int | None,
) -> PeriodMeasures:
    """The measures of one period: every served slot's movie id (``served_items``), the viewings
    (``watches``: user_id, movie_id), the catalog's movie ids and genres, and the viewing starts
    with those that came from our lists (None: not known, no list share)."""
    exposure = catalog_counts(served_items, catalog)
    watched = catalog_counts(watches["movie_id"], catalog)
    distinct, entropy, users = genre_diversity(watches, genres)
    return PeriodMeasures(
        exposure_gini=gini(exposure),
        exposure_top20=top_share(exposure),
        watch_gini=gini(watched),
        watch_top20=top_share(watched),
        list_share=None if starts is None or list_starts is None else list_share(starts, list_starts),
        genres_per_user=distinct,
        genre_entropy=entropy,
        users=users,
        slots=int(exposure.sum()),
        watches=len(watches),
    )
