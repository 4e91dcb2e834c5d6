"""Validation of the ``<userid>`` path segment: a user id, or a one-line reason why not."""

from __future__ import annotations

from urllib.parse import unquote

from movierec.movielog import MAX_USER_ID, parse_user_id

MAX_ID_CHARS = 19  # len(str(2**63 - 1)); longer input is refused before any parsing
_SHOWN_CHARS = 40


def parse_segment(raw: str) -> tuple[int | None, str]:
    """The user id in a raw path segment, or ``(None, reason)``.

    The segment is percent-decoded first (``%31`` is the URL form of ``1``), then it
    must be a canonical positive integer of ASCII digits that fits 64 bits: the same
    rule as the movielog grammar, so an id we answer is an id the lake can hold.
    """
    if len(raw) > 3 * MAX_ID_CHARS:  # even fully percent-encoded a valid id is shorter
        return None, f"user id too long ({len(raw)} characters)"
    text = unquote(raw, errors="replace")
    if text == "":
        return None, "empty user id"
    if len(text) > MAX_ID_CHARS:
        return None, f"user id too long ({len(text)} characters)"
    user_id = parse_user_id(text)
    if user_id is not None:
        return user_id, ""
    shown = _shown(text)
    if not text.isascii() or not text.isdigit():
        return None, f"user id must be decimal digits 0-9, no sign or spaces: {shown}"
    if text.startswith("0"):
        return None, f"user id must be positive, without leading zeros: {shown}"
    return None, f"user id above {MAX_USER_ID}: {shown}"


def _shown(text: str) -> str:
    """The input as a short one-line printable quote (never echoing newlines or control characters)."""
    quoted = ascii(text[:_SHOWN_CHARS])
    return quoted + ("..." if len(text) > _SHOWN_CHARS else "")
