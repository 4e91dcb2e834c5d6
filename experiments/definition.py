"""An experiment's definition (TOML), read and checked; pure.

    name = "als-vs-popularity"
    description = "..."
    primary_metric = "list_minutes_per_answer"    # one of experiments.analysis.METRICS
    guardrail_metrics = ["minutes_per_answer"]     # must not get significantly worse
    alpha = 0.05
    power = 0.8
    minimum_detectable_effect = 3.0                # absolute, in the primary metric's unit (minutes)
    planned_days = 7                               # the horizon at the latest
    users_per_variant = 0                          # 0: what the power analysis asks for
    auto_decide = false                            # true: the experiments DAG promotes or rolls back
    baseline = { mean = 40, sd = 35 }              # optional prior when the lake has no baseline yet

    [[variants]]
    name = "control"                               # the first variant is the control
    serving = "current"                            # a serving id, "current" or "latest:<candidate>"
                                                   # (resolved and pinned when it starts)
    share = 0.5

    [[variants]]
    name = "treatment"
    serving = "20261130T120000Z-als_r16_demo"
    share = 0.5

A serving id names a serving file (``recs-<id>.sqlite``): a model version or ``<version>-<candidate>``.
"""

from __future__ import annotations

import math
import re
import tomllib
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from experiments.analysis import METRICS

DEFINITIONS_DIR = Path(__file__).resolve().parent / "definitions"
CURRENT = "current"
LATEST = "latest:"  # "latest:<candidate>": the newest serving file of that candidate, at start
_NAME_RE = re.compile(r"[a-z0-9][a-z0-9_.-]{0,79}")
_SERVING_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,119}")
_SHARE_TOLERANCE = 1e-6


class DefinitionError(ValueError):
    """An experiment definition that cannot be run; the message says what to fix."""


@dataclass(frozen=True)
class VariantSpec:
    name: str
    serving: str  # a serving id, or CURRENT
    share: float


@dataclass(frozen=True)
class Definition:
    name: str
    variants: tuple[VariantSpec, ...]
    primary_metric: str = "list_minutes_per_answer"
    guardrail_metrics: tuple[str, ...] = ("minutes_per_answer",)
    alpha: float = 0.05
    power: float = 0.8
    minimum_detectable_effect: float = 3.0
    planned_days: float = 7.0
    users_per_variant: int = 0
    auto_decide: bool = False
    baseline: dict[str, float] = field(default_factory=dict)
    salt: str = ""
    description: str = ""

    @property
    def control(self) -> VariantSpec:
        return self.variants[0]

    @property
    def shares(self) -> dict[str, float]:
        return {v.name: v.share for v in self.variants}

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def with_serving(self, overrides: dict[str, str]) -> Definition:
        """The definition with some variants' serving ids replaced (``--serving treatment=ID``)."""
        unknown = set(overrides) - {v.name for v in self.variants}
        if unknown:
            raise DefinitionError(f"no variant {sorted(unknown)} in {self.name!r}")
        variants = tuple(replace(v, serving=overrides.get(v.name, v.serving)) for v in self.variants)
        return check(replace(self, variants=variants))


def _number(raw: dict[str, Any], key: str, default: float) -> float:
    value = raw.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise DefinitionError(f"{key!r} must be a number, not {value!r}")
    return float(value)


