"""Resumable streams: the generation runs apart from the connection; every response reads it.

- The **producer** is the pipeline (:mod:`~indox_integrations.stream`) of one generation,
  in a thread of its own (sync servers) or an asyncio task (async servers) of the process
  that took the POST, never tied to a response.  It appends each batch of event blocks to
  the **store** (heartbeats are not stored), renews its **lease** while the model is
  silent, checks for a cancel every 0.2 s, and finishes the stream as done, failed or
  cancelled.
- Every response is a **reader**: the POST's own reply and each resume (GET) replay the
  store after their position, then follow it live; every event goes out with its ``id:``,
  heartbeats fill silences.  A reader that finds the lease lapsed (the producer's
  process died) ends with a ``producer_lost`` error and the end marker.
- While it reads, a reader keeps an *attached* mark in the store; once nobody has been
  attached for ``detach_timeout`` seconds, the producer cancels the generation.
- With a shared store (Redis), the producer also keeps what it made in this process's
  memory (a *tail*): readers in this process (the POST's own) follow the tail, which
  costs no round trip and goes on when the shared store goes away mid-stream.

The skins call :func:`begin` before they call the LLM client (a store that cannot be
reached is a 503, and the client is never called), then :meth:`Launch.start` (a thread)
or :meth:`Launch.start_task` (a task) with the client's stream, and :func:`resume`,
:func:`cancel` and :func:`resume_chat` for the resume routes; each of those has an
``a``-prefixed twin for asyncio.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import inspect
import json
import logging
import math
import threading
import time
from collections import deque
from collections.abc import (
    AsyncGenerator,
    AsyncIterator,
    Awaitable,
    Callable,
    Iterator,
    Mapping,
)
from dataclasses import dataclass
from typing import Any, cast
from urllib.parse import quote

from .concurrency import keep_running
from .overload import RETRY_AFTER
from .protocols import Reply, StreamProtocol, get_protocol
from .sse import encode_comment
from .stores import (
    Entry,
    EventsLost,
    MemoryStore,
    ProducerLost,
    Status,
    Store,
    StoreError,
    StoreUnavailable,
    StreamInfo,
    StreamNotFound,
    parse_event_id,
)
from .stream import AsyncSSEStream, Outcome, SSEStream, StreamOptions

__all__ = [
    "DETACH_TIMEOUT",
    "EXPOSED_HEADERS",
    "Launch",
    "Owner",
    "Resumable",
    "ResumableOptions",
    "Served",
    "abegin",
    "acancel",
    "aresume",
    "aresume_chat",
    "begin",
    "cancel",
    "chat_id_of",
    "configure",
    "default_store",
    "resume",
    "resume_chat",
    "resume_url",
    "standalone",
]

logger = logging.getLogger("indox_integrations")

DETACH_TIMEOUT = 30.0
TICK = 0.2
"""The producer looks at the store at least this often: a cancel stops it within 0.5 s."""
EXPOSED_HEADERS = "Indox-Stream-Id, Indox-Resume-Url"
CANCELLED = "the stream was cancelled"
_OPEN = encode_comment("stream open")

Owner = Callable[[Any], "str | None | Awaitable[str | None]"]
"""A function of the framework's request: who started the stream (a user id, a session)."""


class ResumableOptions(StreamOptions, total=False):
    """The stream options, plus those of resumable mode (see :func:`configure`)."""

    resumable: bool
    store: Store | None
    detach_timeout: float
    owner: Owner | str | None


_RESUME_KEYS = ("resumable", "store", "detach_timeout", "owner")


