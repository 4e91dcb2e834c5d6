"""The framework ceiling of bench_serving.py, and the same app with the service's parts added one by one.

Same route, same number of workers, same single-line answer size as the service, so the gap
between ``sanic-bare`` and ``movierec`` is what the service itself costs (lookup, experiment,
provenance, metrics) and the gap to nginx is Sanic's own:

    sanic bench.sanic_bare:create_app --factory --workers 2 --port PORT --no-access-logs

The ladder between them, each step one of the service's own parts added to the last (the
service's modules, not copies), so each step's CPU per answer is that part's cost under load:
- ``create_lookup_app``: the answer is ``Model.lookup`` of the user in the serving file named
  by ``BENCH_SERVING_FILE`` (server.store, opened as the service opens it);
- ``create_recorded_app``: and its provenance record (``answer_record``) handed to a
  ``ServedRecorder`` producing to the broker of ``MOVIEREC_KAFKA_BOOTSTRAP``.

Beside the ladder, one alternative to its last step, ``create_batched_app`` (``sanic-batch``):
the same records queued in Python and handed to librdkafka ``BATCH`` at a time with
confluent-kafka's ``Producer.produce_batch`` (and every 0.25 s), its producer configured as
``ServedRecorder``'s. It cannot give a record the answer time as its Kafka timestamp
(confluent-kafka 2.16 refuses timestamps in batch mode), which ``movierec explain --at`` seeks
by: measured to know what that costs, not served (bench/README.md).

And the floor under both: ``create_dict_app`` (``sanic-dict``) answers from a dict of every
user's line read from the file at start (no SQLite per answer: ~0.5 GB per worker at full
scale), and ``create_floor_app`` (``sanic-floor``) also hands ``sanic-batch``'s records over.
No service could spend less per answer on a lookup and a record, whatever its store.
"""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING

from sanic import Sanic
from sanic.request import Request
from sanic.response import HTTPResponse

if TYPE_CHECKING:
    from movierec.settings import Settings

TEXT = "text/plain; charset=utf-8"
# Twenty ids of a typical slug length: the size of a real answer.
ANSWER = ",".join(f"some+movie+title+{number}+1999" for number in range(20))
SERVING_FILE_ENV = "BENCH_SERVING_FILE"
BATCH = 256


def create_app() -> Sanic:
    app = Sanic("sanic_bare")
    app.config.ACCESS_LOG = False

    @app.get("/recommend/<segment>")
    async def recommend(request: Request, segment: str) -> HTTPResponse:
        return HTTPResponse(ANSWER, content_type=TEXT)

    return app


def create_lookup_app() -> Sanic:
    return _ladder_app("sanic_lookup", record=False)


def create_recorded_app() -> Sanic:
    return _ladder_app("sanic_record", record=True)


def create_batched_app() -> Sanic:
    return _ladder_app("sanic_batch", record=True, batched=True)


def create_dict_app() -> Sanic:
    return _ladder_app("sanic_dict", record=False, in_memory=True)


def create_floor_app() -> Sanic:
    return _ladder_app("sanic_floor", record=True, batched=True, in_memory=True)


class BatchedRecords:
    """Records queued in Python, handed to librdkafka ``BATCH`` at a time (no Kafka timestamps)."""

    def __init__(self, settings: Settings) -> None:
        from confluent_kafka import Producer

        from server.provenance import producer_config

        self.topic = settings.served_topic
        self.pending: list[dict[str, bytes]] = []
        self.producer = Producer(producer_config(settings))

    def send(self, value: bytes, user_id: int, timestamp_ms: int) -> None:
        self.pending.append({"value": value, "key": str(user_id).encode()})
        if len(self.pending) >= BATCH:
            self.hand_over()

    def hand_over(self) -> None:
        pending, self.pending = self.pending, []
        if pending:
            self.producer.produce_batch(self.topic, pending)
        self.producer.poll(0)

    async def hand_over_often(self) -> None:
        while True:
            await asyncio.sleep(0.25)
            self.hand_over()

    def close(self, timeout: float) -> int:
        self.hand_over()
        return self.producer.flush(timeout)


def _ladder_app(name: str, record: bool, batched: bool = False, in_memory: bool = False) -> Sanic:
    from movierec.settings import load
    from server.answer import RequestIds
    from server.provenance import AnswerTime, ServedRecorder, answer_record
    from server.store import open_model

    ids, clock = RequestIds(), AnswerTime()

    app = Sanic(name, env_prefix=None)
    app.config.ACCESS_LOG = False

    @app.before_server_start
    async def open_file(app: Sanic) -> None:
        app.ctx.model = open_model(Path(os.environ[SERVING_FILE_ENV]))
        app.ctx.lookup = app.ctx.model.lookup
        if in_memory:  # every user's line held in this worker: a lookup with no SQLite at all
            lines = dict(app.ctx.model.connection.execute("SELECT user_id, items FROM recs"))
            app.ctx.lookup = lines.get
        app.ctx.recorder = None
        if batched:
            app.ctx.recorder = BatchedRecords(load())
            app.add_task(app.ctx.recorder.hand_over_often())
        elif record:
            app.ctx.recorder = ServedRecorder(load())

    @app.after_server_stop
    async def close_file(app: Sanic) -> None:
        app.ctx.model.close()
        if app.ctx.recorder is not None:
            app.ctx.recorder.close(5.0)

    @app.get("/recommend/<segment>")
    async def recommend(request: Request, segment: str) -> HTTPResponse:
        user_id = int(segment)
        line = app.ctx.lookup(user_id) or app.ctx.model.fallback
        recorder = app.ctx.recorder
        if recorder is not None:
            now = time.time()
            version = app.ctx.model.version
            value = answer_record(
                ids.next(), clock.format(now), user_id, None, version, line, False, 0.1, 200, request.ip
            )
            recorder.send(value, user_id, int(now * 1000))
        return HTTPResponse(line, content_type=TEXT)

    return app
