"""The streaming pipeline: chunks in, encoded server-sent events out.

This is the one place that decides policy (usage, errors, heartbeats, idle
timeout, end marker, closing the upstream), so every framework behaves alike.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import sys
import time
import weakref
from collections.abc import AsyncGenerator, Callable, Coroutine, Generator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, TypedDict

from . import shutdown, watchdog
from .chunks import ChunkNormalizer, UnsupportedChunkError, is_full_response
from .concurrency import FeedTimeout, TaskFeed, ThreadFeed, close_async, close_sync, keep_running
from .events import ErrorEvent, FinishEvent, TextEvent, UsageEvent
from .protocols import StreamProtocol, get_protocol

if TYPE_CHECKING:
    if sys.version_info >= (3, 11):
        from typing import Unpack
    else:
        from typing_extensions import Unpack

__all__ = [
    "AsyncSSEStream",
    "Outcome",
    "SSEStream",
    "StreamOptions",
    "StreamReport",
    "UsagePolicy",
    "async_sse_stream",
    "check_options",
    "sse_stream",
]

logger = logging.getLogger("indox_integrations")

UsagePolicy = Literal["skip", "attach"]
Outcome = Literal[
    "completed",
    "client_disconnected",
    "client_stalled",
    "upstream_error",
    "timeout",
    "shutdown",
    "cancelled",
]


@dataclass(frozen=True)
class StreamReport:
    """How one stream ended, handed to ``on_complete`` and logged."""

    outcome: Outcome
    chunks: int
    bytes: int
    time_to_first_token: float | None
    duration: float
    usage: dict[str, Any] | None
    error: BaseException | None = None
    context: Any = None
    """The stream's ``context`` option: who asked (a user id), for billing."""


Callback = Callable[[Any], Any]


class StreamOptions(TypedDict, total=False):
    """The options every stream takes; see :func:`sse_stream` for their meaning."""

    usage: UsagePolicy
    on_usage: Callback | None
    on_complete: Callback | None
    heartbeat: float | None
    idle_timeout: float | None
    expose_errors: bool
    protocol: str | StreamProtocol
    send_timeout: float | None
    shutdown_grace: float
    context: Any
    on_finish: Callable[[], object] | None


def check_options(options: Mapping[str, Any]) -> None:
    """Raise ``TypeError``/``ValueError`` for an unknown or invalid stream option."""
    unknown = set(options) - set(StreamOptions.__annotations__)
    if unknown:
        raise TypeError(f"unknown stream options: {', '.join(sorted(unknown))}")
    usage = options.get("usage", "skip")
    if usage not in ("skip", "attach"):
        raise ValueError(f"usage must be 'skip' or 'attach', got {usage!r}")
    for name in ("heartbeat", "idle_timeout", "send_timeout"):
        value = options.get(name)
        if value is not None and not value > 0:
            raise ValueError(f"{name} must be a positive number of seconds or None")
    grace = options.get("shutdown_grace", 0)
    if isinstance(grace, bool) or not isinstance(grace, (int, float)) or not grace >= 0:
        raise ValueError(f"shutdown_grace must be a number of seconds >= 0, got {grace!r}")
    protocol = options.get("protocol", "indox")
    if not isinstance(protocol, StreamProtocol):
        get_protocol(protocol)


def _wire(protocol: str | StreamProtocol, attach_usage: bool) -> StreamProtocol:
    """The encoder for one stream: a protocol's name, or an encoder made for it."""
    if isinstance(protocol, StreamProtocol):
        if protocol.attach_usage is None:
            protocol.attach_usage = attach_usage
        return protocol
    return get_protocol(protocol)(attach_usage=attach_usage)


