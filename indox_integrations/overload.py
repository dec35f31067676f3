"""Overload: bound the streams a process holds, in all and per user.

An LLM stream holds a connection, a thread or task and an upstream call for
as long as the answer lasts.  Every route of the kit takes a *slot* before it
calls the client and gives it back the moment its stream ends, however it
ends (the pipeline's ``on_finish``), or at once when the call fails.  All the
routes of a process share one count (:data:`LIMITER`); a route with
``max_streams`` refuses a new stream with a 503 while the process holds that
many, one with ``max_streams_per_key`` refuses with a 429 while the caller's
key (``limit_key(request)``: a user id, an IP) holds that many.  Both answers
carry ``Retry-After``.  Overload is a state, not an error: it is logged as a
warning (503) or at info level (429), never as an error.

Each worker process counts its own streams: with ``gunicorn -w 4`` and
``max_streams=100`` the host holds at most 400.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Literal

from .protocols import Reply, StreamProtocol
from .requests import RequestError
from .stream import StreamOptions

__all__ = [
    "LIMITER",
    "RETRY_AFTER",
    "Overload",
    "Refusal",
    "Slot",
    "StreamLimiter",
    "request_function",
]

logger = logging.getLogger("indox_integrations")

RETRY_AFTER = 5
"""Seconds a refused client is told to wait (``Retry-After``): about one short answer."""


@dataclass(frozen=True)
class Refusal:
    """A stream refused before the client was called: a 503 or a 429 with ``Retry-After``."""

    status: Literal[429, 503]
    kind: Literal["overloaded", "too_many_streams"]
    message: str
    retry_after: int = RETRY_AFTER

    @property
    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after)}

    def as_json(self) -> dict[str, Any]:
        """The body of the kit's own routes: ``{"error": {"type", "message"}}``."""
        return {"error": {"type": self.kind, "message": self.message}}

    def reply(self, protocol: type[StreamProtocol]) -> Reply:
        """The answer of a protocol's routes, in that protocol's error shape."""
        reply = protocol.request_error(RequestError("stream", self.message, self.status))
        return Reply(reply.status, reply.body, {**reply.headers, **self.headers})


class Slot:
    """One open stream's place in a :class:`StreamLimiter`; ``release()`` gives it back once.

    Used as a context manager by the skins: leaving the block by an exception,
    or without :meth:`hand_over`, gives the slot back at once.
    """

    def __init__(self, limiter: StreamLimiter, key: Hashable | None) -> None:
        self._limiter = limiter
        self._key = key
        self._held = True
        self._handed_over = False
        self._lock = threading.Lock()

    def release(self) -> None:
        """Give the slot back; later calls do nothing (thread-safe)."""
        with self._lock:
            if not self._held:
                return
            self._held = False
        self._limiter._release(self._key)

    def hand_over(self, options: StreamOptions) -> StreamOptions:
        """``options`` for the stream that now owns the slot: it is given back on its finish.

        A user's own ``on_finish`` still runs, after the release.
        """
        self._handed_over = True
        own = options.get("on_finish")
        release = self.release
        if own is None:
            return {**options, "on_finish": release}

        def finished() -> object:
            release()
            return own()

        return {**options, "on_finish": finished}

    def __enter__(self) -> Slot:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if kind is not None or not self._handed_over:
            self.release()


class StreamLimiter:
    """Counts the open streams of a process, in all and per key (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._total = 0
        self._per_key: dict[Hashable, int] = {}

    def open_streams(self, key: Hashable | None = None) -> int:
        """Open streams in all, or under ``key``."""
        with self._lock:
            return self._total if key is None else self._per_key.get(key, 0)

    def acquire(
        self,
        key: Hashable | None = None,
        *,
        max_streams: int | None = None,
        max_streams_per_key: int | None = None,
    ) -> Slot | Refusal:
        """A slot, or the refusal when either limit is reached (``None``: no limit).

        A ``key`` of ``None`` is not limited per key.
        """
        with self._lock:
            if max_streams is not None and self._total >= max_streams:
                refusal = Refusal(
                    503,
                    "overloaded",
                    f"the server is at its limit of {max_streams} open streams; "
                    f"retry in {RETRY_AFTER} s",
                )
            elif (
                key is not None
                and max_streams_per_key is not None
                and self._per_key.get(key, 0) >= max_streams_per_key
            ):
                refusal = Refusal(
                    429,
                    "too_many_streams",
                    f"at most {max_streams_per_key} open streams per user; wait for one to end",
                )
            else:
                self._total += 1
                if key is not None:
                    self._per_key[key] = self._per_key.get(key, 0) + 1
                return Slot(self, key)
        if refusal.status == 503:
            logger.warning("stream refused: %s", refusal.message)
        else:
            logger.info("stream refused for key %r: %s", key, refusal.message)
        return refusal

    def _release(self, key: Hashable | None) -> None:
        with self._lock:
            self._total -= 1
            if key is not None:
                left = self._per_key[key] - 1
                if left:
                    self._per_key[key] = left
                else:
                    del self._per_key[key]  # keys of users gone must not pile up


LIMITER = StreamLimiter()
"""The process's count, shared by every router, blueprint and view."""


@dataclass(frozen=True)
class Overload:
    """A route's limits: ``max_streams``, ``max_streams_per_key`` and ``limit_key``.

    ``limit_key`` is a function of the framework's request (FastAPI's
    ``Request``, Flask's ``request``, Django's ``HttpRequest``) returning a
    hashable key, e.g. ``lambda request: request.user.id``; ``None`` means no
    per-key limit for that request.
    """

    max_streams: int | None = None
    max_streams_per_key: int | None = None
    limit_key: Callable[[Any], Any] | None = None
    limiter: StreamLimiter = LIMITER

    def __post_init__(self) -> None:
        for name in ("max_streams", "max_streams_per_key"):
            value = getattr(self, name)
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, int) or value < 1
            ):
                raise ValueError(f"{name} must be a positive integer or None, got {value!r}")
        if self.limit_key is not None and not callable(self.limit_key):
            raise TypeError(
                f"limit_key must be a function of the request, got {type(self.limit_key).__name__}"
            )
        if (self.max_streams_per_key is None) != (self.limit_key is None):
            raise ValueError(
                "max_streams_per_key and limit_key go together: limit_key names whose "
                "streams are counted, e.g. limit_key=lambda request: request.user.id"
            )

    def admit(self, key: Hashable | None = None) -> Slot | Refusal:
        """A slot for a new stream under ``key``, or why not."""
        return self.limiter.acquire(
            key, max_streams=self.max_streams, max_streams_per_key=self.max_streams_per_key
        )


def request_function(name: str, value: Any) -> Callable[[Any], Any] | None:
    """``value`` when it is a function of the request (or ``None``); ``TypeError`` otherwise.

    Routers, blueprints and views take ``context=`` as a function of the
    request; ``sse_response(context=...)`` takes the value itself.
    """
    if value is None or callable(value):
        return value  # type: ignore[no-any-return]
    raise TypeError(
        f"{name} must be a function of the request, e.g. lambda request: "
        f'{{"user": request.user.id}}, got {type(value).__name__}'
    )
