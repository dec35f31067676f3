"""The embedded store: streams in this process's memory, for one process."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Iterator, Sequence

from . import (
    Entry,
    EventsLost,
    ProducerLost,
    Status,
    StoreError,
    StreamInfo,
    StreamNotFound,
    _check_blocks,
    _check_final,
    _position,
    new_stream_id,
)

__all__ = ["MemoryStore"]

_SWEEP_EVERY = 1.0


class _Stream:
    __slots__ = (
        "cancel_requested", "changed", "entries", "expires", "last", "lease_until", "owner",
        "reader_until", "status", "waiters",
    )  # fmt: skip

    def __init__(self, owner: str | None, maxlen: int, lock: threading.Lock) -> None:
        self.owner = owner
        self.status: Status = "running"
        self.entries: deque[tuple[bytes, ...]] = deque(maxlen=maxlen)
        self.last = 0
        self.lease_until = 0.0
        self.expires = 0.0
        self.cancel_requested = False
        self.reader_until = 0.0
        self.changed = threading.Condition(lock)
        self.waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = []


class MemoryStore:
    """Streams in this process's memory: thread-safe, and usable from event loops.

    Readers may be threads (``read``) and asyncio tasks (``aread``) at once; a
    producer's append wakes them at once.  Each stream keeps at most ``maxlen``
    entries (the oldest go first) and expires ``ttl`` seconds after its last write
    or its end.  It cannot serve several worker processes: use ``RedisStore``.

        store = MemoryStore()
        stream_id = store.create(owner="user-1")
        store.append(stream_id, [b"data: hi\\n\\n"])
        store.finish(stream_id, "done")
        [entry.wire() for entry in store.read(stream_id)]  # [b"id: 1:0\\ndata: hi\\n\\n"]
    """

    def __init__(self, *, maxlen: int = 10_000, ttl: float = 3600.0, lease: float = 8.0) -> None:
        if maxlen < 1 or ttl <= 0 or lease <= 0:
            raise ValueError(
                f"expected maxlen >= 1, ttl > 0 and lease > 0, got {maxlen!r}, {ttl!r}, {lease!r}"
            )
        self.maxlen = maxlen
        self.ttl = ttl
        self.lease = lease
        self._lock = threading.Lock()
        self._streams: dict[str, _Stream] = {}
        self._aliases: dict[str, tuple[str, float]] = {}
        self._swept = time.monotonic()

    def __len__(self) -> int:
        """How many streams are held (expired ones may linger until the next sweep)."""
        return len(self._streams)

    # Helpers, called with the lock held.

    def _sweep(self, now: float) -> None:
        if now - self._swept < _SWEEP_EVERY:
            return
        self._swept = now
        for stream_id in [k for k, s in self._streams.items() if s.expires <= now]:
            del self._streams[stream_id]
        for alias in [k for k, (_, expires) in self._aliases.items() if expires <= now]:
            del self._aliases[alias]

    def _get(self, stream_id: str, now: float) -> _Stream:
        stream = self._streams.get(stream_id)
        if stream is None or stream.expires <= now:
            raise StreamNotFound(f"no stream {stream_id!r}")
        return stream

    def _touch(self, stream: _Stream, now: float) -> None:
        stream.lease_until = now + self.lease
        stream.expires = now + self.ttl

    def _wake(self, stream: _Stream) -> None:
        stream.changed.notify_all()
        waiters, stream.waiters = stream.waiters, []
        for loop, future in waiters:
            # A closed loop (its server stopped) has nobody left to wake.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(_resolve, future)

    def _step(
        self, stream_id: str, stream: _Stream, position: int, skip: int, now: float
    ) -> tuple[list[Entry], int, bool, float]:
        """Entries after ``position``, the new position, whether the read is over, and
        how long to wait for more."""
        if stream.expires <= now:
            raise StreamNotFound(f"stream {stream_id!r} expired")
        if stream.last > position:
            first = stream.last - len(stream.entries) + 1
            if first > position + 1:
                raise EventsLost(
                    f"stream {stream_id!r} keeps entries from {first}, the reader is at {position}"
                )
            batch = []
            for seq in range(position + 1, stream.last + 1):
                blocks = stream.entries[seq - first]
                start = skip if seq == position + 1 else 0
                if start < len(blocks):
                    batch.append(Entry(str(seq), blocks[start:], start))
            return batch, stream.last, False, 0.0
        if stream.status != "running":
            return [], position, True, 0.0
        if stream.lease_until <= now:
            raise ProducerLost(f"the producer of stream {stream_id!r} stopped renewing its lease")
        return [], position, False, stream.lease_until - now

    # The blocking half.

    def create(self, owner: str | None = None, *, alias: str | None = None) -> str:
        stream_id = new_stream_id()
        now = time.monotonic()
        with self._lock:
            self._sweep(now)
            stream = _Stream(owner, self.maxlen, self._lock)
            self._touch(stream, now)
            self._streams[stream_id] = stream
            if alias is not None:
                self._aliases[alias] = (stream_id, now + self.ttl)
        return stream_id

    def append(self, stream_id: str, blocks: Sequence[bytes]) -> str:
        entry = _check_blocks(blocks)
        now = time.monotonic()
        with self._lock:
            stream = self._get(stream_id, now)
            if stream.status != "running":
                raise StoreError(f"stream {stream_id!r} has finished ({stream.status})")
            stream.entries.append(entry)
            stream.last += 1
            self._touch(stream, now)
            self._wake(stream)
            return str(stream.last)

    def renew(self, stream_id: str) -> None:
        now = time.monotonic()
        with self._lock:
            stream = self._get(stream_id, now)
            if stream.status == "running":
                self._touch(stream, now)
                self._wake(stream)

    def finish(self, stream_id: str, status: Status) -> None:
        _check_final(status)
        now = time.monotonic()
        with self._lock:
            stream = self._get(stream_id, now)
            if stream.status == "running":
                stream.status = status
                stream.expires = now + self.ttl
                self._wake(stream)

    def cancel(self, stream_id: str) -> bool:
        now = time.monotonic()
        with self._lock:
            try:
                stream = self._get(stream_id, now)
            except StreamNotFound:
                return False
            stream.cancel_requested = True
            return True

    def cancelled(self, stream_id: str) -> bool:
        with self._lock:
            stream = self._streams.get(stream_id)
            return stream is not None and stream.cancel_requested

    def attach(self, stream_id: str, seconds: float) -> None:
        now = time.monotonic()
        with self._lock:
            stream = self._streams.get(stream_id)
            if stream is not None:
                stream.reader_until = max(stream.reader_until, now + seconds)

    def attached(self, stream_id: str) -> bool:
        with self._lock:
            stream = self._streams.get(stream_id)
            return stream is not None and stream.reader_until > time.monotonic()

    def info(self, stream_id: str) -> StreamInfo | None:
        now = time.monotonic()
        with self._lock:
            self._sweep(now)
            try:
                stream = self._get(stream_id, now)
            except StreamNotFound:
                return None
            producing = stream.status == "running" and stream.lease_until > now
            return StreamInfo(stream.status, stream.owner, producing, stream.cancel_requested)

    def resolve(self, alias: str) -> str | None:
        now = time.monotonic()
        with self._lock:
            found = self._aliases.get(alias)
            return found[0] if found is not None and found[1] > now else None

    def read(
        self, stream_id: str, after: str | None = None, *, idle: float | None = None
    ) -> Iterator[Entry]:
        position, skip = _position(after)
        with self._lock:
            stream = self._get(stream_id, time.monotonic())
        return self._read(stream_id, stream, position, skip, idle)

    def _read(
        self, stream_id: str, stream: _Stream, position: int, skip: int, idle: float | None
    ) -> Iterator[Entry]:
        quiet_since = time.monotonic()
        while True:
            with self._lock:
                now = time.monotonic()
                batch, moved, over, wait = self._step(stream_id, stream, position, skip, now)
                if moved == position and not over:
                    if idle is not None:
                        wait = min(wait, quiet_since + idle - now)
                    if wait > 0:
                        stream.changed.wait(wait)
                        continue
            if over:
                return
            if moved != position:
                position, skip = moved, 0
                quiet_since = time.monotonic()
                yield from batch
            elif idle is not None:
                quiet_since = time.monotonic()
                yield Entry(str(position), ())

    def close(self) -> None:
        """Nothing to release."""

    # The asyncio half: the same operations, which never block for long.

    async def acreate(self, owner: str | None = None, *, alias: str | None = None) -> str:
        return self.create(owner, alias=alias)

    async def aappend(self, stream_id: str, blocks: Sequence[bytes]) -> str:
        return self.append(stream_id, blocks)

    async def arenew(self, stream_id: str) -> None:
        self.renew(stream_id)

    async def afinish(self, stream_id: str, status: Status) -> None:
        self.finish(stream_id, status)

    async def acancel(self, stream_id: str) -> bool:
        return self.cancel(stream_id)

    async def acancelled(self, stream_id: str) -> bool:
        return self.cancelled(stream_id)

    async def aattach(self, stream_id: str, seconds: float) -> None:
        self.attach(stream_id, seconds)

    async def aattached(self, stream_id: str) -> bool:
        return self.attached(stream_id)

    async def ainfo(self, stream_id: str) -> StreamInfo | None:
        return self.info(stream_id)

    async def aresolve(self, alias: str) -> str | None:
        return self.resolve(alias)

    def aread(
        self, stream_id: str, after: str | None = None, *, idle: float | None = None
    ) -> AsyncIterator[Entry]:
        position, skip = _position(after)
        with self._lock:
            stream = self._get(stream_id, time.monotonic())
        return self._aread(stream_id, stream, position, skip, idle)

    async def _aread(
        self, stream_id: str, stream: _Stream, position: int, skip: int, idle: float | None
    ) -> AsyncIterator[Entry]:
        loop = asyncio.get_running_loop()
        quiet_since = time.monotonic()
        while True:
            future: asyncio.Future[None] | None = None
            with self._lock:
                now = time.monotonic()
                batch, moved, over, wait = self._step(stream_id, stream, position, skip, now)
                if moved == position and not over:
                    if idle is not None:
                        wait = min(wait, quiet_since + idle - now)
                    if wait > 0:
                        future = loop.create_future()
                        stream.waiters.append((loop, future))
            if future is not None:
                # A timer resolves the same future: no wait_for(), which before
                # Python 3.12 can swallow a cancellation (CPython gh-86296).
                timer = loop.call_later(wait, _resolve, future)
                try:
                    await future
                finally:
                    timer.cancel()
                    with self._lock, contextlib.suppress(ValueError):
                        stream.waiters.remove((loop, future))
                continue
            if over:
                return
            if moved != position:
                position, skip = moved, 0
                quiet_since = time.monotonic()
                for entry in batch:
                    yield entry
            elif idle is not None:
                quiet_since = time.monotonic()
                yield Entry(str(position), ())

    async def aclose(self) -> None:
        """Nothing to release."""


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)