@dataclass(frozen=True)
class Resumable:
    """How a router, blueprint or view serves resumable streams."""

    store: Store
    detach_timeout: float = DETACH_TIMEOUT
    owner: Owner | str | None = None

    def owner_of(self, request: Any) -> str | None:
        """Who the request speaks for: ``owner(request)``, or ``owner`` itself when a str."""
        owner = self.owner
        if owner is None or isinstance(owner, str):
            return owner
        return _checked_owner(owner(request))

    async def aowner_of(self, request: Any) -> str | None:
        """:meth:`owner_of` for asyncio: an ``async def`` owner is awaited."""
        owner = self.owner
        if owner is None or isinstance(owner, str):
            return owner
        value = owner(request)
        return _checked_owner(await value if inspect.isawaitable(value) else value)


def _checked_owner(value: Any) -> str | None:
    """An owner function's answer, which must be a str or None."""
    if value is not None and not isinstance(value, str):
        raise TypeError(f"owner() must return a str or None, got {type(value).__name__}")
    return value


_default: list[MemoryStore] = []
_default_lock = threading.Lock()


def default_store() -> MemoryStore:
    """The process-wide :class:`~indox_integrations.stores.MemoryStore` of ``resumable=True``."""
    with _default_lock:
        if not _default:
            _default.append(MemoryStore())
        return _default[0]


def configure(options: Any) -> Resumable | None:
    """Take ``resumable``, ``store``, ``detach_timeout`` and ``owner`` out of ``options``
    (a skin's keyword arguments, a dict).

    ``None`` unless ``resumable`` is true; the other three need it.  ``store`` defaults
    to :func:`default_store` (one process: use a ``RedisStore`` for several workers),
    ``detach_timeout`` to 30 s, and ``owner`` (a function of the request, returning who
    started the stream) is checked on resume and cancel.
    """
    given = {key: options.pop(key) for key in _RESUME_KEYS if key in options}
    if not given.pop("resumable", False):
        if given:
            raise TypeError(f"{', '.join(sorted(given))} need resumable=True")
        return None
    store = given.get("store")
    if store is None:
        store = default_store()
    elif not all(hasattr(store, name) for name in ("create", "aread", "attach")):
        raise TypeError(
            f"store must be a MemoryStore, a RedisStore or a store like them, "
            f"got {type(store).__name__}"
        )
    detach = given.get("detach_timeout", DETACH_TIMEOUT)
    if isinstance(detach, bool) or not isinstance(detach, (int, float)) or not detach > 0:
        raise ValueError(f"detach_timeout must be a positive number of seconds, got {detach!r}")
    owner = given.get("owner")
    if owner is not None and not (isinstance(owner, str) or callable(owner)):
        raise TypeError(f"owner must be a function of the request, got {type(owner).__name__}")
    return Resumable(store, float(detach), owner)


def standalone(
    resumable: Resumable | None, store: Any, detach_timeout: float, owner: Any
) -> Resumable:
    """What standalone resume routes serve: ``resumable``, or one made of the options
    (``resumable=True`` implied), checked as :func:`configure` checks them."""
    if resumable is not None:
        return resumable
    given = {"store": store, "detach_timeout": detach_timeout, "owner": owner}
    made = configure({**given, "resumable": True})
    assert made is not None
    return made


def resume_url(request_path: str, route_path: str | None, stream_id: str) -> str:
    """``{prefix}/streams/{stream_id}``: ``prefix`` is ``request_path`` less ``route_path``,
    or less its last segment when ``route_path`` is not given."""
    path = request_path.rstrip("/")
    route = (route_path or "").rstrip("/")
    prefix = path[: -len(route)] if route and path.endswith(route) else path.rpartition("/")[0]
    return f"{prefix}/streams/{quote(stream_id, safe='')}"


def chat_id_of(body: bytes) -> str | None:
    """The chat ``id`` of an AI SDK request body (``DefaultChatTransport`` sends one)."""
    try:
        data = json.loads(body)
    except ValueError:
        return None
    chat_id = data.get("id") if isinstance(data, dict) else None
    return chat_id if isinstance(chat_id, str) and 0 < len(chat_id) <= 200 else None


def _chat_alias(owner: str | None, chat_id: str) -> str:
    return f"chat:{quote(owner or '', safe='')}:{chat_id}"