class _Pipeline:
    """Policy for one stream, shared by the sync and the async loop."""

    def __init__(
        self,
        source: Any,
        *,
        usage: UsagePolicy = "skip",
        on_usage: Callback | None = None,
        on_complete: Callback | None = None,
        heartbeat: float | None = 15.0,
        idle_timeout: float | None = 300.0,
        expose_errors: bool = False,
        protocol: str | StreamProtocol = "indox",
        send_timeout: float | None = 30.0,
        shutdown_grace: float = 5.0,
        context: Any = None,
        on_finish: Callable[[], object] | None = None,
    ) -> None:
        check_options(
            {
                "usage": usage,
                "heartbeat": heartbeat,
                "idle_timeout": idle_timeout,
                "protocol": protocol,
                "send_timeout": send_timeout,
                "shutdown_grace": shutdown_grace,
            }
        )
        if not (
            is_full_response(source) or hasattr(source, "__iter__") or hasattr(source, "__aiter__")
        ):
            raise TypeError(
                f"expected a chunk stream (an iterable or async iterable) or a full response, "
                f"got {type(source).__name__}"
            )
        self.source = source
        self.wire = _wire(protocol, usage == "attach")
        shutdown.install()  # from the main thread (ASGI servers), once the server's is in place
        self.on_usage = on_usage
        self.on_complete = on_complete
        self.heartbeat = heartbeat
        self.idle_timeout = idle_timeout
        self.expose_errors = expose_errors
        self.send_timeout = send_timeout
        self.shutdown_grace = shutdown_grace
        self.context = context
        # Called once, the moment the stream ends (the skins give back their limiter
        # slot here); a stream dropped unsent, never started nor closed, calls it
        # when it is collected.
        self.on_finish: weakref.finalize[[], object] | None = None
        if on_finish is not None:
            self.on_finish = weakref.finalize(self, on_finish)
            self.on_finish.atexit = False
        self.normalizer = ChunkNormalizer(source)
        self.feed: ThreadFeed | TaskFeed | None = None
        self.closing: asyncio.Task[Any] | None = None
        self.started = self.last_activity = self.last_write = time.monotonic()
        self.first_token: float | None = None
        self.chunks = 0
        self.bytes = 0
        self.usage: dict[str, Any] | None = None
        self.outcome: Outcome | None = None
        self.error: BaseException | None = None
        self.finished = False

    def upstream(self) -> Any:
        return [self.source] if is_full_response(self.source) else self.source

    def wrote(self, data: bytes) -> bytes:
        # Only bytes on the wire count: content-less chunks must not hold back heartbeats.
        if data:
            self.bytes += len(data)
            self.last_write = time.monotonic()
        return data

    def wait_time(self) -> float | None:
        """Seconds until the next heartbeat, idle timeout or shutdown is due (None: never)."""
        due = None if self.heartbeat is None else self.last_write + self.heartbeat
        if self.idle_timeout is not None:
            idle = self.last_activity + self.idle_timeout
            due = idle if due is None or idle < due else due
        stopping = shutdown.started()
        if stopping is not None:
            grace = stopping + self.shutdown_grace
            due = grace if due is None or grace < due else due
        return None if due is None else max(0.0, due - time.monotonic())

    def shutdown_due(self) -> bytes | None:
        """The shutdown error, once the server stops and this stream's grace is over."""
        stopping = shutdown.started()
        if stopping is None or time.monotonic() < stopping + self.shutdown_grace:
            return None
        self.outcome = "shutdown"
        return self.wrote(self.wire.error("shutdown", "the server is shutting down"))

    def on_silence(self) -> tuple[bytes, bool]:
        """Nothing came in time: a heartbeat, the idle timeout, or shutdown."""
        stop = self.shutdown_due()
        if stop is not None:
            return stop, True
        now = time.monotonic()
        if self.idle_timeout is not None and now - self.last_activity >= self.idle_timeout:
            self.outcome = "timeout"
            message = f"no data from the model for {self.idle_timeout:g} s"
            return self.wrote(self.wire.error("timeout", message)), True
        if self.heartbeat is not None and now - self.last_write >= self.heartbeat:
            return self.wrote(self.wire.ping()), False
        return b"", False

    def on_batch(self, items: list[Any]) -> tuple[bytes, bool]:
        """Encode a batch of chunks; True when the stream must end here."""
        stop = self.shutdown_due()
        if stop is not None:
            return stop, True
        self.last_activity = time.monotonic()
        wire = self.wire
        out = []
        for item in items:
            self.chunks += 1
            try:
                events = self.normalizer.feed(item)
            except UnsupportedChunkError as exc:
                out.append(self.fail(exc, "invalid_chunk", str(exc)))
                return self.wrote(b"".join(out)), True
            for event in events:
                kind = type(event)
                if kind is UsageEvent:
                    self.usage = event.usage  # type: ignore[union-attr]
                elif kind is ErrorEvent:
                    out.append(self.fail(None, event.type, event.message))  # type: ignore[union-attr]
                    return self.wrote(b"".join(out)), True
                elif kind is not FinishEvent:  # the finish reason goes out at the end
                    if self.first_token is None:
                        self.first_token = time.monotonic() - self.started
                    out.append(
                        wire.text(event.text)  # type: ignore[union-attr]
                        if kind is TextEvent
                        else wire.encode(event)
                    )
        return self.wrote(b"".join(out)), False

    def on_end(self) -> bytes:
        """The upstream stopped: flush, attach usage, end marker."""
        if self.feed is not None and self.feed.error is not None:
            exc = self.feed.error
            return self.wrote(self.fail(exc, "upstream_error", "the model stream failed"))
        out = b""
        try:
            for event in self.normalizer.finish():
                if type(event) is UsageEvent:
                    self.usage = event.usage
                elif type(event) is TextEvent:
                    out += self.wire.text(event.text)
                else:
                    out += self.wire.encode(event)
        except Exception as exc:
            return self.wrote(self.fail(exc, "upstream_error", "the model stream failed"))
        self.outcome = "completed"
        return self.wrote(out + self.wire.end(self.normalizer.end_reason(), self.usage))

    def fail(self, exc: BaseException | None, kind: str, message: str) -> bytes:
        self.outcome = "upstream_error"
        self.error = exc
        if exc is not None:
            message = (
                f"{type(exc).__name__}: {exc}"
                if self.expose_errors
                else f"{message} ({type(exc).__name__})"
            )
        return self.wire.error(kind, message)

    def finish(self, outcome: Outcome) -> None:
        """Close the upstream, report usage and outcome: exactly once."""
        if self.finished:
            return
        self.finished = True
        if self.feed is not None:
            self.feed.stop()
        elif hasattr(self.source, "__aiter__"):
            # Never iterated: an async upstream (an HTTP response) still needs its aclose().
            self.closing = _run_coroutine(close_async(self.source))
        else:
            close_sync(self.source)
        if self.on_finish is not None:
            try:
                self.on_finish()
            except Exception:
                logger.exception("on_finish %r failed", self.on_finish)
        if self.outcome is None:
            self.outcome = outcome
        if self.usage is None:
            try:
                self.usage = self.normalizer.fallback_usage()
            except Exception:
                logger.warning("get_usage_info() failed", exc_info=True)
        report = StreamReport(
            outcome=self.outcome,
            chunks=self.chunks,
            bytes=self.bytes,
            time_to_first_token=self.first_token,
            duration=time.monotonic() - self.started,
            usage=self.usage,
            error=self.error,
            context=self.context,
        )
        level = logging.ERROR if self.error is not None else logging.INFO
        logger.log(
            level,
            "stream %s: %d chunks, %d bytes in %.3f s",
            report.outcome,
            report.chunks,
            report.bytes,
            report.duration,
            exc_info=self.error,
            extra={"indox_stream": report, "indox_context": report.context},
        )
        if self.usage is not None and self.on_usage is not None:
            _call(self.on_usage, self.usage)
        if self.on_complete is not None:
            _call(self.on_complete, report)