def parse(text: str, source: str = "definition") -> Definition:
    """A definition from TOML text; DefinitionError says what is wrong."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise DefinitionError(f"{source}: not TOML: {exc}") from None
    known = {f for f in Definition.__dataclass_fields__}
    unknown = set(raw) - known
    if unknown:
        raise DefinitionError(f"{source}: unknown keys {sorted(unknown)} (known: {sorted(known)})")
    variants = raw.get("variants")
    if not isinstance(variants, list) or not variants:
        raise DefinitionError(f"{source}: needs [[variants]] with name, serving and share")
    specs = []
    for number, entry in enumerate(variants):
        if not isinstance(entry, dict) or set(entry) != {"name", "serving", "share"}:
            raise DefinitionError(f"{source}: variant {number} needs exactly name, serving and share")
        specs.append(VariantSpec(str(entry["name"]), str(entry["serving"]), _number(entry, "share", 0)))
    guardrails = raw.get("guardrail_metrics", list(Definition.guardrail_metrics))
    if not isinstance(guardrails, list):
        raise DefinitionError(f"{source}: 'guardrail_metrics' must be a list of metric names")
    baseline = raw.get("baseline", {})
    if not isinstance(baseline, dict) or not all(
        isinstance(v, int | float) and not isinstance(v, bool) for v in baseline.values()
    ):
        raise DefinitionError(f"{source}: 'baseline' must be a table of numbers (mean, sd)")
    users = raw.get("users_per_variant", 0)
    if isinstance(users, bool) or not isinstance(users, int) or users < 0:
        raise DefinitionError(f"{source}: 'users_per_variant' must be a whole number >= 0")
    definition = Definition(
        name=str(raw.get("name", "")),
        variants=tuple(specs),
        primary_metric=str(raw.get("primary_metric", Definition.primary_metric)),
        guardrail_metrics=tuple(str(m) for m in guardrails),
        alpha=_number(raw, "alpha", Definition.alpha),
        power=_number(raw, "power", Definition.power),
        minimum_detectable_effect=_number(
            raw, "minimum_detectable_effect", Definition.minimum_detectable_effect
        ),
        planned_days=_number(raw, "planned_days", Definition.planned_days),
        users_per_variant=users,
        auto_decide=bool(raw.get("auto_decide", False)),
        baseline={str(k): float(v) for k, v in baseline.items()},
        salt=str(raw.get("salt", "")),
        description=str(raw.get("description", "")),
    )
    return check(definition, source)


def check(definition: Definition, source: str = "definition") -> Definition:
    """``definition`` if it can be run; DefinitionError otherwise."""
    problems = []
    if not _NAME_RE.fullmatch(definition.name):
        problems.append(f"name {definition.name!r} must be lowercase letters, digits, '-', '_', '.'")
    names = [v.name for v in definition.variants]
    if len(definition.variants) < 2:
        problems.append("needs at least two variants (the first is the control)")
    if len(set(names)) != len(names):
        problems.append(f"variant names repeat: {names}")
    for v in definition.variants:
        if not _NAME_RE.fullmatch(v.name):
            problems.append(f"variant name {v.name!r} must be lowercase letters, digits, '-', '_', '.'")
        named = v.serving.removeprefix(LATEST)
        if v.serving != CURRENT and not _SERVING_RE.fullmatch(named):
            problems.append(f"variant {v.name!r}: serving {v.serving!r} is not a serving id or 'current'")
        if not 0 < v.share < 1:
            problems.append(f"variant {v.name!r}: share {v.share:g} must be in (0, 1)")
    total = sum(v.share for v in definition.variants)
    if abs(total - 1) > _SHARE_TOLERANCE:
        problems.append(f"shares sum to {total:g}, not 1")
    servings = [v.serving for v in definition.variants]
    if len(set(servings)) != len(servings):
        problems.append(f"two variants serve the same model: {servings}")
    for metric in (definition.primary_metric, *definition.guardrail_metrics):
        if metric not in METRICS:
            problems.append(f"unknown metric {metric!r} (known: {', '.join(METRICS)})")
    if not 0 < definition.alpha < 0.5:
        problems.append(f"alpha {definition.alpha:g} must be in (0, 0.5)")
    if not 0.5 <= definition.power < 1:
        problems.append(f"power {definition.power:g} must be in [0.5, 1)")
    if definition.minimum_detectable_effect <= 0:
        problems.append("minimum_detectable_effect must be > 0 (absolute, in the primary metric's unit)")
    if definition.planned_days <= 0:
        problems.append("planned_days must be > 0")
    if definition.baseline and not {"mean"} <= set(definition.baseline) <= {"mean", "sd"}:
        problems.append("baseline takes mean (and sd for a mean metric)")
    if problems:
        raise DefinitionError(f"{source}: " + "; ".join(problems))
    return definition


def load(reference: str) -> Definition:
    """A definition from a file path, or by name from the repository's ``experiments/definitions/``."""
    path = Path(reference)
    if not path.exists() and not reference.endswith(".toml") and "/" not in reference:
        path = DEFINITIONS_DIR / f"{reference}.toml"
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in DEFINITIONS_DIR.glob("*.toml")))
        raise DefinitionError(f"no experiment definition {reference!r} (a file, or one of: {known})")
    return parse(path.read_text(), str(path))


def from_dict(data: dict[str, Any]) -> Definition:
    """The inverse of ``as_dict`` (a stored experiment's definition)."""
    variants = tuple(VariantSpec(**v) for v in data["variants"])
    return check(
        Definition(**(data | {"variants": variants, "guardrail_metrics": tuple(data["guardrail_metrics"])}))
    )
