"""The model interface: what every candidate the retrain compares must do (in the style of
``implicit``'s ``RecommenderBase``: fit, save, load, then recommend by scoring).

A candidate is a small frozen dataclass: its fields are its parameters (saved in
``train.json`` and rebuilt from there), ``kind`` names its class. It

- ``fit``s with Spark on one ``TrainingWindow`` (interactions before T, to evaluate; all of
  them, to serve) and returns a ``Fitted`` model that ``save``s itself into a folder;
- ``load``s such a folder as ``Factors``: score(user, movie) = user row · movie row.

Every reader (evaluate, precompute, simulator.truth_evaluation) scores a candidate through
``Factors`` alone, so none of them knows which kinds exist. A candidate that is not a
factorisation (popularity, group popularity) is still one: popularity is rank 1, every user's
factor 1 and every movie's its count of recent viewers; group popularity is a one-hot of the
user's group against the movies' counts per group. Users ``Factors.users`` does not return get
the version's fallback list; users with no history get their group's list whichever candidate
serves the others (``candidates.cold_start``).
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

import numpy as np

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

NAME_RE = re.compile(r"[a-z0-9_]+")


@dataclass(frozen=True)
class TrainingWindow:
    """The data a candidate fits on: one window of the version's prepared interactions."""

    name: str  # "before_t" (fitted to be evaluated) or "all" (refitted to be served)
    interactions: DataFrame  # uidx int, iidx int, strength float, last_time timestamp_ntz
    until: datetime  # the window's end (exclusive)
    user_features: DataFrame  # uidx, iidx, strength: each user's demographic pseudo-items
    movie_count: int  # iidx below it are movies; the pseudo-items are numbered from it
    demographics: DataFrame  # uidx, age_band, gender, occupation: every user the catalog has


class Fitted(Protocol):
    """A fitted model, computed (the fit's cost is measured before ``save``)."""

    def save(self, target: Path) -> None:
        """Write the model into the folder ``target`` (created; replaced if it exists)."""


class Factors(ABC):
    """A saved model as a factorisation: score(user, movie) = user row · movie row, best first."""

    @abstractmethod
    def items(self) -> tuple[np.ndarray, np.ndarray]:
        """(iidx ascending, float32 matrix movies x rank): every movie the model can list.

        Ascending ids make ties break by the lower movie index everywhere (``topk``'s rule)."""

    @abstractmethod
    def users(self, uidx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(the users of ``uidx`` that have factors, float32 matrix users x rank)."""

    @abstractmethod
    def user_frame(self, spark: SparkSession, users: DataFrame) -> DataFrame:
        """Spark frame ``id int, features array<float>`` of every user with factors, out of
        ``users`` (``uidx``: the model folder's index); for scoring everyone on executors."""

    @property
    def rank(self) -> int:
        return int(self.items()[1].shape[1])

    @property
    @abstractmethod
    def stored_rows(self) -> int:
        """Factor rows kept on disk (users and movies): the size of the model, in rows of ``rank``."""


class Candidate(ABC):
    """One model the retrain fits, compares and can serve. Subclasses are frozen dataclasses with
    a ``name`` field and one field per parameter (JSON values), and set ``kind``."""

    kind: ClassVar[str]
    name: str

    def __post_init__(self) -> None:
        if not NAME_RE.fullmatch(self.name):
            raise ValueError(f"{self.name!r} is not a candidate name (lowercase letters, digits, _)")

    @property
    def params(self) -> dict[str, Any]:
        """The parameters, as saved in ``train.json`` (every dataclass field but the name)."""
        fields = asdict(self)  # type: ignore[call-overload]
        fields.pop("name")
        return fields

    @abstractmethod
    def fit(self, spark: SparkSession, window: TrainingWindow) -> Fitted:
        """Fit on ``window``; the returned model is computed (no lazy work left for ``save``)."""

    @abstractmethod
    def load(self, saved: Path) -> Factors:
        """What ``Fitted.save`` wrote into ``saved``, as factors to score with."""
