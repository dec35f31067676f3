"""Wire protocols: how a stream's typed events are put on the wire.

A protocol knows one wire format and nothing about frameworks or clients.
``indox`` (the default) is the kit's own; each protocol is a module of its own.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from ..assets import HEADERS
from ..events import Event, FinishReason

__all__ = ["PROTOCOLS", "StreamProtocol", "get_protocol"]


class StreamProtocol:
    """The encoder of one stream: one instance per response, so it may keep state.

    Every method returns the bytes to send. ``error()`` and ``end()`` are
    terminal: they carry the protocol's end marker.
    """

    name: ClassVar[str]
    headers: ClassVar[Mapping[str, str]] = HEADERS
    """Response headers of a stream in this protocol."""

    def __init__(self, *, attach_usage: bool = False, model: str | None = None) -> None:
        self.attach_usage = attach_usage
        self.model = model

    def open(self) -> bytes:
        """The first bytes, sent at once (they flush proxies)."""
        raise NotImplementedError

    def text(self, text: str) -> bytes:
        """A piece of answer text: the hot path."""
        raise NotImplementedError

    def encode(self, event: Event) -> bytes:
        """Reasoning, a tool-call delta or a complete tool call."""
        raise NotImplementedError

    def ping(self) -> bytes:
        """A heartbeat while the upstream is silent."""
        raise NotImplementedError

    def error(self, kind: str, message: str) -> bytes:
        """A failure after the response started, then the end marker."""
        raise NotImplementedError

    def end(self, reason: FinishReason, usage: dict[str, Any] | None) -> bytes:
        """A normal end: the finish reason, the usage if wanted, the end marker."""
        raise NotImplementedError


def get_protocol(name: str) -> type[StreamProtocol]:
    """The protocol class named ``name``; ``ValueError`` naming the known ones otherwise."""
    try:
        return PROTOCOLS[name]
    except (KeyError, TypeError):
        known = ", ".join(repr(key) for key in PROTOCOLS)
        raise ValueError(f"protocol must be one of {known}, got {name!r}") from None


def _registry() -> dict[str, type[StreamProtocol]]:
    from .indox import IndoxProtocol

    return {cls.name: cls for cls in (IndoxProtocol,)}


PROTOCOLS: dict[str, type[StreamProtocol]] = _registry()
"""Every protocol by name."""