@dataclass(frozen=True)
class Served:
    """A reader, ready to send: the response headers and the body."""

    headers: Mapping[str, str]
    body: Any
    """``Iterator[bytes]`` (the sync functions) or ``AsyncIterator[bytes]``."""


def _error(status: int, kind: str, message: str, **headers: str) -> Reply:
    return Reply(status, {"error": {"type": kind, "message": message}}, headers)


_NOT_FOUND = _error(404, "not_found", "unknown or expired stream")


def _unavailable(exc: BaseException) -> Reply:
    logger.warning("the stream store is unavailable: %s", exc)
    message = "the stream store is unavailable"
    return _error(503, "store_unavailable", message, **{"Retry-After": "1"})


def _encoder(options: Mapping[str, Any]) -> StreamProtocol:
    protocol = options.get("protocol", "indox")
    if isinstance(protocol, StreamProtocol):
        return protocol
    return get_protocol(protocol)(attach_usage=options.get("usage", "skip") == "attach")


def _stream_headers(protocol: type[StreamProtocol]) -> dict[str, str]:
    return {**protocol.headers, "Access-Control-Expose-Headers": EXPOSED_HEADERS}


# The producer's copy of what it made, for readers in this process when the store is away.
_TAIL = MemoryStore(ttl=600.0)
_tails: dict[str, str] = {}
_tails_lock = threading.Lock()


def _tail_of(stream_id: str) -> str | None:
    with _tails_lock:
        return _tails.get(stream_id)


# Starting a stream.


class Launch:
    """A stream created in the store, before the client is called: start it or abandon it.

    :meth:`start` runs the generation in a thread (sync servers), :meth:`start_task`
    in a task of the running loop (async servers)."""

    def __init__(self, resumable: Resumable, stream_id: str) -> None:
        self.resumable = resumable
        self.stream_id = stream_id

    def _prepare(
        self, options: Mapping[str, Any], url: str
    ) -> tuple[_Producer, dict[str, Any], dict[str, str]]:
        encoder = _encoder(options)
        producer = _Producer(self.resumable, self.stream_id, encoder)
        stream_options = dict(options)
        stream_options["protocol"] = encoder
        # The pipeline's heartbeat is the producer's tick (ticks are not stored); readers
        # send the heartbeats the options ask for.
        stream_options["heartbeat"] = TICK
        stream_options["send_timeout"] = None
        on_complete = options.get("on_complete")

        def completed(report: Any) -> Any:
            producer.outcome = report.outcome
            return None if on_complete is None else on_complete(report)

        stream_options["on_complete"] = completed
        headers = {
            **_stream_headers(type(encoder)),
            "Indox-Stream-Id": self.stream_id,
            "Indox-Resume-Url": url,
        }
        return producer, stream_options, headers

    def start(
        self,
        source: Any,
        options: Mapping[str, Any],
        url: str,
        *,
        wrap: Callable[[Callable[[], None]], Callable[[], None]] | None = None,
        client_gone: Callable[[], bool] | None = None,
    ) -> Served | Reply:
        """Run the generation in a thread of its own; the POST's reply reads it back.

        ``url`` is the resume URL (see :func:`resume_url`); ``wrap`` wraps the thread's
        function (Flask: ``copy_current_request_context``); ``client_gone`` is the WSGI probe.
        A process at its thread limit gets a 503 instead, the upstream closed.
        """
        producer, stream_options, headers = self._prepare(options, url)
        stream = SSEStream(source, **stream_options)
        with contextlib.suppress(StoreError):
            self.resumable.store.attach(self.stream_id, self.resumable.detach_timeout)
        run: Callable[[], None] = lambda: producer.run(stream)  # noqa: E731
        if wrap is not None:
            run = wrap(run)
        context = contextvars.copy_context()
        thread = threading.Thread(
            target=context.run, args=(run,), name="indox-producer", daemon=True
        )
        try:
            thread.start()
        except RuntimeError as exc:
            logger.error("stream %s: could not start its producer: %s", self.stream_id, exc)
            _end_as(stream, "upstream_error")
            stream.close()
            producer._end_tail("failed")
            self.abandon()
            message = f"no thread could be started for the stream ({exc})"
            return _error(503, "overloaded", message, **{"Retry-After": str(RETRY_AFTER)})
        reader = _Reader(self.resumable, self.stream_id, producer.reader_wire(), options)
        return Served(headers, reader.follow(None, client_gone))

    def start_task(self, source: Any, options: Mapping[str, Any], url: str) -> Served:
        """Run the generation in a task of the running loop; the POST's reply reads it back.

        Call it on the loop (the reader attaches itself as soon as it is sent).
        """
        producer, stream_options, headers = self._prepare(options, url)
        stream = AsyncSSEStream(source, **stream_options)
        keep_running(asyncio.get_running_loop().create_task(producer.arun(stream)))
        reader = _Reader(self.resumable, self.stream_id, producer.reader_wire(), options)
        return Served(headers, reader.afollow(None))

    def abandon(self) -> None:
        """The client failed before streaming: the stream ends as failed."""
        with contextlib.suppress(StoreError):
            self.resumable.store.finish(self.stream_id, "failed")

    async def aabandon(self) -> None:
        with contextlib.suppress(StoreError):
            await self.resumable.store.afinish(self.stream_id, "failed")


