"""A/B experiments: the config, the deterministic assignment of users, and following the config file.

The config (``settings.experiment_path``) is JSON::

    {"name": "rank-128", "salt": "2026-12",
     "variants": [{"name": "control", "model_version": "current", "share": 0.5},
                  {"name": "treatment", "model_version": "20261201T040000Z-als_r128", "share": 0.5}]}

A user's bucket is the first 8 bytes of sha256("<salt>:<user_id>") read as a
fraction in [0, 1); variants own consecutive ranges of buckets in config order.
So the same user lands in the same variant in every worker and after restarts,
and a new salt reshuffles everybody. ``"model_version": "current"`` follows the
``current`` link; any other value is a serving id (``movierec.serving_file``: a version,
or a version and one of its candidates) answered from ``serving/recs-<serving id>.sqlite``.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from movierec import serving_file
from movierec.serving_file import InvalidServingFile
from server.store import Model, open_model

log = logging.getLogger(__name__)

FOLLOW_CURRENT = "current"
_SHARE_TOLERANCE = 1e-6


class ExperimentError(ValueError):
    """An experiment config that cannot be used; the message says why."""


@dataclass(frozen=True)
class Variant:
    name: str
    model_version: str
    share: float


@dataclass(frozen=True)
class Experiment:
    name: str
    salt: str
    variants: tuple[Variant, ...]

    def assign(self, user_id: int) -> Variant:
        point = bucket(self.salt, user_id)
        upper = 0.0
        for variant in self.variants:
            upper += variant.share
            if point < upper:
                return variant
        return self.variants[-1]  # shares sum to 1 up to rounding


def bucket(salt: str, user_id: int) -> float:
    """A stable point in [0, 1) for this user under this salt."""
    digest = hashlib.sha256(f"{salt}:{user_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def parse_experiment(text: str) -> Experiment:
    """The experiment in a config file's text; ExperimentError says what is wrong."""
    try:
        raw = json.loads(text)
    except ValueError as exc:
        raise ExperimentError(f"not JSON: {exc}") from None
    if not isinstance(raw, dict):
        raise ExperimentError("expected a JSON object with name, salt and variants")
    name, salt, variants = raw.get("name"), raw.get("salt"), raw.get("variants")
    if not isinstance(name, str) or not name:
        raise ExperimentError("'name' must be a non-empty string")
    if not isinstance(salt, str) or not salt:
        raise ExperimentError("'salt' must be a non-empty string")
    if not isinstance(variants, list) or not variants:
        raise ExperimentError("'variants' must be a non-empty list")
    parsed = tuple(_parse_variant(number, entry) for number, entry in enumerate(variants))
    names = [variant.name for variant in parsed]
    if len(set(names)) != len(names):
        raise ExperimentError(f"variant names repeat: {names}")
    total = sum(variant.share for variant in parsed)
    if abs(total - 1.0) > _SHARE_TOLERANCE:
        raise ExperimentError(f"variant shares sum to {total:g}, not 1")
    return Experiment(name, salt, parsed)


def _parse_variant(number: int, entry: object) -> Variant:
    if not isinstance(entry, dict):
        raise ExperimentError(f"variant {number}: expected an object with name, model_version, share")
    name, version, share = entry.get("name"), entry.get("model_version"), entry.get("share")
    if not isinstance(name, str) or not name:
        raise ExperimentError(f"variant {number}: 'name' must be a non-empty string")
    if version != FOLLOW_CURRENT:
        try:
            serving_file.split_serving_id(version)
        except ValueError as exc:
            raise ExperimentError(f"variant {name!r}: model_version {exc}, or 'current'") from None
    if isinstance(share, bool) or not isinstance(share, int | float) or not math.isfinite(share):
        raise ExperimentError(f"variant {name!r}: 'share' must be a number")
    if not 0 <= share <= 1:
        raise ExperimentError(f"variant {name!r}: share {share} is outside [0, 1]")
    return Variant(name, str(version), float(share))


@dataclass
class Running:
    """An experiment in force: its config and the open file of each variant (None = follow current)."""

    experiment: Experiment
    models: dict[str, Model | None]

    def close(self) -> None:
        for model in self.models.values():
            if model is not None:
                model.close()


def open_running(experiment: Experiment, serving_dir: Path) -> Running:
    """Open and check every variant's file; ExperimentError if one is missing or refused."""
    models: dict[str, Model | None] = {}
    try:
        for variant in experiment.variants:
            if variant.model_version == FOLLOW_CURRENT:
                models[variant.name] = None
                continue
            path = serving_file.file_path(serving_dir, variant.model_version)
            if not path.exists():
                raise ExperimentError(f"variant {variant.name!r}: {path.name} does not exist")
            try:
                models[variant.name] = open_model(path)
            except InvalidServingFile as exc:
                raise ExperimentError(f"variant {variant.name!r}: {exc}") from None
    except ExperimentError:
        Running(experiment, models).close()
        raise
    return Running(experiment, models)


class ExperimentConfig:
    """The experiment of this worker, re-read when its file changes; a bad config is refused and logged.

    A refused config leaves the previous one in force (or none at start): an
    experiment changes only to another valid one, or stops when the file is removed.
    """

    def __init__(self, path: Path, serving_dir: Path, on_refuse: Callable[[str], None]) -> None:
        self.path = path
        self.serving_dir = serving_dir
        self.running: Running | None = None
        self._on_refuse = on_refuse
        self._seen: tuple[int, int, int] | None = None
        self._retired: list[Running] = []

    def _identity(self) -> tuple[int, int, int] | None:
        try:
            info = os.stat(self.path)
        except OSError:
            return None
        return (info.st_ino, info.st_size, info.st_mtime_ns)

    def poll(self) -> None:
        identity = self._identity()
        if identity != self._seen:
            self._adopt(identity, self._load() if identity else None)

    async def poll_async(self) -> None:
        while self._retired:
            self._retired.pop().close()
        identity = self._identity()
        if identity != self._seen:
            self._adopt(identity, await asyncio.to_thread(self._load) if identity else None)

    def _load(self) -> Running | str:
        try:
            return open_running(parse_experiment(self.path.read_text()), self.serving_dir)
        except (ExperimentError, OSError, UnicodeDecodeError) as exc:
            return f"experiment config {self.path}: {exc}"

    def _adopt(self, identity: tuple[int, int, int] | None, loaded: Running | str | None) -> None:
        self._seen = identity
        if isinstance(loaded, str):
            kept = self.running.experiment.name if self.running else "none"
            log.error("refused %s (experiment in force: %s)", loaded, kept)
            self._on_refuse(loaded)
            return
        old, self.running = self.running, loaded
        if old is not None:
            self._retired.append(old)
        if loaded is None:
            if old is not None:
                log.info("experiment %r ended: everybody gets current", old.experiment.name)
            return
        shares = ", ".join(f"{v.name}={v.share:g} ({v.model_version})" for v in loaded.experiment.variants)
        log.info("experiment %r in force: %s", loaded.experiment.name, shares)

    def close(self) -> None:
        for running in [*self._retired, self.running]:
            if running is not None:
                running.close()
        self._retired.clear()
        self.running = None
