"""The director: plays a run's scenarios against the site, in simulated (backfill) or wall (live) time.

Both modes ask it the same questions, so a scenario means the same thing in each:

- ``stage(moment)``: the site as viewers see it then (a ``History`` whose
  audience carries the taste-drift bonus and hides unreleased movies, whose
  site list leaves them out) and the follow knob;
- ``scripted(begin, end)``: sessions the scenarios add in that window (the
  rating-spam ring), decided in full;
- ``damage(moment, user, line)``: a line on its way out, returned with the
  injected lines that follow it (malformed) or rewritten (format drift);
- ``advance(moment)``: scenarios that switched on or off since the last call,
  so the mode can do the I/O some need (catalog outage, scraper in live mode).

Everything is recorded in the ground-truth log through the ``record`` callable
(see simulator.injection_log). The director draws from its own random stream, so
scenarios that only add or alter lines leave the real sessions unchanged.
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

import numpy as np

from movierec.movielog import Reason, format_time
from simulator.catalog import GENRE_INDEX
from simulator.damage import DAMAGES, LINE_KINDS, NEEDS, Damage, drift, fits, line_kind
from simulator.history import History, Line, Scripted, site_list
from simulator.injection_log import Record, line_fields
from simulator.scenarios import Scenario, ScenarioError, Scenarios
from simulator.viewers import Audience

SCENARIO_STREAM = 4  # SeedSequence spawn key, apart from the catalog's (1, 2) and the truth's (3)
MAX_WAITING = 100  # malformed injections waiting for a line they can break (e.g. a rate line)
_RAMP_STEPS = 20  # a ramping taste drift changes in 5% steps, so stages can be cached
# which waiting injections a line of each kind can serve
_SERVED_BY = {kind: tuple(needs for needs in NEEDS if fits(needs, kind)) for kind in LINE_KINDS}


@dataclass
class _LineState:
    """A malformed or format_drift scenario: lines left until its next injection."""

    index: int
    scenario: Scenario
    countdown: int = 0


def scenario_rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(SCENARIO_STREAM,)))


def catalog_faults(scenario: Scenario, on: bool) -> dict[str, Any]:
    """The ``POST /_faults`` body that switches a catalog_outage scenario on or off."""
    if scenario.strength >= 1:
        if not on:
            return {"outage_start": None, "outage_end": None}
        end = None if scenario.end is None else scenario.end.timestamp()
        return {"outage_start": scenario.start.timestamp(), "outage_end": end}
    if not on:
        return {"error_probability": 0.0}
    return {"error_probability": scenario.strength, "error_burst_seconds": 0.0, "error_status": 503}


class Director:
    """The scenarios of one run, their state and their counts (see the module docstring)."""

    def __init__(
        self,
        scenarios: Scenarios | Iterable[Scenario],
        history: History,
        *,
        rng: np.random.Generator,
        record: Record,
        follow: float,
        origin: datetime,
        run_id: str,
        mode: str,
    ) -> None:
        self.scenarios = tuple(scenarios)
        self.history = history
        self.rng = rng
        self.follow = follow
        self.origin = origin
        self.run_id = run_id
        self._record = record
        n_movies = len(history.slugs)
        self._index_of = {str(slug): i for i, slug in enumerate(history.slugs)}

        self._tastes = [
            (s, history.genres[:, GENRE_INDEX[s.options["genre"]]].astype(np.float64) * s.strength)
            for s in self.scenarios
            if s.kind == "taste_drift"
        ]
        self._releases = [(s, self._newest(s)) for s in self.scenarios if s.kind == "new_releases"]
        self.held = np.zeros(n_movies, bool)  # every movie some new_releases scenario holds back
        for _, mask in self._releases:
            self.held |= mask
        self._follows = [s for s in self.scenarios if s.kind == "follow"]
        self.rings: list[tuple[Scenario, np.ndarray, int]] = []  # (scenario, account ids, target movie)
        next_id = history.n_users + 1
        for s in self.scenarios:
            if s.kind == "rating_spam":
                first = s.options["first_id"] or next_id
                ring = np.arange(first, first + s.options["accounts"], dtype=np.int64)
                next_id = max(next_id, int(ring[-1]) + 1)
                self.rings.append((s, ring, self._target(s)))
        self._line_states = [
            _LineState(i, s) for i, s in enumerate(self.scenarios) if s.kind in ("malformed", "format_drift")
        ]
        # malformed injections waiting for a line they can break, one queue per need: (sequence, ...)
        self._waiting: dict[str, deque[tuple[int, _LineState, Damage]]] = {needs: deque() for needs in NEEDS}
        self._waiting_count = 0
        self._sequence = 0
        self._phase = ["pending"] * len(self.scenarios)
        self._stages: dict[tuple[Any, ...], tuple[History, float]] = {}
        self.lines = 0  # real lines through damage()
        self.written = 0  # lines out of damage(): real, rewritten and injected
        self.injected: dict[str, Counter[str]] = {"malformed": Counter(), "format_drift": Counter()}
        self.spam_sessions = 0
        self.dropped = 0  # malformed injections that found no line to break
        self._emit(
            "run",
            mode=mode,
            origin=format_time(origin),
            follow=follow,
            scenarios=[self._describe(i, s) for i, s in enumerate(self.scenarios)],
        )

    # --- set-up -----------------------------------------------------------------

    def _newest(self, scenario: Scenario) -> np.ndarray:
        """The movies a new_releases scenario holds back: the newest by release date (ties by index)."""
        n_movies = len(self.history.slugs)
        count = scenario.options["count"] or round(scenario.strength * n_movies)
        count = min(n_movies - 1, max(1 if scenario.strength > 0 else 0, count))  # one must stay out
        order = np.lexsort((np.arange(n_movies), -self.history.released.astype(np.int64)))
        mask = np.zeros(n_movies, bool)
        mask[order[:count]] = True
        return mask

    def _target(self, scenario: Scenario) -> int:
        slug = scenario.options["movie"]
        if slug:
            if slug not in self._index_of:
                raise ScenarioError(f"rating_spam: unknown movie {slug!r}")
            return self._index_of[slug]
        # default: the least popular movie that is out, the kind a ring would push
        out = np.flatnonzero(~self.held)
        return int(out[np.argmin(self.history.popularity[out])])

    def _describe(self, index: int, s: Scenario) -> dict[str, Any]:
        view = {"index": index, **s.to_json()}
        if s.kind == "new_releases":
            mask = next(m for r, m in self._releases if r is s)
            view["held"] = [str(slug) for slug in self.history.slugs[mask]]
        elif s.kind == "rating_spam":
            _, ring, target = next(r for r in self.rings if r[0] is s)
            view["accounts"] = [int(ring[0]), int(ring[-1])]
            view["target"] = str(self.history.slugs[target])
        elif s.kind == "taste_drift":
            view["genre_movies"] = int(self.history.genres[:, GENRE_INDEX[s.options["genre"]]].sum())
        return view

    def _emit(self, event: str, **fields: Any) -> None:
        self._record({"event": event, "run_id": self.run_id, **fields})

    def note(self, event: str, **fields: Any) -> None:
        """Record what the mode did for a scenario (e.g. the catalog API's answer to a fault switch)."""
        self._emit(event, **fields)

    # --- time ---------------------------------------------------------------------

    def advance(self, moment: datetime) -> list[tuple[int, Scenario, str]]:
        """(index, scenario, "start" or "end") of the switches by ``moment``; each is recorded once."""
        changes = []
        for i, s in enumerate(self.scenarios):
            if self._phase[i] == "pending" and s.start <= moment:
                self._phase[i] = "on"
                self._emit("start", index=i, kind=s.kind, time=format_time(max(s.start, self.origin)))
                changes.append((i, s, "start"))
            # a release stays released; the others switch off at their end
            if self._phase[i] == "on" and s.end is not None and s.end <= moment and s.kind != "new_releases":
                self._phase[i] = "off"
                self._emit("end", index=i, kind=s.kind, time=format_time(s.end))
                changes.append((i, s, "end"))
        return changes

    def stage(self, moment: datetime) -> tuple[History, float]:
        """The site as viewers see it at ``moment``, and the follow knob then."""
        key = self._key(moment)
        staged = self._stages.get(key)
        if staged is None:
            staged = self._stages[key] = self._build(key)
        return staged

    def _key(self, moment: datetime) -> tuple[Any, ...]:
        levels = tuple(self._level(s, moment) for s, _ in self._tastes)
        released = tuple(s.start <= moment for s, _ in self._releases)
        follow = self.follow
        for s in self._follows:  # the last one listed wins where they overlap
            if s.active(moment):
                follow = s.strength
        return levels, released, follow

    @staticmethod
    def _level(s: Scenario, moment: datetime) -> float:
        if not s.active(moment):
            return 0.0
        ramp = s.options["ramp_hours"]
        if ramp <= 0:
            return 1.0
        grown = (moment - s.start).total_seconds() / (3600 * ramp)
        return min(1.0, np.floor(grown * _RAMP_STEPS) / _RAMP_STEPS)

    def _build(self, key: tuple[Any, ...]) -> tuple[History, float]:
        levels, released, follow = key
        if not any(levels) and not self._releases:  # no drift in force: the site as it is
            return self.history, follow
        base = self.history
        bonus = None
        if any(levels):
            bonus = sum(level * vector for (_, vector), level in zip(self._tastes, levels, strict=True))
        popularity, available = base.popularity, None
        if self._releases:
            held = np.zeros(len(base.slugs), bool)
            boost = np.ones(len(base.slugs))
            for (s, mask), out in zip(self._releases, released, strict=True):
                if out:
                    boost[mask] = np.maximum(boost[mask], s.options["boost"])
                else:
                    held |= mask
            available = ~held
            popularity = popularity * boost
        audience = Audience.build(
            base.audience.truth,
            base.audience.runtimes,
            popularity,
            bonus=bonus,
            available=available,
            behaviour=base.audience.behaviour,
        )
        shown = popularity if available is None else np.where(available, popularity, -1.0)
        return replace(base, audience=audience, baseline=site_list(shown)), follow

    def scripted(self, begin: datetime, end: datetime) -> list[Scripted]:
        """Spam-ring sessions starting in [begin, end), in time order."""
        sessions = []
        for s, ring, target in self.rings:
            low = max(begin, s.start)
            high = end if s.end is None else min(end, s.end)
            if high <= low:
                continue
            span_ms = int((high - low).total_seconds() * 1000)
            count = int(self.rng.poisson(len(ring) * s.strength * span_ms / 3_600_000))
            for offset in np.sort(self.rng.integers(0, max(span_ms, 1), count)):
                sessions.append(
                    Scripted(
                        low + timedelta(milliseconds=int(offset)),
                        int(ring[self.rng.integers(len(ring))]),
                        target,
                        int(self.rng.integers(1, s.options["minutes"] + 1)),
                        5,
                        int(self.rng.integers(15, 120)),
                        int(self.rng.integers(5_000, 90_000)),
                        int(self.rng.integers(1_000, 120_000)),
                    )
                )
        sessions.sort(key=lambda scripted: scripted.moment)
        self.spam_sessions += len(sessions)
        return sessions

    # --- lines ----------------------------------------------------------------------

    def damage(self, moment: datetime, user_id: int, line: str) -> list[Line]:
        """``line`` as written (format drift may rewrite it), followed by any malformed line made from it."""
        self.lines += 1
        out: list[Line] = [(moment, user_id, line)]
        if not self._line_states:
            self.written += 1
            return out
        for state in self._line_states:
            s = state.scenario
            if s.strength <= 0 or not s.active(moment):
                continue
            if state.countdown <= 0:  # first active line: lines until the first injection
                state.countdown = int(self.rng.geometric(s.strength))
            state.countdown -= 1
            if state.countdown > 0:
                continue
            state.countdown = int(self.rng.geometric(s.strength))
            if s.kind == "format_drift":
                if out[0][2] is line:  # one rewrite per line
                    rewritten, reason = drift(self.rng, line, s.options["form"], s.options["field"])
                    out[0] = (moment, user_id, rewritten)
                    self._inject(state, reason, moment, user_id, rewritten, line, form=s.options["form"])
            else:
                self._wait(state, DAMAGES[int(self.rng.integers(len(DAMAGES)))])
        if self._waiting_count:
            self._break(moment, user_id, line, out)
        self.written += len(out)
        return out

    def _wait(self, state: _LineState, damage: Damage) -> None:
        self._sequence += 1
        self._waiting[damage.needs].append((self._sequence, state, damage))
        self._waiting_count += 1
        if self._waiting_count > MAX_WAITING:  # e.g. no rate line for ages: forget the oldest
            oldest = min((q for q in self._waiting.values() if q), key=lambda q: q[0][0])
            oldest.popleft()
            self._waiting_count -= 1
            self.dropped += 1

    def _break(self, moment: datetime, user_id: int, line: str, out: list[Line]) -> None:
        """Serve the oldest waiting malformed injection that can break this line."""
        best: deque[tuple[int, _LineState, Damage]] | None = None
        for needs in _SERVED_BY[line_kind(line)]:
            queue = self._waiting[needs]
            while queue and not queue[0][1].scenario.active(moment):  # its scenario has ended
                queue.popleft()
                self._waiting_count -= 1
            if queue and (best is None or queue[0][0] < best[0][0]):
                best = queue
        if best is None:
            return
        _, state, damage = best.popleft()
        self._waiting_count -= 1
        broken = damage.build(self.rng, line)
        out.append((moment, user_id, broken))
        self._inject(state, damage.reason, moment, user_id, broken, line)

    def _inject(
        self,
        state: _LineState,
        reason: Reason,
        moment: datetime,
        user_id: int,
        line: str | bytes,
        source: str,
        **extra: Any,
    ) -> None:
        kind = state.scenario.kind
        self.injected[kind][reason.value] += 1
        self._emit(
            "inject",
            index=state.index,
            scenario=kind,
            time=format_time(moment),
            user_id=user_id,
            reason=reason.value,
            **extra,
            **line_fields(line),
            source=source,
        )

    def finish(self, moment: datetime, counts: dict[str, int] | None = None) -> None:
        """Record the run's summary (with the mode's own ``counts``, e.g. scraper requests)."""
        self._emit(
            "summary",
            time=format_time(moment),
            lines=self.lines,
            written=self.written,
            injected={kind: dict(sorted(c.items())) for kind, c in self.injected.items()},
            spam_sessions=self.spam_sessions,
            malformed_dropped=self.dropped,
            counts=dict(counts or {}),
        )

    @classmethod
    def for_run(
        cls,
        scenarios: Scenarios | Iterable[Scenario],
        history: History,
        *,
        seed: int,
        record: Record,
        follow: float,
        origin: datetime,
        mode: str,
    ) -> Director:
        """A director with the run's own scenario stream and a run id from mode, seed and origin."""
        run_id = f"{mode}-{seed}-{origin:%Y%m%dT%H%M%S}"
        return cls(
            scenarios,
            history,
            rng=scenario_rng(seed),
            record=record,
            follow=follow,
            origin=origin,
            run_id=run_id,
            mode=mode,
        )


def director_for_run(
    scenarios: Scenarios | None,
    history: History,
    *,
    seed: int,
    record: Record | None,
    follow: float,
    origin: datetime,
    mode: str,
) -> Director | None:
    """A run's director (``Director.for_run``), or None when no scenario plays.

    Without ``record`` what the scenarios did is not kept (a run with no ground-truth log).
    """
    if not scenarios:
        return None
    return Director.for_run(
        scenarios,
        history,
        seed=seed,
        record=record or (lambda _entry: None),
        follow=follow,
        origin=origin,
        mode=mode,
    )