def begin(resumable: Resumable, owner: str | None, *, chat_id: str | None = None) -> Launch | Reply:
    """Create the stream (before calling the client): a :class:`Launch`, or a 503 reply."""
    alias = None if chat_id is None else _chat_alias(owner, chat_id)
    try:
        return Launch(resumable, resumable.store.create(owner, alias=alias))
    except StoreError as exc:
        return _unavailable(exc)


async def abegin(
    resumable: Resumable, owner: str | None, *, chat_id: str | None = None
) -> Launch | Reply:
    """:func:`begin` for asyncio."""
    alias = None if chat_id is None else _chat_alias(owner, chat_id)
    try:
        return Launch(resumable, await resumable.store.acreate(owner, alias=alias))
    except StoreError as exc:
        return _unavailable(exc)


def _blocks(data: bytes) -> list[bytes]:
    """The event blocks in a piece of the pipeline's output, comments (heartbeats) left out."""
    blocks = []
    for part in data.split(b"\n\n"):
        if part and not all(line.startswith(b":") for line in part.split(b"\n")):
            blocks.append(part + b"\n\n")
    return blocks


class _Producer:
    """Writes one generation's blocks to the store; watches for a cancel and for readers."""

    def __init__(self, resumable: Resumable, stream_id: str, wire: StreamProtocol) -> None:
        self.store = resumable.store
        self.stream_id = stream_id
        self.wire = wire
        self.detach = resumable.detach_timeout
        self.outcome: Outcome | None = None
        self.tail: str | None = None
        if not isinstance(self.store, MemoryStore):
            self.tail = _TAIL.create()
            with _tails_lock:
                _tails[stream_id] = self.tail
        self.pending: deque[list[bytes]] = deque()
        self.written = 0
        self.lost = False
        """The store lost the stream (or was away longer than a lease): write no more."""
        self.lost_at = 0.0
        self.down_since: float | None = None
        now = time.monotonic()
        self.tried = self.polled = self.renewed = self.looked = now

    def reader_wire(self) -> StreamProtocol:
        """A fresh encoder of the same protocol, for what a reader adds (heartbeats, errors)."""
        return type(self.wire)()

    # What happens after each piece (the same for the thread and the task).

    def _keep(self, blocks: list[bytes]) -> None:
        if self.tail is not None:
            _TAIL.append(self.tail, blocks)
        if not self.lost:
            self.pending.append(blocks)

    def _appended(self, entry_id: str) -> None:
        self.pending.popleft()
        self.written += 1
        self.renewed = time.monotonic()
        self.down_since = None
        if entry_id != str(self.written):
            # A write that failed on the way back was made after all: ids no longer match.
            self._lose("its entry ids no longer match the producer's")

    def _lose(self, why: str) -> None:
        if not self.lost:
            logger.warning("stream %s: the store %s; writing on locally", self.stream_id, why)
            self.lost = True
            self.lost_at = time.monotonic()
        self.pending.clear()

    def _away(self, exc: StoreError, now: float) -> None:
        if isinstance(exc, StoreUnavailable) and self.tail is not None:
            if self.down_since is None:
                self.down_since = now
            elif now - self.down_since > self.store.lease:
                self._lose(f"has been away for more than {self.store.lease:g} s")
        else:
            self._lose(f"failed: {exc}")

    def _due(self, now: float) -> tuple[bool, bool, bool, bool]:
        """Whether to flush, to poll for a cancel, to renew the lease, to look for readers."""
        flush = bool(self.pending) and (self.down_since is None or now - self.tried >= 1.0)
        if flush:
            self.tried = now
        poll = now - self.polled >= TICK
        if poll:
            self.polled = now
        renew = poll and now - self.renewed >= self.store.lease / 3
        if renew:
            self.renewed = now
            if self.tail is not None:
                _TAIL.renew(self.tail)
        look = poll and now - self.looked >= min(1.0, self.detach / 4)
        if look:
            self.looked = now
        return flush, poll, renew, look

    def _local(self, now: float) -> tuple[bool, bool]:
        """Cancelled, and read, as this process knows it (readers here of the tail)."""
        if self.tail is None:
            return False, False
        read = _TAIL.attached(self.tail) or now - self.lost_at < self.detach
        return _TAIL.cancelled(self.tail), read

    def _status(self) -> Status:
        if self.outcome == "completed":
            return "done"
        return "cancelled" if self.outcome == "cancelled" else "failed"

    def _end_tail(self, status: Status) -> None:
        if self.tail is not None:
            with contextlib.suppress(StoreError):
                _TAIL.finish(self.tail, status)
            with _tails_lock:
                _tails.pop(self.stream_id, None)

    # The thread.

    def run(self, stream: SSEStream) -> None:
        status: Status = "failed"
        try:
            for data in stream:
                blocks = _blocks(data)
                if blocks:
                    self._keep(blocks)
                stop = self._check()
                if stop is not None:
                    _end_as(stream, "cancelled")
                    stream.close()
                    self._keep(_blocks(self.wire.error("cancelled", stop)))
                    break
            status = self._status()
        except Exception:
            logger.exception("stream %s: the producer failed", self.stream_id)
        finally:
            stream.close()
            try:
                self._finish(status)
            except Exception:
                logger.exception("stream %s: finishing it in the store failed", self.stream_id)

    def _check(self) -> str | None:
        """Flush, renew, look for a cancel and for readers: why to stop, if it must."""
        now = time.monotonic()
        flush, poll, renew, look = self._due(now)
        if not poll and not flush:
            return None
        cancelled, read_here = self._local(now)
        if cancelled:
            return CANCELLED
        store = self.store
        try:
            while flush and self.pending:
                self._appended(store.append(self.stream_id, self.pending[0]))
            if self.lost or not poll:
                return None if read_here or not look else self._unread()
            if renew:
                store.renew(self.stream_id)
            if store.cancelled(self.stream_id):
                return CANCELLED
            if look and not read_here and not store.attached(self.stream_id):
                return self._unread()
        except StoreError as exc:
            self._away(exc, now)
        return None

    def _unread(self) -> str:
        return f"nobody read the stream for {self.detach:g} s"

    def _finish(self, status: Status) -> None:
        self._end_tail(status)
        deadline = time.monotonic() + self.store.lease
        while not self.lost:
            try:
                while self.pending:
                    self._appended(self.store.append(self.stream_id, self.pending[0]))
                self.store.finish(self.stream_id, status)
                return
            except StoreUnavailable:
                if time.monotonic() > deadline:
                    self._lose(f"has been away for more than {self.store.lease:g} s")
                time.sleep(0.25)
            except StoreError as exc:
                self._lose(f"failed: {exc}")

    # The task.

    async def arun(self, stream: AsyncSSEStream) -> None:
        status: Status = "failed"
        try:
            async for data in stream:
                blocks = _blocks(data)
                if blocks:
                    self._keep(blocks)
                stop = await self._acheck()
                if stop is not None:
                    _end_as(stream, "cancelled")
                    await stream.aclose()
                    self._keep(_blocks(self.wire.error("cancelled", stop)))
                    break
            status = self._status()
        except Exception:
            logger.exception("stream %s: the producer failed", self.stream_id)
        finally:
            await stream.aclose()
            try:
                await self._afinish(status)
            except Exception:
                logger.exception("stream %s: finishing it in the store failed", self.stream_id)

    async def _acheck(self) -> str | None:
        now = time.monotonic()
        flush, poll, renew, look = self._due(now)
        if not poll and not flush:
            return None
        cancelled, read_here = self._local(now)
        if cancelled:
            return CANCELLED
        store = self.store
        try:
            while flush and self.pending:
                self._appended(await store.aappend(self.stream_id, self.pending[0]))
            if self.lost or not poll:
                return None if read_here or not look else self._unread()
            if renew:
                await store.arenew(self.stream_id)
            if await store.acancelled(self.stream_id):
                return CANCELLED
            if look and not read_here and not await store.aattached(self.stream_id):
                return self._unread()
        except StoreError as exc:
            self._away(exc, now)
        return None

    async def _afinish(self, status: Status) -> None:
        self._end_tail(status)
        deadline = time.monotonic() + self.store.lease
        while not self.lost:
            try:
                while self.pending:
                    self._appended(await self.store.aappend(self.stream_id, self.pending[0]))
                await self.store.afinish(self.stream_id, status)
                return
            except StoreUnavailable:
                if time.monotonic() > deadline:
                    self._lose(f"has been away for more than {self.store.lease:g} s")
                await asyncio.sleep(0.25)
            except StoreError as exc:
                self._lose(f"failed: {exc}")


