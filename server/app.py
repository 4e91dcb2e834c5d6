"""The Sanic app: ``GET /recommend/<userid>`` and ``/healthz``, on the public port.

``create_app(settings)`` builds one app; ``movierec serve`` (server/run.py) runs
it in several workers, each with its own open serving files, its own background
loop (swaps, experiment changes, provenance callbacks) and its own producer.

Answers (DESIGN.md, "The recommendation endpoint"):
- 200 text/plain: the stored line of the user, or the file's fallback line for an
  unknown user (header ``X-Fallback: 1``);
- 400 text/plain: a malformed id, one line saying why;
- 503 text/plain: no valid serving file at all (not caused by input), one line.
- 429 text/plain with ``Retry-After``: a client other than the site's over its rate limit
  (server.clients); counted in ``movierec_throttled_requests_total``, not recorded as served.
Every answer carries ``X-Request-Id`` (the provenance record's id) and, when a
model answered, ``X-Model-Version`` (and ``X-Variant`` while an experiment runs); every
provenance record names the client that asked.

``/metrics`` is not here: the main process serves it on the operator port (server.ops).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import math
import os
import sqlite3
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sanic import Request, Sanic
from sanic.exceptions import SanicException
from sanic.response import HTTPResponse
from sanic.response import json as json_response

from movierec.settings import Settings
from server.answer import TEXT, Answer, RequestIds, fixed_headers
from server.clients import ClientLimiter
from server.experiment import ExperimentConfig
from server.metrics import ServerMetrics
from server.provenance import AnswerTime, ServedRecorder, answer_record
from server.store import CurrentModel, Model
from server.userid import parse_segment

log = logging.getLogger(__name__)

POLL_SECONDS = 0.25  # how soon a worker notices a re-pointed `current` or a changed experiment
SHUTDOWN_FLUSH_SECONDS = 5.0
NO_VARIANT = "none"  # the metrics label when no experiment is in force
_app_numbers = itertools.count(1)


@dataclass
class Service:
    """What one worker serves from; built when the worker starts."""

    settings: Settings
    metrics: ServerMetrics
    current: CurrentModel
    experiment: ExperimentConfig
    recorder: ServedRecorder
    request_ids: RequestIds = field(default_factory=RequestIds)
    clock: AnswerTime = field(default_factory=AnswerTime)

    def choose(self, user_id: int) -> tuple[str | None, Model | None]:
        """(variant name or None, the model that answers this user)."""
        running = self.experiment.running
        if running is None:
            return None, self.current.model
        variant = running.experiment.assign(user_id)
        return variant.name, running.models[variant.name] or self.current.model

    def publish_model_info(self) -> None:
        """The model info gauge: 1 for each (version, variant) this worker serves now, 0 for the rest."""
        info = self.metrics.model_info
        served: dict[tuple[str, str], Model] = {}
        running = self.experiment.running
        if running is None:
            if self.current.model is not None:
                served[(self.current.model.version, NO_VARIANT)] = self.current.model
        else:
            for variant in running.experiment.variants:
                model = running.models[variant.name] or self.current.model
                if model is not None:
                    served[(model.version, variant.name)] = model
        for labels in list(info._metrics):  # previously served: 0, so the gauge shows only what is live
            if labels not in served:
                info.labels(*labels).set(0)
        for labels in served:
            info.labels(*labels).set(1)
        if served:
            oldest = min(datetime.fromisoformat(m.created_at) for m in served.values())
            if oldest.tzinfo is None:
                oldest = oldest.replace(tzinfo=UTC)
            self.metrics.model_created.set(oldest.timestamp())


def create_app(settings: Settings) -> Sanic:
    # env_prefix=None: Sanic must not read SANIC_* variables; settings is the one source of config.
    app = Sanic(f"movierec_server_{next(_app_numbers)}", env_prefix=None)
    app.config.FALLBACK_ERROR_FORMAT = "text"
    app.config.NOISY_EXCEPTIONS = False
    app.config.REQUEST_MAX_SIZE = 16_384  # nothing we serve takes a body
    app.config.PROXIES_COUNT = settings.server_proxies  # whose X-Forwarded-For names the client
    metrics = ServerMetrics()
    app.ctx.metrics = metrics  # this process's own registry, for tests without the operator port
    limiter = ClientLimiter.from_settings(settings)
    # No trusted proxy: no header can name the client, so skip Sanic's per-request header parsing.
    client = client_of if settings.server_proxies else peer_of

    @app.before_server_start
    async def open_files(app: Sanic) -> None:
        service = _start_service(settings, metrics)
        app.ctx.service = service
        app.add_task(_watch(service), name="movierec-watch")

    @app.after_server_stop
    async def close_files(app: Sanic) -> None:
        service: Service | None = getattr(app.ctx, "service", None)
        if service is None:
            return
        await asyncio.to_thread(service.recorder.close, SHUTDOWN_FLUSH_SECONDS)
        service.current.close()
        service.experiment.close()
        metrics.worker_exited()  # flushes this worker's last counts first

    def refused(client: str) -> HTTPResponse | None:
        """429 for a client over its rate limit, else None (checked in the handlers: no middleware
        runs per request, which costs more than the check itself)."""
        wait = limiter.wait(client)
        if not wait:
            return None
        metrics.throttled.inc()
        seconds = max(1, math.ceil(wait))
        body = f"too many requests from this client; retry after {seconds} s".encode()
        return HTTPResponse(body, status=429, headers={"Retry-After": str(seconds)}, content_type=TEXT)

    @app.get("/recommend/<segment:path>")
    async def recommend(request: Request, segment: str) -> HTTPResponse:
        asker = client(request)
        return refused(asker) or _answer(app.ctx.service, segment, asker)

    @app.get("/recommend")
    async def recommend_nobody(request: Request) -> HTTPResponse:
        asker = client(request)
        return refused(asker) or _answer(app.ctx.service, "", asker)

    @app.get("/healthz")
    async def healthz(request: Request) -> HTTPResponse:
        return _health(app.ctx.service)

    @app.exception(SanicException)
    async def http_error(request: Request, exc: SanicException) -> HTTPResponse:
        # Unknown routes, wrong methods, bad HTTP: one text line, like every other error here.
        return HTTPResponse(_one_line(str(exc) or "error"), status=exc.status_code, content_type=TEXT)

    return app


def _start_service(settings: Settings, metrics: ServerMetrics) -> Service:
    current = CurrentModel(
        settings.serving_dir,
        on_swap=lambda old, new: metrics.swaps.inc() if old is not None else None,
        on_refuse=lambda reason: metrics.refused.labels("serving_file").inc(),
    )
    experiment = ExperimentConfig(
        settings.experiment_path,
        settings.serving_dir,
        on_refuse=lambda reason: metrics.refused.labels("experiment").inc(),
    )
    recorder = ServedRecorder(
        settings,
        on_sent=metrics.provenance_sent.inc,
        on_dropped=lambda reason: metrics.provenance_dropped.labels(reason).inc(),
    )
    service = Service(settings, metrics, current, experiment, recorder)
    current.poll()  # before the first request: a worker starts serving its file at once
    experiment.poll()
    service.publish_model_info()
    log.info("worker %d serving %s", os.getpid(), current.serving if current.model else current.problem)
    return service


async def _watch(service: Service) -> None:
    """This worker's background loop: swap files, follow the experiment, count deliveries, flush metrics."""
    while True:
        await asyncio.sleep(POLL_SECONDS)
        try:
            before = (service.current.model, service.experiment.running)
            await service.current.poll_async()
            await service.experiment.poll_async()
            if (service.current.model, service.experiment.running) != before:
                service.publish_model_info()
            service.recorder.poll()
            service.metrics.flush()
        except Exception:  # the loop must outlive any one bad round
            log.exception("serving watch loop")