def _run_coroutine(coroutine: Coroutine[Any, Any, Any]) -> asyncio.Task[Any] | None:
    """Run a coroutine as a task on the running loop, or to the end without one."""
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        asyncio.run(coroutine)
        return None
    return keep_running(loop.create_task(coroutine))


def _call(callback: Callback, value: Any) -> None:
    """Run a callback; a coroutine callback runs on the loop, or to the end without one."""
    try:
        result = callback(value)
        if inspect.iscoroutine(result):
            _run_coroutine(result)
    except Exception:
        logger.exception("stream callback %r failed", callback)


class SSEStream:
    """A sync iterator of encoded SSE bytes, for WSGI servers. See :func:`sse_stream`."""

    def __init__(
        self,
        source: Any,
        client_gone: Callable[[], bool] | None = None,
        *,
        abort: Callable[[], None] | None = None,
        **options: Any,
    ) -> None:
        if hasattr(source, "__aiter__") or hasattr(source, "__await__"):
            raise TypeError(
                f"expected a sync iterable for a WSGI server, got {type(source).__name__}; "
                "serve async upstreams with async_sse_stream() under ASGI"
            )
        self._pipeline = _Pipeline(source, **options)
        self._client_gone = client_gone
        self._abort = abort
        self._iterator = self._run()
        self.sent_at: float | None = None
        if self._pipeline.send_timeout is not None:
            self.send_timeout = self._pipeline.send_timeout
            watchdog.watch(self)

    @property
    def headers(self) -> Mapping[str, str]:
        """The response headers of this stream's protocol."""
        return self._pipeline.wire.headers

    def __iter__(self) -> SSEStream:
        return self

    def __next__(self) -> bytes:
        # The server asks for more once it has written the last piece.
        self.sent_at = None
        data = next(self._iterator)
        self.sent_at = time.monotonic()
        return data

    def close(self) -> None:
        """Stop: the upstream is closed and the outcome reported."""
        self.sent_at = None
        self._iterator.close()
        self._pipeline.finish("client_disconnected")

    def stalled(self) -> None:
        """The reader froze (see :mod:`~indox_integrations.watchdog`): drop the stream.

        Runs in the watchdog's thread while the server's thread is stuck in a
        write: the server's socket is shut, so that write fails and the server
        closes us in its own thread; without a socket, the upstream is closed here.
        """
        pipe = self._pipeline
        if pipe.outcome is None:
            pipe.outcome = "client_stalled"
        if self._abort is not None:
            self._abort()
        else:
            pipe.finish("client_stalled")

    def _run(self) -> Generator[bytes, None, None]:
        pipe = self._pipeline
        try:
            yield pipe.wrote(pipe.wire.open())
            feed = pipe.feed = ThreadFeed(pipe.upstream())
            feed.start()
            shutdown.watch(feed)
            while True:
                try:
                    items = feed.get(pipe.wait_time())
                except FeedTimeout:
                    # A WSGI server learns of a gone client only when a write
                    # fails, which can take two writes; asking saves a heartbeat.
                    if self._client_gone is not None and self._client_gone():
                        return
                    data, final = pipe.on_silence()
                else:
                    data, final = pipe.on_batch(items) if items else (pipe.on_end(), True)
                if data:
                    yield data
                if final:
                    return
        finally:
            pipe.finish("client_disconnected")