def _end_as(stream: SSEStream | AsyncSSEStream, outcome: Outcome) -> None:
    # The pipeline reports the first outcome set; close() alone would say the client left.
    pipeline = stream._pipeline
    if pipeline.outcome is None:
        pipeline.outcome = outcome


# Reading.


class _Reader:
    """One response's view of a stream: replay after a position, follow, end cleanly."""

    def __init__(
        self,
        resumable: Resumable,
        stream_id: str,
        wire: StreamProtocol,
        options: Mapping[str, Any],
    ) -> None:
        self.resumable = resumable
        self.stream_id = stream_id
        self.wire = wire
        heartbeat = options.get("heartbeat", 15.0)
        self.heartbeat: float | None = heartbeat
        detach = resumable.detach_timeout
        self.touch_every = detach / 3
        self.tick = min(heartbeat or math.inf, self.touch_every, 5.0)

    def _sources(self) -> Iterator[tuple[Any, str]]:
        """This process's tail of the stream while it makes it here, then the shared store.

        The tail holds the same entries under the same ids, costs no round trip, and
        goes on when the shared store goes away.
        """
        tail = _tail_of(self.stream_id)
        if tail is not None:
            yield _TAIL, tail
        yield self.resumable.store, self.stream_id

    def _failed(self, exc: StoreError) -> bytes:
        if isinstance(exc, ProducerLost):
            return self.wire.error("producer_lost", "the process making this stream stopped")
        if isinstance(exc, EventsLost):
            return self.wire.error("events_lost", "events after this position have expired")
        if isinstance(exc, StreamNotFound):
            return self.wire.error("stream_not_found", "the stream is gone from the store")
        logger.warning("stream %s: reading it failed: %s", self.stream_id, exc)
        return self.wire.error("store_unavailable", "the stream store is unavailable")

    def follow(
        self, after: str | None, client_gone: Callable[[], bool] | None = None
    ) -> Iterator[bytes]:
        yield _OPEN
        position = after
        last_write = time.monotonic()
        error: StoreError | None = None
        for store, key in self._sources():
            try:
                store.attach(key, self.resumable.detach_timeout)
                touched = time.monotonic()
                with contextlib.closing(store.read(key, position, idle=self.tick)) as entries:
                    for entry in entries:
                        now = time.monotonic()
                        if now - touched >= self.touch_every:
                            touched = now
                            store.attach(key, self.resumable.detach_timeout)
                        if entry.blocks:
                            position = entry.event_ids()[-1]
                            last_write = now
                            yield entry.wire()
                        elif client_gone is not None and client_gone():
                            return
                        elif self.heartbeat is not None and now - last_write >= self.heartbeat:
                            last_write = now
                            yield self.wire.ping()
                return
            except (StoreUnavailable, StreamNotFound) as exc:
                error = exc
            except StoreError as exc:
                yield self._failed(exc)
                return
        assert error is not None
        yield self._failed(error)

    async def afollow(self, after: str | None) -> AsyncIterator[bytes]:
        yield _OPEN
        position = after
        last_write = time.monotonic()
        error: StoreError | None = None
        for store, key in self._sources():
            try:
                await store.aattach(key, self.resumable.detach_timeout)
                touched = time.monotonic()
                entries = cast(
                    AsyncGenerator[Entry, None], store.aread(key, position, idle=self.tick)
                )
                async with contextlib.aclosing(entries):
                    async for entry in entries:
                        now = time.monotonic()
                        if now - touched >= self.touch_every:
                            touched = now
                            await store.aattach(key, self.resumable.detach_timeout)
                        if entry.blocks:
                            position = entry.event_ids()[-1]
                            last_write = now
                            yield entry.wire()
                        elif self.heartbeat is not None and now - last_write >= self.heartbeat:
                            last_write = now
                            yield self.wire.ping()
                return
            except (StoreUnavailable, StreamNotFound) as exc:
                error = exc
            except StoreError as exc:
                yield self._failed(exc)
                return
        assert error is not None
        yield self._failed(error)


