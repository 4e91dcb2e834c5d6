"""The model candidates of a version: the kinds that exist, the set the retrain fits, and reading
back what was fitted (``base.py`` is the interface; one file per kind).

    candidates/<name>/train.json      {"kind", "name", "params", "cost"}: written by train
    candidates/<name>/before_t/       fitted on the interactions before T (what evaluate scores)
    candidates/<name>/all/            refitted on every interaction (what precompute serves)

Users without history (no interaction up to the window's end) are listed by the version's group
popularity whichever candidate serves the others: ``cold_start``.

To add a candidate: write a frozen dataclass subclass of ``Candidate`` in a file of its own
(its fields are its parameters), ``register`` it here, and add an instance to
``default_candidates``. Train, evaluate, precompute and simulator.truth_evaluation then handle it unchanged.
"""

from __future__ import annotations

import json
from typing import Any, TypeVar

from movierec.models import versions
from movierec.models.candidates.als import ALS
from movierec.models.candidates.als_features import ALSWithFeatures
from movierec.models.candidates.base import Candidate, Factors, Fitted, TrainingWindow
from movierec.models.candidates.group_popularity import GroupFactors, GroupPopularity
from movierec.models.candidates.popularity import Popularity
from movierec.settings import Settings

__all__ = [
    "ALS",
    "ALSWithFeatures",
    "Candidate",
    "Factors",
    "Fitted",
    "GroupFactors",
    "GroupPopularity",
    "Popularity",
    "TrainingWindow",
    "cold_start",
    "default_candidates",
    "from_entry",
    "load",
    "register",
    "trained",
]

KINDS: dict[str, type[Candidate]] = {}
SMALL_RANK = 16  # always compared: cheap, and the rank the side-feature model uses

C = TypeVar("C", bound=type[Candidate])


def register(kind: C) -> C:
    """Make a candidate kind known, so a ``train.json`` naming it can be read back."""
    KINDS[kind.kind] = kind
    return kind


for _kind in (Popularity, GroupPopularity, ALS, ALSWithFeatures):
    register(_kind)


def default_candidates(
    settings: Settings,
    *,
    rank: int | None = None,
    reg: float | None = None,
    alpha: float | None = None,
    iterations: int | None = None,
    first_model: bool = False,
) -> list[Candidate]:
    """What the retrain compares: popularity; popularity within the user's demographic group
    (also what users without history are served, ``cold_start``); ALS at rank 16 and at the given
    rank (64 when that is 16 too); rank 16 with demographic side features. Unset values: the
    settings'.

    ``first_model`` (nothing serves yet and no rank was asked for) leaves out the ALS at the other
    rank: it is the one expensive fit (rank 64 at full scale: 104 s of fits; train 186 s with it,
    72 s without, 2026-12-03), and a newcomer waits for the first model. The next retrain fits it."""
    with_other_rank = not (first_model and rank is None)
    rank = settings.als_rank if rank is None else rank
    other = rank if rank != SMALL_RANK else 64
    common: dict[str, Any] = {
        "reg": settings.als_reg if reg is None else reg,
        "alpha": settings.als_alpha if alpha is None else alpha,
        "iterations": settings.als_iterations if iterations is None else iterations,
        "seed": settings.seed,
        "blocks": settings.als_blocks,
    }
    return [
        Popularity(),
        GroupPopularity(),
        ALS(f"als_r{SMALL_RANK}", rank=SMALL_RANK, **common),
        *([ALS(f"als_r{other}", rank=other, **common)] if with_other_rank else []),
        ALSWithFeatures(f"als_r{SMALL_RANK}_demo", rank=SMALL_RANK, **common),
    ]


def from_entry(entry: dict[str, Any]) -> Candidate:
    """The candidate a ``train.json`` describes; a clear error for a kind nobody registered."""
    kind = KINDS.get(entry.get("kind", ""))
    if kind is None:
        raise ValueError(f"unknown candidate kind {entry.get('kind')!r} (known: {', '.join(sorted(KINDS))})")
    return kind(name=entry["name"], **entry["params"])  # type: ignore[call-arg]


def train_entry(candidate: Candidate, cost: dict[str, Any]) -> dict[str, Any]:
    return {"kind": candidate.kind, "name": candidate.name, "params": candidate.params, "cost": cost}


def trained(settings: Settings, version: str) -> dict[str, dict[str, Any]]:
    """Every candidate train fitted for ``version``, by name: its ``train.json`` entry."""
    folder = versions.model_dir(settings, version) / versions.CANDIDATES_DIR
    if not folder.is_dir():
        return {}
    return {
        path.parent.name: json.loads(path.read_text())
        for path in sorted(folder.glob(f"*/{versions.TRAIN_FILE}"))
    }


def load(settings: Settings, version: str, name: str, window: str) -> Factors:
    """Candidate ``name`` of ``version`` as fitted on ``window``, ready to score."""
    entry_path = versions.candidate_dir(settings, version, name) / versions.TRAIN_FILE
    if not entry_path.exists():
        known = ", ".join(trained(settings, version)) or "none"
        raise FileNotFoundError(f"version {version} has no trained candidate {name!r} (it has: {known})")
    saved = versions.fitted_dir(settings, version, name, window)
    if not saved.exists():
        raise FileNotFoundError(f"candidate {name} of {version} has no fitted model {saved}")
    return from_entry(json.loads(entry_path.read_text())).load(saved)


def cold_start_name(settings: Settings, version: str) -> str | None:
    """The candidate whose group lists users without history get: the version's (first, by name)
    group popularity; None if it has none (they are then scored like every other user)."""
    kinds = {name: entry.get("kind") for name, entry in trained(settings, version).items()}
    return next((name for name, kind in kinds.items() if kind == GroupPopularity.kind), None)


def cold_start(settings: Settings, version: str, window: str) -> GroupFactors | None:
    """``cold_start_name``'s candidate fitted on ``window``, or None."""
    name = cold_start_name(settings, version)
    if name is None:
        return None
    factors = load(settings, version, name, window)
    if not isinstance(factors, GroupFactors):
        raise TypeError(f"candidate {name} of {version} did not load as group factors")
    return factors
