"""A fixed-rate (open-loop) HTTP load client that keeps every request's outcome.

Request ``i`` is due at ``start + i / rate`` and its latency is counted from that
moment, not from when it was actually sent: a stall (a replica stopping, a load
balancer retrying) shows as latency instead of hiding as fewer requests sent
(coordinated omission). Every answer is kept (due time, status, latency, model
version). Status 0 means no HTTP answer at all (connection refused or reset, timeout).

Used by tests/test_containers.py to count failed requests during a rollout, at a low rate:
httpx costs ~3 ms of CPU per request here, and on a busy 2-core box the client falls behind
its own schedule, so bench/bench_rollout.py measures latency with wrk instead.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import httpx

TIMEOUT_SECONDS = 0.8  # the site's client gives up after 800 ms (DESIGN.md, "The movielog stream")


@dataclass(frozen=True)
class Answer:
    due: float  # seconds since the load started
    status: int  # HTTP status, 0 when there was no answer
    latency: float  # seconds from due to the end of the answer
    model_version: str
    error: str = ""


class FixedRateLoad:
    """``rate`` requests per second to ``url_of(i)`` in a background thread until ``stop()``."""

    def __init__(
        self,
        url_of: Callable[[int], str],
        rate: float,
        max_seconds: float = 600.0,
        connections: int = 64,
        timeout: float = TIMEOUT_SECONDS,
    ) -> None:
        self.url_of = url_of
        self.rate = rate
        self.max_seconds = max_seconds  # a bound: the load ends by itself even if nobody stops it
        self.connections = connections
        self.timeout = timeout
        self.answers: list[Answer] = []
        self.started = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)

    def start(self) -> FixedRateLoad:
        self._thread.start()
        while not self.started:  # the clock has started once the loop runs
            time.sleep(0.01)
        return self

    def now(self) -> float:
        """Seconds since the load started, on the clock of the answers' ``due``."""
        return time.monotonic() - self.started

    def stop(self) -> list[Answer]:
        self._stop.set()
        self._thread.join()
        return sorted(self.answers, key=lambda answer: answer.due)

    async def _run(self) -> None:
        limits = httpx.Limits(max_connections=self.connections, max_keepalive_connections=self.connections)
        async with httpx.AsyncClient(limits=limits, timeout=self.timeout) as client:
            self.started = time.monotonic()
            pending: set[asyncio.Task[None]] = set()
            i = 0
            while not self._stop.is_set() and i / self.rate < self.max_seconds:
                due = self.started + i / self.rate
                delay = due - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                task = asyncio.create_task(self._one(client, i, due))
                pending.add(task)
                task.add_done_callback(pending.discard)
                i += 1
            if pending:
                await asyncio.wait(pending)

    async def _one(self, client: httpx.AsyncClient, i: int, due: float) -> None:
        try:
            response = await client.get(self.url_of(i))
            answer = Answer(
                due - self.started,
                response.status_code,
                time.monotonic() - due,
                response.headers.get("x-model-version", ""),
            )
        except httpx.HTTPError as exc:
            answer = Answer(due - self.started, 0, time.monotonic() - due, "", f"{type(exc).__name__}: {exc}")
        self.answers.append(answer)
