"""``Answer`` sends the bytes Sanic's own ``HTTPResponse`` would, from headers it encoded once."""

from __future__ import annotations

import re

import pytest
from sanic.headers import format_http1_response
from sanic.response import HTTPResponse

from server import answer
from server.answer import TEXT, Answer, RequestIds, fixed_headers


def sanic_bytes(response: HTTPResponse, size: int) -> bytes:
    """The header block as Sanic's HTTP/1 writer makes it (Http.http1_response_header)."""
    response.headers["content-length"] = size
    response.headers["connection"] = "keep-alive"
    return format_http1_response(response.status, response.processed_headers)


def plain(status: int, request_id: str, version: str | None, variant: str | None, fallback: bool) -> bytes:
    headers = {"X-Request-Id": request_id}
    if version is not None:
        headers["X-Model-Version"] = version
        if fallback:
            headers["X-Fallback"] = "1"
    if variant is not None:
        headers["X-Variant"] = variant
    return sanic_bytes(HTTPResponse(b"body", status=status, headers=headers, content_type=TEXT), 4)


@pytest.mark.parametrize(
    ("status", "version", "variant", "fallback"),
    [
        (200, "20261128T040000Z", None, False),
        (200, "20261128T040000Z", None, True),
        (200, "20261128T040000Z", "treatment", True),
        (400, None, None, False),
        (400, None, "control", False),
        (503, None, "control", False),
        # a version or variant carrying CR, LF or NUL cannot split the answer: removed as Sanic does
        (200, "v1\r\nSet-Cookie: a=b", "tr\x00eat\nment", False),
        (200, "vé rsion", "variánt", True),
    ],
)
def test_an_answer_sends_what_sanic_would(
    status: int, version: str | None, variant: str | None, fallback: bool
) -> None:
    request_id = RequestIds().next()
    ours = Answer(b"body", status, request_id, fixed_headers(version, variant, fallback))
    assert sanic_bytes(ours, 4) == plain(status, request_id, version, variant, fallback)
    # twice: the second time from the remembered encodings
    again = Answer(b"body", status, request_id, fixed_headers(version, variant, fallback))
    assert sanic_bytes(again, 4) == plain(status, request_id, version, variant, fallback)
    assert b"\r\nSet-Cookie" not in sanic_bytes(again, 4)


def test_a_full_memo_starts_over_and_headers_stay_right(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(answer, "MEMO_LIMIT", 1)  # every new entry empties the memo first
    request_id = RequestIds().next()
    for size in (4321, 4321, 54321):
        ours = Answer(b"body", 200, request_id, fixed_headers("v\r\n-unseen", "b-unseen", True))
        headers = {"X-Request-Id": request_id, "X-Model-Version": "v\r\n-unseen", "X-Fallback": "1"}
        theirs = HTTPResponse(b"body", headers=headers | {"X-Variant": "b-unseen"}, content_type=TEXT)
        assert sanic_bytes(ours, size) == sanic_bytes(theirs, size)


def test_a_header_set_on_the_answer_is_sent_and_cleaned() -> None:
    ours = Answer(b"body", 200, RequestIds().next(), ())
    ours.headers["X-Extra"] = "a\r\nb"
    assert b"\r\nX-Extra: ab\r\n" in sanic_bytes(ours, 4)


def test_request_ids_are_32_hex_digits_and_unique() -> None:
    ids = RequestIds()
    drawn = [ids.next() for _ in range(1000)] + [RequestIds().next()]
    assert all(re.fullmatch(r"[0-9a-f]{32}", i) for i in drawn)
    assert len(set(drawn)) == len(drawn)