# The resume routes.


def _position(last_event_id: str | None) -> str | Reply | None:
    if not last_event_id:
        return None
    try:
        parse_event_id(last_event_id)
    except ValueError as exc:
        return _error(400, "bad_request", f"Last-Event-ID: {exc}")
    return last_event_id.strip()


def _visible(info: StreamInfo | None, owner: str | None) -> bool:
    return info is not None and (info.owner is None or info.owner == owner)


def _local_info(stream_id: str) -> StreamInfo | None:
    tail = _tail_of(stream_id)
    return None if tail is None else _TAIL.info(tail)


def resume(
    resumable: Resumable,
    stream_id: str,
    *,
    owner: str | None,
    last_event_id: str | None,
    protocol: str = "indox",
    options: Mapping[str, Any] | None = None,
    client_gone: Callable[[], bool] | None = None,
) -> Served | Reply:
    """``GET {prefix}/streams/{id}``: the events after ``last_event_id``, then live.

    404 for an unknown, expired or someone else's stream, 400 for a malformed
    ``Last-Event-ID``, 503 when the store is away (and the stream is not made here).
    """
    position = _position(last_event_id)
    if isinstance(position, Reply):
        return position
    try:
        info = resumable.store.info(stream_id)
    except StoreError as exc:
        info = _local_info(stream_id)
        if info is None:
            return _unavailable(exc)
    if not _visible(info, owner):
        return _NOT_FOUND
    return _served(resumable, stream_id, protocol, options, position, client_gone)