class AsyncSSEStream:
    """An async iterator of encoded SSE bytes, for ASGI servers. See :func:`async_sse_stream`.

    ``close()`` is synchronous so that frameworks which only call ``close()``
    (Django's response closers) still stop the upstream at once.
    """

    def __init__(self, source: Any, **options: Any) -> None:
        if hasattr(source, "__await__"):
            raise TypeError(
                f"expected a chunk stream, got an awaitable {type(source).__name__}; "
                "await the client call first"
            )
        self._pipeline = _Pipeline(source, **options)
        self._iterator = self._run()
        self._consumer: asyncio.Task[Any] | None = None
        self.sent_at: float | None = None
        if self._pipeline.send_timeout is not None:
            self.send_timeout = self._pipeline.send_timeout
            watchdog.watch(self)

    @property
    def headers(self) -> Mapping[str, str]:
        """The response headers of this stream's protocol."""
        return self._pipeline.wire.headers

    def __aiter__(self) -> AsyncSSEStream:
        return self

    async def __anext__(self) -> bytes:
        # The server asks for more once it has written the last piece.
        self.sent_at = None
        data = await self._iterator.__anext__()
        if self._consumer is None:
            self._consumer = asyncio.current_task()
        self.sent_at = time.monotonic()
        return data

    def suspended(self) -> bool:
        """Whether the stream waited on its upstream since the last call (then the loop ran
        other tasks, a disconnect listener among them)."""
        feed = self._pipeline.feed
        if feed is None or not feed.suspended:
            return False
        feed.suspended = False
        return True

    def stalled(self) -> None:
        """The reader froze (see :mod:`~indox_integrations.watchdog`): drop the stream.

        Runs in the watchdog's thread: on the loop, the upstream is closed and
        the task stuck sending is cancelled, so the server drops the connection.
        """
        consumer = self._consumer
        if consumer is None or consumer.done():
            return
        with contextlib.suppress(RuntimeError):  # the loop has closed
            consumer.get_loop().call_soon_threadsafe(self._drop, consumer)

    def _drop(self, consumer: asyncio.Task[Any]) -> None:
        pipe = self._pipeline
        if pipe.outcome is None:
            pipe.outcome = "client_stalled"
        self.close()
        consumer.cancel()

    async def aclose(self) -> None:
        self.sent_at = None
        await self._iterator.aclose()
        self.close()
        if self._pipeline.closing is not None:
            await self._pipeline.closing

    def close(self) -> None:
        """Stop: the upstream is closed and the outcome reported."""
        self.sent_at = None
        self._pipeline.finish("client_disconnected")

    async def _run(self) -> AsyncGenerator[bytes, None]:
        pipe = self._pipeline
        try:
            yield pipe.wrote(pipe.wire.open())
            upstream = pipe.upstream()
            feed: TaskFeed | ThreadFeed
            feed = TaskFeed(upstream) if hasattr(upstream, "__aiter__") else ThreadFeed(upstream)
            pipe.feed = feed
            feed.start()
            shutdown.watch(feed)
            while True:
                try:
                    items = await feed.aget(pipe.wait_time())
                except FeedTimeout:
                    data, final = pipe.on_silence()
                else:
                    data, final = pipe.on_batch(items) if items else (pipe.on_end(), True)
                if data:
                    yield data
                if final:
                    return
        finally:
            pipe.finish("client_disconnected")


