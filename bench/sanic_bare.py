"""The framework ceiling of bench_serving.py: Sanic answering a constant line, no lookup, no records.

Same route, same number of workers, same single-line answer size as the service,
so the gap between this row and ``movierec`` is what the service itself costs
(lookup, experiment, provenance, metrics) and the gap to nginx is Sanic's own:

    sanic bench.sanic_bare:create_app --factory --workers 2 --port PORT --no-access-logs
"""

from __future__ import annotations

from sanic import Sanic
from sanic.request import Request
from sanic.response import HTTPResponse

# Twenty ids of a typical slug length: the size of a real answer.
ANSWER = ",".join(f"some+movie+title+{number}+1999" for number in range(20))


def create_app() -> Sanic:
    app = Sanic("sanic_bare")
    app.config.ACCESS_LOG = False

    @app.get("/recommend/<segment>")
    async def recommend(request: Request, segment: str) -> HTTPResponse:
        return HTTPResponse(ANSWER, content_type="text/plain; charset=utf-8")

    return app
