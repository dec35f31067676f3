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
from ..clients import acall_client, call_client
from ..concurrency import close_async, close_sync
from ..events import Event, FinishReason
from ..requests import Limits, RequestError

if TYPE_CHECKING:
    from ..clients import LLMRequest

__all__ = [
    "PROTOCOLS",
    "Call",
    "Reply",
    "Route",
    "Stream",
    "StreamProtocol",
    "acollect",
    "aserve",
    "collect",
    "get_protocol",
    "named_protocol",
    "serve",
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
    def request_error(cls, exc: RequestError) -> Reply:
        """The answer for a body the skin refused before ``handle()`` (size, encoding)."""
        return Reply(exc.status, exc.as_json())

    @classmethod
    def client_error(cls, exc: BaseException) -> Reply:
        """The answer for a client that failed before streaming (or while collecting)."""
        raise NotImplementedError

    def __init__(self, *, attach_usage: bool | None = False, model: str | None = None) -> None:
        self.attach_usage = attach_usage
        """Whether the end carries the usage; ``None``: as the stream's ``usage`` option says."""
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


@dataclass(frozen=True)
class Stream:
    """A started upstream, to stream with ``encoder`` as its protocol."""

    source: Any
    encoder: StreamProtocol


def serve(protocol: type[StreamProtocol], result: Reply | Call, client: Any) -> Reply | Stream:
    """Carry out what :meth:`StreamProtocol.handle` decided, for sync code (WSGI)."""
    if isinstance(result, Reply):
        return result
    try:
        source = call_client(client, result.request)
    except Exception as exc:
        return protocol.client_error(exc)
    if result.encoder is not None:
        return Stream(source, result.encoder)
    try:
        events = collect(source)
    except Exception as exc:
        return protocol.client_error(exc)
    finally:
        close_sync(source)
    assert result.reply is not None
    return result.reply(events)


async def aserve(
    protocol: type[StreamProtocol], result: Reply | Call, client: Any
) -> Reply | Stream:
    """:func:`serve` for async code (ASGI): the client call never blocks the loop."""
    if isinstance(result, Reply):
        return result
    try:
        source = await acall_client(client, result.request)
    except Exception as exc:
        return protocol.client_error(exc)
    if result.encoder is not None:
        return Stream(source, result.encoder)
    try:
        events = await acollect(source)
    except Exception as exc:
        return protocol.client_error(exc)
    finally:
        await close_async(source)
    assert result.reply is not None
    return result.reply(events)


def collect(source: Any) -> list[Event]:
    """Every event of a sync source (or a full response), for a non-streamed answer."""
    return list(iter_events(source))


async def acollect(source: Any) -> list[Event]:
    """:func:`collect` for async code: a sync source is read in a thread."""
    if hasattr(source, "__aiter__") and not is_full_response(source):
        return [event async for event in aiter_events(source)]
    return await asyncio.to_thread(collect, source)


def named_protocol(protocol: str | StreamProtocol) -> type[StreamProtocol]:
    """The protocol a router serves: it takes a name, not an encoder made for one stream."""
    if isinstance(protocol, StreamProtocol):
        raise TypeError(
            f"a router takes a protocol's name, got an encoder {type(protocol).__name__}"
        )
    return get_protocol(protocol)


def get_protocol(name: str) -> type[StreamProtocol]:
    """The protocol class named ``name``; ``ValueError`` naming the known ones otherwise."""
    try:
        return PROTOCOLS[name]
    except (KeyError, TypeError):
        known = ", ".join(repr(key) for key in PROTOCOLS)
        raise ValueError(f"protocol must be one of {known}, got {name!r}") from None


def _registry() -> dict[str, type[StreamProtocol]]:
    from .ai_sdk import AISDKProtocol
    from .indox import IndoxProtocol
    from .openai import OpenAIProtocol

    return {cls.name: cls for cls in (IndoxProtocol, OpenAIProtocol, AISDKProtocol)}


PROTOCOLS: dict[str, type[StreamProtocol]] = _registry()
"""Every protocol by name."""
