"""The site's catalog API (simulated): users and movies over HTTP, rate-limited, with switchable faults.

    GET /user/<userid>   -> {"user_id", "age", "occupation", "gender"}
    GET /movie/<movieid> -> the TMDB-like record of DESIGN.md, "Catalog API"

An unknown or malformed id answers 404 with ``{"message": ...}``. Each client
(its ``X-Client-Id`` header when it sends one, otherwise its remote address)
has a token bucket of ``burst`` requests refilled at ``rate`` per second; past
it the answer is 429 with ``Retry-After`` (whole seconds).

Simulator-only admin routes, not part of the real site's API (exempt from the
rate limit and the faults), so scenarios can switch faults at runtime:

    GET    /_faults            -> the current ``Faults`` as JSON
    POST   /_faults {...}      -> change the given fields, answer the new faults
    DELETE /_faults            -> every fault off

Faults, checked in this order: an outage window (every answer 503; or from the
``outage_after_requests``-th request after the faults were set, until switched off), the rate
limit, 5xx bursts (a request starts one with ``error_probability``; it lasts
``error_burst_seconds``), slow answers (``slow_probability`` of answers wait
``slow_seconds`` first).

Lookups are O(1): users from the world's numpy columns indexed by user id,
movies from a dict of slug -> JSON bytes serialised once at start-up.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import math
import random
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields, replace
from typing import Any
from urllib.parse import unquote

from sanic import Request, Sanic
from sanic.exceptions import SanicException
from sanic.response import HTTPResponse
from sanic.response import json as json_response

from movierec.movielog import is_movie_id, parse_user_id
from movierec.ratelimit import TokenBuckets
from movierec.settings import Settings
from simulator.catalog import World, load_world

log = logging.getLogger(__name__)

DEFAULT_RATE = 50.0  # requests per second per client
DEFAULT_BURST = 100
CLIENT_HEADER = "X-Client-Id"
_app_numbers = itertools.count(1)


@dataclass(frozen=True)
class Faults:
    """Injected misbehaviour of the catalog API (all off by default)."""

    error_probability: float = 0.0  # chance that a request starts a burst of 5xx answers
    error_burst_seconds: float = 0.0  # how long a burst lasts (0: only that answer fails)
    error_status: int = 500
    slow_probability: float = 0.0  # chance that an answer is delayed
    slow_seconds: float = 0.0
    outage_start: float | None = None  # unix time; in [start, end) every answer is 503
    outage_end: float | None = None  # None with a start: until switched off
    outage_after_requests: int | None = None  # this many answered, then 503 until switched off

    def updated(self, changes: Mapping[str, Any]) -> Faults:
        """A copy with ``changes`` applied; ValueError on an unknown field or a bad value."""
        known = {spec.name for spec in fields(self)}
        unknown = set(changes) - known
        if unknown:
            raise ValueError(f"unknown fault field(s): {', '.join(sorted(unknown))}")
        values = asdict(self) | dict(changes)
        for name in ("error_probability", "slow_probability"):
            if not _is_number(values[name]) or not 0 <= values[name] <= 1:
                raise ValueError(f"{name} must be a number in [0, 1]")
        for name in ("error_burst_seconds", "slow_seconds"):
            if not _is_number(values[name]) or values[name] < 0:
                raise ValueError(f"{name} must be a number >= 0")
        if not isinstance(values["error_status"], int) or not 500 <= values["error_status"] <= 599:
            raise ValueError("error_status must be an integer in 500..599")
        for name in ("outage_start", "outage_end"):
            if values[name] is not None and not _is_number(values[name]):
                raise ValueError(f"{name} must be a unix time or null")
        after = values["outage_after_requests"]
        if after is not None and (not isinstance(after, int) or isinstance(after, bool) or after < 0):
            raise ValueError("outage_after_requests must be an integer >= 0 or null")
        start, end = values["outage_start"], values["outage_end"]
        if start is not None and end is not None and end <= start:
            raise ValueError("outage_end must be after outage_start")
        return replace(self, **values)

    def in_outage(self, now: float) -> bool:
        if self.outage_start is None and self.outage_end is None:
            return False
        started = self.outage_start is None or now >= self.outage_start
        return started and (self.outage_end is None or now < self.outage_end)


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


class FaultState:
    """The faults in force and the state of a running 5xx burst."""

    def __init__(self, faults: Faults, seed: int) -> None:
        self.faults = faults
        self._rng = random.Random(seed)  # seeded, so a scenario run is repeatable
        self._burst_until = -math.inf
        self._answered = 0  # requests let through since the faults were set

    def set(self, faults: Faults) -> None:
        self.faults = faults
        self._burst_until = -math.inf
        self._answered = 0

    def in_outage(self, now: float) -> bool:
        """In an outage window, or past ``outage_after_requests``; else the request counts."""
        after = self.faults.outage_after_requests
        if self.faults.in_outage(now) or (after is not None and self._answered >= after):
            return True
        self._answered += 1
        return False

    def error(self, now: float) -> bool:
        if now < self._burst_until:
            return True
        if self.faults.error_probability and self._rng.random() < self.faults.error_probability:
            self._burst_until = now + self.faults.error_burst_seconds
            return True
        return False

    def delay(self) -> float:
        slow = self.faults.slow_probability and self._rng.random() < self.faults.slow_probability
        return self.faults.slow_seconds if slow else 0.0


def create_app(
    world: World,
    settings: Settings,
    faults: Faults | None = None,
    *,
    rate: float = DEFAULT_RATE,
    burst: int = DEFAULT_BURST,
) -> Sanic:
    """The catalog API over ``world`` (bind it to settings.api_host:api_port; see ``serve``)."""
    # env_prefix=None: Sanic must not read SANIC_* variables; settings is the one source of config.
    app = Sanic(f"movierec_catalog_{next(_app_numbers)}", env_prefix=None)
    app.config.FALLBACK_ERROR_FORMAT = "json"
    started = time.perf_counter()
    movie_json = {
        record["id"]: json.dumps(record, separators=(",", ":")).encode()
        for record in world.movies.to_pylist()
    }
    log.info(
        "catalog API: %d movie records serialised in %.1fs", len(movie_json), time.perf_counter() - started
    )
    buckets = TokenBuckets(rate, burst)
    state = FaultState(faults or Faults(), settings.seed)
    app.ctx.faults = state

    @app.on_request
    async def guard(request: Request) -> HTTPResponse | None:
        if request.path.startswith("/_faults"):
            return None
        current = state.faults
        now = time.time()
        if state.in_outage(now):
            headers = {}
            if current.outage_end is not None:
                headers["Retry-After"] = str(max(1, math.ceil(current.outage_end - now)))
            return _message(503, "catalog API unavailable (outage)", headers)
        wait = buckets.take(request.headers.get(CLIENT_HEADER) or request.ip or "unknown")
        if wait:
            return _message(429, "rate limit exceeded", {"Retry-After": str(max(1, math.ceil(wait)))})
        if state.error(now):
            return _message(current.error_status, "catalog API error (injected)")
        delay = state.delay()
        if delay:
            await asyncio.sleep(delay)
        return None

    @app.get("/user/<user_id:str>")
    async def user(request: Request, user_id: str) -> HTTPResponse:
        user_id = unquote(user_id)  # Sanic hands over the raw path segment
        number = parse_user_id(user_id)
        if number is None:
            return _message(404, f"malformed user id: {user_id[:80]}")
        record = world.user_record(number)
        if record is None:
            return _message(404, f"unknown user: {number}")
        return json_response(record)

    @app.get("/movie/<movie_id:str>")
    async def movie(request: Request, movie_id: str) -> HTTPResponse:
        movie_id = unquote(movie_id)  # '%2B' is a '+'; a literal '+' in a path stays one
        body = movie_json.get(movie_id)
        if body is None:
            reason = "unknown movie" if is_movie_id(movie_id) else "malformed movie id"
            return _message(404, f"{reason}: {movie_id[:80]}")
        return HTTPResponse(body, content_type="application/json")

    @app.get("/_faults")
    async def get_faults(request: Request) -> HTTPResponse:
        return json_response(asdict(state.faults))

    @app.post("/_faults")
    async def post_faults(request: Request) -> HTTPResponse:
        try:
            changes = json.loads(request.body or b"{}")
            if not isinstance(changes, dict):
                raise ValueError("expected a JSON object of Faults fields")
            state.set(state.faults.updated(changes))
        except ValueError as exc:  # json.JSONDecodeError is a ValueError
            return _message(400, str(exc))
        log.info("catalog API faults now %s", state.faults)
        return json_response(asdict(state.faults))

    @app.delete("/_faults")
    async def clear_faults(request: Request) -> HTTPResponse:
        state.set(Faults())
        log.info("catalog API faults cleared")
        return json_response(asdict(state.faults))

    @app.exception(SanicException)
    async def http_error(request: Request, exc: SanicException) -> HTTPResponse:
        # Unknown routes, wrong methods...: the same {"message"} shape as every other error.
        return _message(exc.status_code, str(exc) or "error")

    return app


def _message(status: int, text: str, headers: dict[str, str] | None = None) -> HTTPResponse:
    return json_response({"message": text}, status=status, headers=headers)


def serve(
    settings: Settings,
    faults: Faults | None = None,
    *,
    rate: float = DEFAULT_RATE,
    burst: int = DEFAULT_BURST,
) -> None:
    """Build or load the world and serve the catalog API on settings.api_host:api_port until stopped."""
    world = load_world(settings)
    app = create_app(world, settings, faults, rate=rate, burst=burst)
    log.info("catalog API on http://%s:%d", settings.api_host, settings.api_port)
    # One process: the world lives in memory once; Sanic handles SIGINT/SIGTERM.
    app.run(
        host=settings.api_host,
        port=settings.api_port,
        single_process=True,
        access_log=False,
        motd=False,
    )
