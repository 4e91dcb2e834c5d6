"""Candidate kind ``als_features``: ALS on the interactions plus each user's side features.

The features are pseudo-items (``prepare.demographic_features``: age band, gender, occupation,
age band x gender), one row per user and feature with a fixed strength, for the users present
in the window: with one or two interactions per user they place a user among people of their
kind. They shape the user factors during the fit; the saved model keeps the movies' factors
only (``als.FittedALS``), so it is read and scored like any ALS model.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

from movierec.models.candidates.als import ALS
from movierec.models.candidates.base import TrainingWindow

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

DEMOGRAPHIC_FEATURES = "age band, gender, occupation, age band x gender"


def with_features(interactions: DataFrame, features: DataFrame) -> DataFrame:
    """``interactions`` (uidx, iidx, strength) plus the feature rows of the users present in it."""
    present = interactions.select("uidx").distinct()
    own = features.join(present, "uidx").select("uidx", "iidx", "strength")
    return interactions.select("uidx", "iidx", "strength").unionByName(own)


@dataclass(frozen=True)
class ALSWithFeatures(ALS):
    kind: ClassVar[str] = "als_features"
    demographic_features: str = DEMOGRAPHIC_FEATURES

    def training_rows(self, window: TrainingWindow) -> DataFrame:
        return with_features(window.interactions, window.user_features)
