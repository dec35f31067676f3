"""Stores for resumable streams: a producer writes SSE event blocks, any reader replays them.

A stream is a sequence of *entries*, one per batch of encoded SSE event blocks that
the producer appended, numbered ``"1"``, ``"2"``, ... per stream.  The event id a
reader puts on the wire is ``"<entry id>:<block index>"`` (see :class:`Entry`), so a
resume from ``Last-Event-ID`` skips exactly the blocks already seen, even mid-batch.
Blocks are stored without ``id:`` lines; readers add them.

Lifecycle: :meth:`~SyncStore.create`, then :meth:`~SyncStore.append` any number of
times, then :meth:`~SyncStore.finish` once.  While it runs, the producer holds a
*lease*, renewed by every append and by :meth:`~SyncStore.renew`: a reader that
finds it expired before the end raises :class:`ProducerLost` (the producer died).
Nothing lives forever: a stream expires ``ttl`` seconds after its last write while
it runs, and ``ttl`` seconds after its end once finished.

Every store offers each operation twice: plain methods for WSGI threads and
``a``-prefixed coroutines for asyncio, on the same data, so one store object can
serve both.  :class:`MemoryStore` serves one process; :class:`RedisStore` serves
many processes and hosts.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

__all__ = [
    "FINAL_STATUSES",
    "AsyncStore",
    "Entry",
    "EventsLost",
    "MemoryStore",
    "ProducerLost",
    "RedisStore",
    "Status",
    "Store",
    "StoreError",
    "StoreUnavailable",
    "StreamInfo",
    "StreamNotFound",
    "SyncStore",
    "format_event_id",
    "is_stream_id",
    "new_stream_id",
    "parse_event_id",
    "with_id",
]

Status = Literal["running", "done", "failed", "cancelled"]
FINAL_STATUSES: frozenset[str] = frozenset({"done", "failed", "cancelled"})

_STREAM_ID = re.compile(r"[A-Za-z0-9_-]{16,128}")
_EVENT_ID = re.compile(r"([1-9][0-9]{0,18}):([0-9]{1,9})")


class StoreError(Exception):
    """Base class of the store errors."""


class StoreUnavailable(StoreError):
    """The store's backend cannot be reached (answer 503 before the stream starts)."""


class StreamNotFound(StoreError):
    """No stream has this id: never created, expired, or lost with its backend."""


class ProducerLost(StoreError):
    """The producer's lease ran out before it finished the stream (it died)."""


class EventsLost(StoreError):
    """Events after the reader's position are gone (trimmed by the cap), so the replay
    cannot be exact."""


@dataclass(frozen=True, slots=True)
class StreamInfo:
    """What a store knows about one stream."""

    status: Status
    owner: str | None
    producing: bool
    """Running, and the producer's lease is current."""
    cancel_requested: bool


@dataclass(frozen=True, slots=True)
class Entry:
    """One batch of event blocks, as a reader gets it.

    ``blocks[0]`` has block index ``start``: non-zero only in the first entry of a
    resume that began mid-batch.  An entry with no blocks is an idle tick (see
    ``read(idle=...)``), a chance to send a heartbeat.
    """

    id: str
    blocks: tuple[bytes, ...]
    start: int = 0

    def event_ids(self) -> list[str]:
        """The wire event id of each block."""
        return [format_event_id(self.id, self.start + i) for i in range(len(self.blocks))]

    def wire(self) -> bytes:
        """The blocks, each with its ``id:`` line, ready to write."""
        return b"".join(
            with_id(block, event_id)
            for block, event_id in zip(self.blocks, self.event_ids(), strict=True)
        )


def new_stream_id() -> str:
    """A fresh stream id: 128 random bits, URL-safe (it is a capability: unguessable)."""
    return secrets.token_urlsafe(16)


def is_stream_id(value: str) -> bool:
    """Whether ``value`` has the shape of a stream id (ids of any other shape are unknown)."""
    return _STREAM_ID.fullmatch(value) is not None


def format_event_id(entry_id: str, index: int) -> str:
    """The wire event id of block ``index`` of entry ``entry_id``."""
    return f"{entry_id}:{index}"


def parse_event_id(event_id: str) -> tuple[str, int]:
    """Split a wire event id (a ``Last-Event-ID``) into entry id and block index.

    Raises ``ValueError`` for anything that :func:`format_event_id` did not make.
    """
    match = _EVENT_ID.fullmatch(event_id.strip())
    if match is None:
        raise ValueError(f"expected an event id like '12:0', got {event_id!r}")
    return match.group(1), int(match.group(2))


def with_id(block: bytes, event_id: str) -> bytes:
    """One encoded SSE event block with an ``id:`` field line in front."""
    return b"id: " + event_id.encode("ascii") + b"\n" + block


def _position(after: str | None) -> tuple[int, int]:
    """``(last entry fully seen, blocks to skip in the next entry)`` for ``read(after)``."""
    if after is None:
        return 0, 0
    entry_id, index = parse_event_id(after)
    return int(entry_id) - 1, index + 1