async def aresume(
    resumable: Resumable,
    stream_id: str,
    *,
    owner: str | None,
    last_event_id: str | None,
    protocol: str = "indox",
    options: Mapping[str, Any] | None = None,
) -> Served | Reply:
    """:func:`resume` for asyncio."""
    position = _position(last_event_id)
    if isinstance(position, Reply):
        return position
    try:
        info = await resumable.store.ainfo(stream_id)
    except StoreError as exc:
        info = _local_info(stream_id)
        if info is None:
            return _unavailable(exc)
    if not _visible(info, owner):
        return _NOT_FOUND
    return _served(resumable, stream_id, protocol, options, position, None, asynchronous=True)


def _served(
    resumable: Resumable,
    stream_id: str,
    protocol: str,
    options: Mapping[str, Any] | None,
    position: str | None,
    client_gone: Callable[[], bool] | None,
    *,
    asynchronous: bool = False,
) -> Served:
    cls = get_protocol(protocol)
    reader = _Reader(resumable, stream_id, cls(), options or {})
    headers = {**_stream_headers(cls), "Indox-Stream-Id": stream_id}
    body = reader.afollow(position) if asynchronous else reader.follow(position, client_gone)
    return Served(headers, body)


def resume_chat(
    resumable: Resumable,
    chat_id: str,
    *,
    owner: str | None,
    options: Mapping[str, Any] | None = None,
    client_gone: Callable[[], bool] | None = None,
) -> Served | Reply:
    """The AI SDK's ``GET {prefix}/chat/{chatId}/stream``: the chat's running stream from
    its start, or 204 when none runs."""
    try:
        stream_id = resumable.store.resolve(_chat_alias(owner, chat_id))
        info = None if stream_id is None else resumable.store.info(stream_id)
    except StoreError as exc:
        return _unavailable(exc)
    if stream_id is None or info is None or info.status != "running":
        return Reply(204, None)
    return resume(
        resumable, stream_id, owner=owner, last_event_id=None, protocol="ai-sdk",
        options=options, client_gone=client_gone,
    )  # fmt: skip