def sse_stream(
    source: Any,
    client_gone: Callable[[], bool] | None = None,
    *,
    abort: Callable[[], None] | None = None,
    **options: Unpack[StreamOptions],
) -> SSEStream:
    """Stream an LLM client's chunks as server-sent events, for WSGI servers.

    ``source`` is a sync chunk generator (or one full response).  Options
    (:class:`StreamOptions`):

    - ``usage``: ``"skip"`` (default) or ``"attach"`` (a final ``event: usage``);
    - ``on_usage``: always receives the normalized usage, also after an early stop;
    - ``on_complete``: receives a :class:`StreamReport`;
    - ``heartbeat``: seconds of silence before a ``: ping`` comment (15; ``None``: off);
    - ``idle_timeout``: seconds without a chunk before a ``timeout`` error event
      (300; ``None``: off);
    - ``expose_errors``: put the exception text into error events (off: no
      secrets leak; the traceback is always logged);
    - ``protocol``: the wire, ``"indox"`` (default), ``"openai"`` or ``"ai-sdk"``
      (see :mod:`indox_integrations.protocols`);
    - ``send_timeout``: seconds a write may make no progress (a reader that
      stopped reading) before the stream is dropped, outcome ``client_stalled``
      (30; ``None``: off);
    - ``shutdown_grace``: seconds an open stream may go on once the server is
      told to stop (SIGTERM), before it ends with a ``shutdown`` error (5);
    - ``context``: any value, carried on the :class:`StreamReport` and the log
      record (``indox_context``): who asked, for per-user billing.

    ``client_gone``, when given, is asked during silences whether the client
    has left (see :func:`indox_integrations.wsgi.client_gone`); ``abort``
    drops the connection of a frozen reader (:func:`indox_integrations.wsgi.abort`).

        for data in sse_stream(client.completion(prompt, stream=True, return_generator=True)):
            write(data)
    """
    return SSEStream(source, client_gone, abort=abort, **options)


def async_sse_stream(source: Any, **options: Unpack[StreamOptions]) -> AsyncSSEStream:
    """Like :func:`sse_stream`, for ASGI servers; ``source`` may be sync or async.

    A sync source runs in a thread of its own, so it never blocks the event
    loop; cancelling the consumer closes the upstream.

        async for data in async_sse_stream(await client.chat(messages, stream=True)):
            await send(data)
    """
    return AsyncSSEStream(source, **options)
