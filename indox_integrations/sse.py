"""Encode server-sent events, as per the WHATWG HTML spec.

https://html.spec.whatwg.org/multipage/server-sent-events.html#event-stream-interpretation

A text's line breaks (CR, LF or CRLF) become separate ``data:`` lines, which
every conformant parser joins back with LF: so CR and CRLF arrive as LF, and
any other text arrives exactly.
"""

from __future__ import annotations

import re

__all__ = ["encode_comment", "encode_data", "encode_event"]

_LINE_BREAK = re.compile(r"\r\n|\r|\n")
_SURROGATE = re.compile("[\ud800-\udfff]")


def _utf8(text: str) -> bytes:
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        # A lone surrogate (half of a pair split across chunks, a bad "\ud83d"
        # escape) has no UTF-8 form: U+FFFD, as a decoder would make of it.
        return _SURROGATE.sub("\ufffd", text).encode("utf-8")


def _field_lines(name: bytes, value: str) -> bytes:
    if "\n" not in value and "\r" not in value:
        return name + _utf8(value) + b"\n"
    return b"".join(name + _utf8(line) + b"\n" for line in _LINE_BREAK.split(value))


def encode_data(text: str) -> bytes:
    """Encode ``text`` as one default (``message``) event: the hot path."""
    if "\n" not in text and "\r" not in text:
        return b"data: " + _utf8(text) + b"\n\n"
    return _field_lines(b"data: ", text) + b"\n"


def encode_event(
    data: str | None = None,
    *,
    event: str | None = None,
    id: str | None = None,
    retry: int | None = None,
) -> bytes:
    """Encode one event; ``event`` and ``id`` must be single-line, ``retry`` in ms."""
    parts = []
    if event is not None:
        if _LINE_BREAK.search(event):
            raise ValueError(f"event name must be a single line, got {event!r}")
        parts.append(b"event: " + event.encode("utf-8") + b"\n")
    if id is not None:
        if _LINE_BREAK.search(id) or "\0" in id:
            raise ValueError(f"event id must be one line without NUL, got {id!r}")
        parts.append(b"id: " + id.encode("utf-8") + b"\n")
    if retry is not None:
        if isinstance(retry, bool) or not isinstance(retry, int) or retry < 0:
            raise ValueError(f"retry must be a non-negative int, got {retry!r}")
        parts.append(b"retry: %d\n" % retry)
    if data is not None:
        parts.append(_field_lines(b"data: ", data))
    return b"".join(parts) + b"\n"


def encode_comment(text: str = "") -> bytes:
    """Encode a comment block, which parsers ignore: used for heartbeats."""
    return (_field_lines(b": ", text) if text else b":\n") + b"\n"
