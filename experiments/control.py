"""Start, stop and look at experiments through the service's hook; their state on disk.

    $MOVIEREC_HOME/experiments/current.json        the service's hook (server/experiment.py reads it)
    $MOVIEREC_HOME/experiments/<name>/state.json   definition as started, serving ids, salt, times,
                                                   power analysis, and the verdict once decided

``start`` checks everything before the service sees anything: the definition, that no other
experiment is in force, that every variant's serving file exists and passes the registry's
validation and the service's own check (``server.experiment.open_running``), and it pins
``current`` to the version it points at now (a publish during the experiment must not change the
control). Then it writes the state and, last, the hook file, atomically. ``stop`` removes the hook
(everybody gets ``current`` again) and records the time.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from experiments.definition import CURRENT, LATEST, Definition, DefinitionError, from_dict
from movierec import serving_file
from movierec.files import write_text
from movierec.models import registry
from movierec.settings import Settings
from server.experiment import ExperimentError, open_running, parse_experiment

log = logging.getLogger(__name__)

STATE_FILE = "state.json"


class ExperimentStateError(RuntimeError):
    """The experiments on disk do not allow what was asked; the message says why."""


@dataclass
class State:
    definition: Definition
    serving: dict[str, str]  # variant -> serving id it answers from (current resolved and pinned)
    salt: str
    started_at: str  # UTC ISO 8601
    planned_end: str
    planned_users: dict[str, int] = field(default_factory=dict)
    power_analysis: dict[str, Any] = field(default_factory=dict)
    stopped_at: str | None = None
    verdict: dict[str, Any] | None = None

    @property
    def name(self) -> str:
        return self.definition.name

    @property
    def started(self) -> datetime:
        return datetime.fromisoformat(self.started_at)

    @property
    def stopped(self) -> datetime | None:
        return datetime.fromisoformat(self.stopped_at) if self.stopped_at else None

    def to_json(self) -> str:
        data = {
            "definition": self.definition.as_dict(),
            "serving": self.serving,
            "salt": self.salt,
            "started_at": self.started_at,
            "planned_end": self.planned_end,
            "planned_users": self.planned_users,
            "power_analysis": self.power_analysis,
            "stopped_at": self.stopped_at,
            "verdict": self.verdict,
        }
        return json.dumps(data, indent=1, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> State:
        data = json.loads(text)
        return cls(**(data | {"definition": from_dict(data["definition"])}))

    def hook(self) -> dict[str, Any]:
        """The service's experiment config (server/experiment.py)."""
        return {
            "name": self.name,
            "salt": self.salt,
            "variants": [
                {"name": v.name, "model_version": self.serving[v.name], "share": v.share}
                for v in self.definition.variants
            ],
        }


def experiments_dir(settings: Settings) -> Path:
    return settings.home / "experiments"


def state_path(settings: Settings, name: str) -> Path:
    return experiments_dir(settings) / name / STATE_FILE


def save(settings: Settings, state: State) -> None:
    write_text(state_path(settings, state.name), state.to_json())


def load_state(settings: Settings, name: str) -> State:
    path = state_path(settings, name)
    if not path.exists():
        known = ", ".join(sorted(p.parent.name for p in experiments_dir(settings).glob(f"*/{STATE_FILE}")))
        raise ExperimentStateError(f"no experiment {name!r} (known: {known or 'none'})")
    return State.from_json(path.read_text())


def all_states(settings: Settings) -> list[State]:
    paths = sorted(experiments_dir(settings).glob(f"*/{STATE_FILE}"))
    return sorted((State.from_json(p.read_text()) for p in paths), key=lambda s: s.started_at)


def in_force(settings: Settings) -> str | None:
    """The name in the service's hook file, or None when no experiment is configured."""
    path = settings.experiment_path
    if not path.exists():
        return None
    try:
        return str(json.loads(path.read_text())["name"])
    except (ValueError, KeyError, TypeError):
        return "(unreadable)"


def running(settings: Settings) -> State | None:
    """The state of the experiment in force (None: none, or one started by hand without a state)."""
    name = in_force(settings)
    if name is None or not state_path(settings, name).exists():
        return None
    return load_state(settings, name)


# --- resolving and checking the variants' files ------------------------------------------------


