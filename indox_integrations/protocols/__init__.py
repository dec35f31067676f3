"""Wire protocols: how a stream's typed events are put on the wire.

A protocol knows one wire format and nothing about frameworks or clients.
``indox`` (the default) is the kit's own; each protocol is a module of its own.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from ..assets import HEADERS
from ..chunks import aiter_events, is_full_response, iter_events
from ..events import Event, FinishReason
from ..requests import Limits

if TYPE_CHECKING:
    from ..clients import LLMRequest

__all__ = [
    "PROTOCOLS",
    "Call",
    "Reply",
    "Route",
    "StreamProtocol",
    "acollect",
    "collect",
    "get_protocol",
]


@dataclass(frozen=True)
class Route:
    """One endpoint a protocol serves, relative to where it is mounted."""

    method: str
    path: str
    name: str


@dataclass(frozen=True)
class Reply:
    """A JSON answer: an error, a listing, or a non-streamed completion."""

    status: int
    body: Any
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Call:
    """A valid request: call the client with ``request``, then answer with ``encoder``
    (a stream), or, when it is ``None``, with ``reply(events)`` for the whole answer."""

    request: LLMRequest
    encoder: StreamProtocol | None
    reply: Callable[[list[Event]], Reply] | None = None


class StreamProtocol:
    """The encoder of one stream: one instance per response, so it may keep state.

    Every method returns the bytes to send. ``error()`` and ``end()`` are
    terminal: they carry the protocol's end marker.
    """

    name: ClassVar[str]
    headers: ClassVar[Mapping[str, str]] = HEADERS
    """Response headers of a stream in this protocol."""
    routes: ClassVar[tuple[Route, ...]] = ()
    """The endpoints a router, blueprint or URLconf serves for this protocol."""
    csrf_exempt: ClassVar[bool] = False
    """Whether Django serves its views without CSRF checks (API clients with bearer keys)."""

    @classmethod
    def handle(
        cls,
        route: Route,
        body: bytes,
        headers: Mapping[str, str],
        limits: Limits,
        *,
        api_keys: Collection[str] | None = None,
    ) -> Reply | Call:
        """Check and parse one request to ``route``: a :class:`Reply` ends it at once.

        ``body`` holds at most ``limits.max_body_bytes + 1`` bytes (more means too
        large); ``headers`` have lower-case names.  Never calls the client.
        """
        raise NotImplementedError

    @classmethod
    def client_error(cls, exc: BaseException) -> Reply:
        """The answer for a client that failed before streaming (or while collecting)."""
        raise NotImplementedError

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


def collect(source: Any) -> list[Event]:
    """Every event of a sync source (or a full response), for a non-streamed answer."""
    return list(iter_events(source))


async def acollect(source: Any) -> list[Event]:
    """:func:`collect` for async code: a sync source is read in a thread."""
    if hasattr(source, "__aiter__") and not is_full_response(source):
        return [event async for event in aiter_events(source)]
    return await asyncio.to_thread(collect, source)


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
