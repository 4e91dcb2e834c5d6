"""The site's request client against real local HTTP servers."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from movierec.movielog import Malformed, RecoEvent, format_event, parse_line
from simulator.client import ask, parse_body, server_label, to_event
from tests.conftest import free_port

IDS = ["the+matrix+1999", "up+2009", "heat+1995"]


class SiteFacingHandler(BaseHTTPRequestHandler):
    """A stand-in recommendation service whose behaviour depends on the user id."""

    def do_GET(self) -> None:
        user = self.path.rsplit("/", 1)[-1]
        if user == "1":  # a normal answer
            self._answer(200, ",".join(IDS))
        elif user == "2":  # too slow for the site's 800 ms
            time.sleep(1.0)
            self._answer(200, ",".join(IDS))
        elif user == "6":  # headers at once, the body 1 s later: each read in time, the whole not
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(",".join(IDS))))
            self.end_headers()
            self.wfile.flush()
            time.sleep(0.5)
            self.wfile.write(b"the+matrix+1999,")
            self.wfile.flush()
            time.sleep(0.5)
            self.wfile.write(",".join(IDS[1:]).encode())
        elif user == "3":  # 200, but not an id list
            self._answer(200, "<html>oops\nerror</html>")
        elif user == "4":
            self._answer(404, "no such user")
        else:
            self._answer(200, "")

    def _answer(self, status: int, body: str) -> None:
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:  # keep test output quiet
        pass


@pytest.fixture(scope="module")
def service_url() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", free_port()), SiteFacingHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def logged_line(base_url: str, user_id: int) -> tuple[str, RecoEvent]:
    async def go() -> RecoEvent:
        async with httpx.AsyncClient() as http:
            answer = await ask(http, base_url, user_id)
        return to_event(datetime(2026, 11, 28, 10, 15, 2), user_id, base_url, answer)

    event = asyncio.run(go())
    line = format_event(event)
    parsed = parse_line(line)
    assert not isinstance(parsed, Malformed), parsed  # every logged line is in the grammar
    assert parsed == event
    return line, event


def test_a_normal_answer_is_logged_as_status_200_with_the_ids(service_url: str) -> None:
    line, event = logged_line(service_url, 1)
    port = service_url.rsplit(":", 1)[1]
    assert line.startswith(
        f"2026-11-28T10:15:02,1,recommendation request 127.0.0.1:{port}, status 200, result: "
    )
    assert event.items == tuple(IDS)
    assert "result: the+matrix+1999, up+2009, heat+1995, " in line
    assert 0 <= event.latency_ms < 800


def test_a_server_slower_than_800_ms_is_logged_as_status_0_timeout(service_url: str) -> None:
    line, event = logged_line(service_url, 2)
    assert event.status == 0 and event.items == ()
    assert event.error is not None and event.error.startswith("java.util.concurrent.TimeoutException")
    assert line.endswith("after 800 ms, 800 ms")


def test_an_answer_whose_parts_each_arrive_in_time_but_not_the_whole_is_a_timeout(service_url: str) -> None:
    _, event = logged_line(service_url, 6)
    assert event.status == 0 and event.error is not None and "TimeoutException" in event.error


def test_a_burst_of_timeouts_under_pool_contention_leaves_the_client_answering(service_url: str) -> None:
    async def go() -> tuple[list[int], list[int]]:
        async with httpx.AsyncClient(limits=httpx.Limits(max_connections=4)) as http:
            slow = await asyncio.gather(*(ask(http, service_url, 2) for _ in range(40)))
            fast = await asyncio.gather(*(ask(http, service_url, 1) for _ in range(20)))
        return [a.status for a in slow], [a.status for a in fast]

    slow, fast = asyncio.run(go())
    assert slow == [0] * 40  # every one over the budget
    assert fast == [200] * 20  # no pool slot lost to them


def test_a_refused_connection_is_status_0() -> None:
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    _, event = logged_line(url, 1)
    assert event.status == 0
    assert event.error is not None and event.error.startswith("java.net.ConnectException")


def test_a_malformed_body_counts_as_failure_and_stays_one_line(service_url: str) -> None:
    line, event = logged_line(service_url, 3)
    assert event.status == 0
    assert "\n" not in line and "invalid response body: <html>oops error</html>" in line


def test_other_http_codes_are_logged_with_their_code(service_url: str) -> None:
    _, event = logged_line(service_url, 4)
    assert (event.status, event.error) == (404, "no such user")


def test_an_empty_list_is_a_valid_answer(service_url: str) -> None:
    _, event = logged_line(service_url, 5)
    assert (event.status, event.items) == (200, ())


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("a+1999,b+2000", ("a+1999", "b+2000")),
        (" a+1999 , b+2000 \n", ("a+1999", "b+2000")),
        ("", ()),
        ("a+1999,,b+2000", None),
        ("not an id", None),
        ('{"items": ["a+1999"]}', None),
    ],
)
def test_body_parsing(body: str, expected: tuple[str, ...] | None) -> None:
    assert parse_body(body) == expected


def test_server_label() -> None:
    assert server_label("http://127.0.0.1:8082") == "127.0.0.1:8082"
    assert server_label("http://movierec.internal") == "movierec.internal:80"
