"""A recommendation answer as an HTTP response, its headers that repeat encoded once.

Sanic turns every header of every response into bytes as it sends it: CR, LF and NUL taken out
of the name and the value (so no value can split the response), then encoded. With our three
to five headers per answer that was ~12% of a worker's time at full load (bench/README.md,
"Service overhead: pre-encoded headers"), yet all but the request id and the length repeat:
the content type, the model version, the variant, the fallback flag, ``connection``.

``Answer.processed_headers`` (Sanic's public hook for a response's encoded headers) gives the
same bytes in the same order as ``HTTPResponse``'s, built so:
- ``fixed_headers``: the content type and the model's headers, made once per (version,
  variant, fallback) by ``header`` (Sanic's rule: CR, LF and NUL removed) and remembered;
- ``X-Request-Id``: a ``RequestIds`` id, hex digits only, so it needs no removing;
- whatever Sanic itself put in ``headers`` (``content-length``, an int, and ``connection``)
  or anything else set there: encoded by ``header`` too, remembered per (name, value).
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator

from sanic.response import HTTPResponse

TEXT = "text/plain; charset=utf-8"
MEMO_LIMIT = 4096  # entries per memo; a full one starts over (old models' entries go with it)
# What Sanic removes from header names and values (sanic.response.types.HEADER_TRANSLATION_TABLE).
_UNSAFE = str.maketrans("", "", "\r\n\x00")

Header = tuple[bytes, bytes]


def header(name: str, value: object) -> Header:
    """One header as Sanic sends it: CR, LF and NUL removed from both parts, then encoded."""
    return (
        name.translate(_UNSAFE).encode("ascii"),
        f"{value}".translate(_UNSAFE).encode(errors="surrogateescape"),
    )


_CONTENT_TYPE = header("content-type", TEXT)
_fixed: dict[tuple[str | None, str | None, bool], tuple[Header, ...]] = {}
_seen: dict[tuple[str, str], Header] = {}  # Sanic's own headers: a few hundred lengths, keep-alive


def fixed_headers(version: str | None, variant: str | None, fallback: bool) -> tuple[Header, ...]:
    """The headers of an answer besides its id and Sanic's: the model's, encoded once per model."""
    key = (version, variant, fallback)
    found = _fixed.get(key)
    if found is None:
        found = ()
        if version is not None:
            found += (header("X-Model-Version", version),)
        if fallback:
            found += (header("X-Fallback", "1"),)
        if variant is not None:
            found += (header("X-Variant", variant),)
        if len(_fixed) >= MEMO_LIMIT:  # a worker outlives many models: forget, never stop remembering
            _fixed.clear()
        _fixed[key] = found
    return found


class RequestIds:
    """Request ids of one worker: 16 random hex digits drawn at start, then a 16-digit counter.

    32 hex digits like a uuid4's, unique across workers and restarts (64 random bits per
    worker), without a system call for random bytes per answer as ``uuid.uuid4`` makes.
    Only hex digits: ``Answer`` sends them as they are.
    """

    def __init__(self) -> None:
        self._prefix = os.urandom(8).hex()
        self._numbers = itertools.count()

    def next(self) -> str:
        return f"{self._prefix}{next(self._numbers):016x}"


class Answer(HTTPResponse):
    """A text answer whose headers are its request id (``RequestIds``'), ``fixed`` and Sanic's own."""

    __slots__ = ("fixed", "request_id")

    def __init__(self, body: bytes, status: int, request_id: str, fixed: tuple[Header, ...]) -> None:
        super().__init__(body, status, content_type=TEXT)
        self.request_id = request_id
        self.fixed = fixed

    @property
    def processed_headers(self) -> Iterator[Header]:
        # HTTPResponse's order: the id, the model's headers, Sanic's, the content type last
        encoded = [(b"X-Request-Id", self.request_id.encode("ascii")), *self.fixed]
        for name, value in self.headers.items():
            key = (name, f"{value}")  # the text Sanic would send: its encoding depends on nothing else
            pair = _seen.get(key)
            if pair is None:
                pair = header(*key)
                if len(_seen) >= MEMO_LIMIT:
                    _seen.clear()
                _seen[key] = pair
            encoded.append(pair)
        encoded.append(_CONTENT_TYPE)
        return iter(encoded)