def resolve_serving(settings: Settings, serving: str) -> str:
    """A variant's serving id: ``current`` pinned to its version now, ``latest:<candidate>`` to the
    newest ``recs-<version>-<candidate>.sqlite``, anything else as it is."""
    if serving == CURRENT:
        version = registry.current_version(settings)
        if version is None:
            raise DefinitionError("a variant serves 'current' but nothing is current: publish a model first")
        return version
    if serving.startswith(LATEST):
        candidate = serving.removeprefix(LATEST)
        found = [
            serving_id
            for serving_id in serving_file.serving_ids(settings.serving_dir)
            if serving_file.split_serving_id(serving_id)[1] == candidate
        ]
        if not found:
            raise DefinitionError(
                f"no serving file of candidate {candidate!r} (recs-<version>-{candidate}.sqlite)"
            )
        return found[-1]
    return serving


def check_serving_files(settings: Settings, serving: dict[str, str], hook: dict[str, Any]) -> None:
    """Every file exists and validates (the registry's check, and the service's own open)."""
    for variant, serving_id in serving.items():
        try:
            path = serving_file.file_path(settings.serving_dir, serving_id)
        except ValueError as exc:
            raise DefinitionError(f"variant {variant!r}: {exc}") from None
        if not path.is_file():
            raise DefinitionError(f"variant {variant!r}: no serving file {path}")
        try:
            serving_file.validate(path, depth="full")
        except serving_file.InvalidServingFile as exc:
            raise DefinitionError(f"variant {variant!r}: {exc}") from None
    try:
        open_running(parse_experiment(json.dumps(hook)), settings.serving_dir).close()
    except ExperimentError as exc:
        raise DefinitionError(f"the service would refuse this experiment: {exc}") from None


# --- start, stop ------------------------------------------------------------------------------


def start(
    settings: Settings,
    definition: Definition,
    *,
    power_analysis: dict[str, Any] | None = None,
    now: datetime | None = None,
) -> State:
    """Check, record and switch the experiment on; the state written."""
    name = in_force(settings)
    if name is not None:
        raise ExperimentStateError(
            f"experiment {name!r} is in force: stop it first (movierec experiment stop)"
        )
    if state_path(settings, definition.name).exists():
        raise ExperimentStateError(f"an experiment named {definition.name!r} ran before: choose a new name")
    moment = (now or datetime.now(UTC)).astimezone(UTC)
    serving = {v.name: resolve_serving(settings, v.serving) for v in definition.variants}
    if len(set(serving.values())) != len(serving):
        raise DefinitionError(f"two variants would serve the same file: {serving}")
    analysis = power_analysis or {}
    state = State(
        definition=definition,
        serving=serving,
        salt=definition.salt or f"{definition.name}:{moment:%Y%m%dT%H%M%SZ}",
        started_at=moment.isoformat(timespec="seconds"),
        planned_end=(moment + timedelta(days=definition.planned_days)).isoformat(timespec="seconds"),
        planned_users=dict(analysis.get("planned_users", {})),
        power_analysis=analysis,
    )
    hook = state.hook()
    check_serving_files(settings, serving, hook)
    save(settings, state)
    write_text(settings.experiment_path, json.dumps(hook, indent=1))
    log.info("experiment %s started: %s", state.name, serving)
    return state


def stop(settings: Settings, name: str | None = None, *, now: datetime | None = None) -> State:
    """Switch the experiment off (everybody back on ``current``) and record when."""
    forced = in_force(settings)
    name = name or forced
    if name is None:
        raise ExperimentStateError("no experiment is in force")
    state = load_state(settings, name)
    if forced == name:
        settings.experiment_path.unlink()
    if state.stopped_at is None:
        state.stopped_at = (now or datetime.now(UTC)).astimezone(UTC).isoformat(timespec="seconds")
        save(settings, state)
    log.info("experiment %s stopped at %s", name, state.stopped_at)
    return state


def record_verdict(settings: Settings, state: State, verdict: dict[str, Any]) -> None:
    state.verdict = verdict
    save(settings, state)


# --- what the service says -------------------------------------------------------------------


def service_view(settings: Settings, timeout: float = 2.0) -> dict[str, Any]:
    """The experiment one service worker reports in force (``/healthz``), or why it cannot tell."""
    url = f"http://{settings.server_host}:{settings.server_port}/healthz"
    try:
        body = httpx.get(url, timeout=timeout).json()
    except (httpx.HTTPError, ValueError) as exc:
        return {"reachable": False, "url": url, "error": f"{type(exc).__name__}: {exc}"}
    return {"reachable": True, "url": url, "experiment": body.get("experiment"), "pid": body.get("pid")}