def _check_final(status: str) -> None:
    if status not in FINAL_STATUSES:
        raise ValueError(f"expected a final status (done, failed, cancelled), got {status!r}")


def _check_blocks(blocks: Sequence[bytes]) -> tuple[bytes, ...]:
    if isinstance(blocks, (bytes, bytearray, str)) or not blocks:
        raise ValueError(f"expected a non-empty list of bytes blocks, got {blocks!r:.60}")
    for block in blocks:
        if not isinstance(block, bytes):
            raise TypeError(f"expected bytes blocks, got {type(block).__name__}")
    return tuple(blocks)


class SyncStore(Protocol):
    """The blocking half of a store, for WSGI threads."""

    ttl: float
    """Seconds a stream lives after its last write (running) or its end (finished)."""
    lease: float
    """Seconds a producer's lease lasts (8 by default, so readers of a dead producer end
    within 10 s); renew well within it (every ``lease / 3``)."""

    def create(self, owner: str | None = None, *, alias: str | None = None) -> str:
        """Start a running stream and the producer's lease; return its new id.

        ``owner`` (a user or session key) is stored for the resume check.  ``alias``
        (for instance a chat id, scoped by the caller to its owner) names the latest
        stream created with it, for :meth:`resolve`, for ``ttl`` seconds.
        """
        ...

    def append(self, stream_id: str, blocks: Sequence[bytes]) -> str:
        """Add one entry of encoded SSE blocks and renew the lease; return the entry id.

        Raises ``StreamNotFound`` if the stream is unknown or expired, ``StoreError``
        if it has finished.
        """
        ...

    def renew(self, stream_id: str) -> None:
        """Extend the producer's lease (and the stream's expiry)."""
        ...

    def finish(self, stream_id: str, status: Status) -> None:
        """End the stream with a final status; it expires ``ttl`` seconds from now.

        Readers get every entry appended before, then their iterators end.  Finishing
        a finished stream changes nothing.
        """
        ...

    def cancel(self, stream_id: str) -> bool:
        """Ask the producer to stop; ``False`` if no such stream exists.

        The producer sees it through :meth:`cancelled`, which it checks at least
        every 0.25 s, then appends its last blocks and finishes as ``cancelled``.
        """
        ...

    def cancelled(self, stream_id: str) -> bool:
        """Whether someone asked to cancel this stream."""
        ...

    def attach(self, stream_id: str, seconds: float) -> None:
        """Say that a reader is reading this stream, for the next ``seconds``.

        Readers renew it while they read; a producer that finds nobody attached
        (see :meth:`attached`) knows its events go unread.
        """
        ...

    def attached(self, stream_id: str) -> bool:
        """Whether a reader's :meth:`attach` is still current."""
        ...

    def info(self, stream_id: str) -> StreamInfo | None:
        """Status and owner, or ``None`` if the stream is unknown or expired."""
        ...

    def resolve(self, alias: str) -> str | None:
        """The id of the latest stream created with ``alias``, if it has not expired."""
        ...

    def read(
        self, stream_id: str, after: str | None = None, *, idle: float | None = None
    ) -> Iterator[Entry]:
        """Replay the entries after the wire event id ``after``, then follow live.

        Yields each block exactly once; ends when the stream is finished.  With
        ``idle``, yields an empty :class:`Entry` whenever nothing arrived for that
        many seconds.  Raises ``StreamNotFound`` (unknown, expired or lost),
        ``ProducerLost`` (lease ran out before the end: send ``producer_lost``),
        ``EventsLost`` (the position was trimmed away), ``ValueError`` (``after`` is
        not an event id) and ``StoreUnavailable``, when called or while iterating.
        """
        ...

    def close(self) -> None:
        """Release the connections of the blocking half."""
        ...


class AsyncStore(Protocol):
    """The asyncio half of a store: the same operations as :class:`SyncStore`."""

    ttl: float
    lease: float

    async def acreate(self, owner: str | None = None, *, alias: str | None = None) -> str: ...

    async def aappend(self, stream_id: str, blocks: Sequence[bytes]) -> str: ...

    async def arenew(self, stream_id: str) -> None: ...

    async def afinish(self, stream_id: str, status: Status) -> None: ...

    async def acancel(self, stream_id: str) -> bool: ...

    async def acancelled(self, stream_id: str) -> bool: ...

    async def aattach(self, stream_id: str, seconds: float) -> None: ...

    async def aattached(self, stream_id: str) -> bool: ...

    async def ainfo(self, stream_id: str) -> StreamInfo | None: ...

    async def aresolve(self, alias: str) -> str | None: ...

    def aread(
        self, stream_id: str, after: str | None = None, *, idle: float | None = None
    ) -> AsyncIterator[Entry]: ...

    async def aclose(self) -> None:
        """Release the connections the running event loop holds."""
        ...


class Store(SyncStore, AsyncStore, Protocol):
    """A store with both halves: what ``resumable=True`` takes as ``store=``."""


# The implementations import the names above.
from .memory import MemoryStore  # noqa: E402
from .redis import RedisStore  # noqa: E402