async def aresume_chat(
    resumable: Resumable,
    chat_id: str,
    *,
    owner: str | None,
    options: Mapping[str, Any] | None = None,
) -> Served | Reply:
    """:func:`resume_chat` for asyncio."""
    try:
        stream_id = await resumable.store.aresolve(_chat_alias(owner, chat_id))
        info = None if stream_id is None else await resumable.store.ainfo(stream_id)
    except StoreError as exc:
        return _unavailable(exc)
    if stream_id is None or info is None or info.status != "running":
        return Reply(204, None)
    return await aresume(
        resumable, stream_id, owner=owner, last_event_id=None, protocol="ai-sdk", options=options
    )


def cancel(resumable: Resumable, stream_id: str, *, owner: str | None) -> Reply:
    """``DELETE {prefix}/streams/{id}``: 204 once asked (the producer stops within 0.5 s), 404."""
    tail = _tail_of(stream_id)
    try:
        info = resumable.store.info(stream_id)
        if _visible(info, owner):
            resumable.store.cancel(stream_id)
    except StoreError as exc:
        info = _local_info(stream_id)
        if info is None:
            return _unavailable(exc)
    if not _visible(info, owner):
        return _NOT_FOUND
    if tail is not None:
        _TAIL.cancel(tail)
    return Reply(204, None)


async def acancel(resumable: Resumable, stream_id: str, *, owner: str | None) -> Reply:
    """:func:`cancel` for asyncio."""
    tail = _tail_of(stream_id)
    try:
        info = await resumable.store.ainfo(stream_id)
        if _visible(info, owner):
            await resumable.store.acancel(stream_id)
    except StoreError as exc:
        info = _local_info(stream_id)
        if info is None:
            return _unavailable(exc)
    if not _visible(info, owner):
        return _NOT_FOUND
    if tail is not None:
        _TAIL.cancel(tail)
    return Reply(204, None)