def client_of(request: Request) -> str:
    """The client's address: the peer, or what the trusted proxies say (Sanic's ``remote_addr``)."""
    return request.remote_addr or request.ip


def peer_of(request: Request) -> str:
    """The client's address when no proxy is trusted (``PROXIES_COUNT`` 0): the peer's."""
    return request.ip


def _answer(service: Service, segment: str, client: str) -> Answer:
    started = time.perf_counter()
    request_id = service.request_ids.next()
    user_id, reason = parse_segment(segment)
    variant: str | None = None
    model: Model | None = None
    version: str | None = None
    line: bytes | None = None
    fallback = False
    if user_id is None:
        status, body = 400, reason.encode()
    else:
        variant, model = service.choose(user_id)
        if model is None:
            status, body = 503, f"no model to answer from: {service.current.problem}".encode()
        else:
            version = model.version
            status, line, fallback = 200, *_lookup(service, model, user_id)
            body = line
    elapsed = time.perf_counter() - started
    service.metrics.answered(str(status), variant or NO_VARIANT, fallback, elapsed)
    now = time.time()
    record = answer_record(
        request_id,
        service.clock.format(now),
        user_id,
        variant,
        version,
        line,
        fallback,
        round(elapsed * 1000, 3),
        status,
        client,
        reason,
    )
    service.recorder.send(record, user_id, int(now * 1000))
    return Answer(body, status, request_id, fixed_headers(version, variant, fallback))


def _lookup(service: Service, model: Model, user_id: int) -> tuple[bytes, bool]:
    """(the response line, whether it is the fallback)."""
    try:
        line = model.lookup(user_id)
    except sqlite3.Error as exc:  # a damaged page the open-time check missed: degrade, do not fail
        log.error("lookup of user %d in %s failed: %s", user_id, model.path.name, exc)
        service.metrics.lookup_errors.inc()
        line = None
    return (model.fallback, True) if line is None else (line, False)


def _health(service: Service) -> HTTPResponse:
    model = service.current.model
    running = service.experiment.running
    body: dict[str, Any] = {"status": "ok" if model else "unavailable", "pid": os.getpid()}
    if model is None:
        body["reason"] = service.current.problem
    else:
        created = datetime.fromisoformat(model.created_at)
        if created.tzinfo is None:
            created = created.replace(tzinfo=UTC)
        body |= {
            "model_version": model.version,
            "created_at": model.created_at,
            "age_seconds": round((datetime.now(UTC) - created).total_seconds(), 1),
            "file": str(model.path),
            "users": model.row_count,
        }
    if running is not None:
        body["experiment"] = {
            "name": running.experiment.name,
            "variants": {
                v.name: {"share": v.share, "model_version": _variant_version(running.models[v.name], model)}
                for v in running.experiment.variants
            },
        }
    body["provenance_queued"] = service.recorder.queued
    return json_response(body, status=200 if model else 503)


def _variant_version(own: Model | None, current: Model | None) -> str | None:
    chosen = own or current
    return None if chosen is None else chosen.version


def _one_line(text: str) -> bytes:
    return " ".join(text.split())[:200].encode()
