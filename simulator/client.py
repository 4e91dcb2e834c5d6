"""The site's request client: how the site calls a recommendation service and logs it.

It asks ``GET <service>/recommend/<userid>`` with a hard 800 ms budget for the
whole exchange (connect, send, wait, read) and turns whatever happened into the
site's ``recommendation request`` line, through the movielog grammar:

- 200 with a body of comma-separated movie ids -> ``status 200, result: <ids>``;
- timeout or refused connection -> ``status 0, result: <the Java client's error>``;
- any other HTTP status -> that status, the body (first line) as the result;
- 200 with a body that is not an id list -> ``status 0`` with the reason, since
  the site cannot use it (it counts as a failed answer).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import urlsplit

import httpx

from movierec.movielog import RecoEvent, is_movie_id

TIMEOUT_SECONDS = 0.8
MAX_RESULT_CHARS = 300  # the site logs a bounded excerpt of odd answers


@dataclass(frozen=True, slots=True)
class Answer:
    """What one request produced, as the site sees it."""

    status: int
    items: tuple[str, ...]
    error: str | None
    latency_ms: int


def parse_body(body: str) -> tuple[str, ...] | None:
    """The ids of a recommendation body, as the site parses them; None if it is not an id list."""
    text = body.strip()
    if not text:
        return ()
    items = tuple(part.strip() for part in text.split(","))
    return items if all(is_movie_id(item) for item in items) else None


def one_line(text: str) -> str:
    """An excerpt that keeps the log line one line (the grammar forbids nothing else)."""
    flat = " ".join(text.split())
    return flat[:MAX_RESULT_CHARS]


def server_label(base_url: str) -> str:
    """``host:port`` of the service, as it appears in the log line."""
    parts = urlsplit(base_url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return f"{parts.hostname}:{port}"


async def ask(
    http: httpx.AsyncClient, base_url: str, user_id: int, timeout: float = TIMEOUT_SECONDS
) -> Answer:
    """One recommendation request with the site's hard timeout."""
    started = time.perf_counter()
    target = server_label(base_url)
    millis = round(timeout * 1000)
    timed_out = Answer(
        0, (), f"java.util.concurrent.TimeoutException: Request timeout to {target} after {millis} ms", millis
    )
    try:
        # httpx's own per-phase timeouts, never a cancellation from outside: cancelling requests
        # under pool contention leaks pool slots for good (encode/httpcore#1093, 1.0.9), which
        # turned every later request into a timeout on a loaded box
        response = await http.get(f"{base_url}/recommend/{user_id}", timeout=timeout)
    except httpx.TimeoutException:
        return timed_out
    except httpx.ConnectError as exc:
        return Answer(
            0,
            (),
            f"java.net.ConnectException: Connection refused: {target} ({one_line(str(exc))})",
            _ms(started),
        )
    except httpx.HTTPError as exc:
        return Answer(
            0, (), f"java.io.IOException: {one_line(type(exc).__name__ + ': ' + str(exc))}", _ms(started)
        )
    latency = _ms(started)
    if latency > millis:  # each phase in time, the whole exchange not: the site's budget is the whole
        return timed_out
    if response.status_code != 200:
        return Answer(response.status_code, (), one_line(response.text), latency)
    items = parse_body(response.text)
    if items is None:
        return Answer(0, (), f"invalid response body: {one_line(response.text)}", latency)
    return Answer(200, items, None, latency)


def _ms(started: float) -> int:
    return round((time.perf_counter() - started) * 1000)


def to_event(moment: datetime, user_id: int, base_url: str, answer: Answer) -> RecoEvent:
    """The site's log record of ``answer`` (format it with movielog.format_event)."""
    return RecoEvent(
        moment, user_id, server_label(base_url), answer.status, answer.items, answer.error, answer.latency_ms
    )
