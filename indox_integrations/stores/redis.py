"""The shared store: streams in Redis (or Valkey), for many workers and hosts.

Keys of one stream share the hash tag ``{<stream id>}``, so they live in one slot of
a Redis Cluster and every transaction here stays in that slot:

- ``<prefix>:{<id>}:meta``: a hash: ``status`` and ``owner``.
- ``<prefix>:{<id>}:events``: a Redis Stream, one entry per batch, with explicit
  ids ``<n>-0`` (so entry ``n`` is ``n``, and a gap left by ``MAXLEN`` shows);
  fields ``"0"``, ``"1"``... hold the blocks; the last entry ``end=<status>``
  marks the end, so a blocked ``XREAD`` returns at once.
- ``<prefix>:{<id>}:lease``: the producer's lease, a key with a ``PX`` expiry set by
  Redis's own clock (no clock skew between hosts).
- ``<prefix>:{<id>}:cancel``: present once someone cancelled.
- ``<prefix>:{<id>}:reader``: present while a reader is attached (its own ``PX`` expiry).
- ``<prefix>:alias:<alias>``: the latest stream id created with that alias.

Every write sets a TTL on every key it touches in the same ``MULTI`` or script, so
no key ever lives without one.  Only commands of Redis 5+ and its Lua scripting are
used, so Valkey works.

A plain call (an append, a cancel check, a read that does not block) goes out at
once when no other is on its way; the plain calls made meanwhile share the next
pipeline: those of one event loop's tasks under asyncio, those of every thread in
the blocking half (the thread of the first one queued sends them, then hands that
on).  A thousand producers make a round trip or two at a time, not a thousand.
"""

from __future__ import annotations

import asyncio
import re
import threading
import time
import weakref
from collections.abc import AsyncIterator, Generator, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from . import (
    FINAL_STATUSES,
    Entry,
    EventsLost,
    ProducerLost,
    Status,
    StoreError,
    StoreUnavailable,
    StreamInfo,
    StreamNotFound,
    _check_blocks,
    _check_final,
    _position,
    is_stream_id,
    new_stream_id,
)

__all__ = ["RedisStore"]

T = TypeVar("T")

_PAGE = 100
_MAX_BLOCKS = 3000
"""Blocks per entry: the script hands them to ``XADD`` as one Lua ``unpack``."""

# Adds the next entry if the stream still exists, atomically. KEYS: meta, events, lease,
# cancel; ARGV: maxlen, entry id, lease ms, ttl ms, final status ("" for an append),
# then the entry's fields.  An append renews the lease; the end marker sets the status.
_ADD = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local added = redis.pcall('XADD', KEYS[2], 'MAXLEN', ARGV[1], ARGV[2], unpack(ARGV, 6))
if type(added) == 'table' and added.err then return added end
if ARGV[5] == '' then
  redis.call('SET', KEYS[3], 1, 'PX', ARGV[3])
else
  redis.call('HSET', KEYS[1], 'status', ARGV[5])
  redis.call('DEL', KEYS[3])
  redis.call('PEXPIRE', KEYS[4], ARGV[4])
end
redis.call('PEXPIRE', KEYS[1], ARGV[4])
redis.call('PEXPIRE', KEYS[2], ARGV[4])
return 1
"""
# Renews the lease and the TTLs if the stream still exists. KEYS: meta, events, lease;
# ARGV: lease ms, ttl ms.
_RENEW = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('SET', KEYS[3], 1, 'PX', ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
redis.call('PEXPIRE', KEYS[2], ARGV[2])
return 1
"""
_CREDENTIALS = re.compile(r"//[^@/]*@")


@dataclass(frozen=True, slots=True)
class _Call:
    """Commands to send in one round trip, in a ``MULTI`` when ``transaction``;
    ``blocks`` when the server may hold the reply back (``XREAD BLOCK``)."""

    commands: list[tuple[Any, ...]]
    transaction: bool = False
    blocks: bool = False


class _Waiting:
    """A blocking call queued for the pipeline that a thread leads."""

    __slots__ = ("answered", "call", "lead", "replies")

    def __init__(self, call: _Call) -> None:
        self.call = call
        self.answered = threading.Lock()
        self.answered.acquire()
        self.lead = False
        self.replies: list[Any] | BaseException = []


# An operation is written once, as a generator that yields the commands it needs and
# gets their replies back, and run by a blocking or an asyncio driver.
_Op = Generator[_Call, list[Any], T]
_ReadOp = Generator["_Call | Entry", "list[Any] | None", None]


class RedisStore:
    """Streams in Redis Streams, shared by every process that uses the same ``url``.

    ``maxlen`` caps the entries kept per stream (``XADD MAXLEN``; a reader left
    behind the cap gets ``EventsLost``), ``ttl`` is how long keys live after the
    last write or the end, ``lease`` how long a producer may go without renewing,
    and ``poll`` the longest a reader blocks (``XREAD BLOCK``) between checks of
    the lease: readers of a killed producer end within ``lease + poll`` (8.5 s).
    An append holds at most 3,000 blocks (the kit's producers write a few per batch).
    ``timeout`` and ``connect_timeout`` bound each call; when Redis cannot be
    reached, every method raises ``StoreUnavailable``.  ``max_connections`` caps each
    client's pool: every reader that follows a stream holds a connection while it waits.

        store = RedisStore("redis://localhost:6379/0")
        stream_id = store.create(owner="user-1")
        store.append(stream_id, [b"data: hi\\n\\n"])
        store.finish(stream_id, "done")

    The blocking client is created on first use; each event loop gets its own asyncio
    client (redis-py's asyncio connections belong to one loop).
    """

    def __init__(
        self,
        url: str = "redis://localhost:6379/0",
        *,
        maxlen: int = 10_000,
        ttl: float = 3600.0,
        lease: float = 8.0,
        poll: float = 0.5,
        prefix: str = "indox",
        timeout: float = 5.0,
        connect_timeout: float = 2.0,
        max_connections: int = 10_000,
    ) -> None:
        try:
            import redis as redis_py
            import redis.asyncio as redis_asyncio
            from redis.asyncio.retry import Retry as AsyncRetry
            from redis.backoff import ExponentialBackoff
            from redis.retry import Retry
        except ImportError as err:
            raise ImportError(
                'RedisStore needs redis-py: pip install "indox-integrations[redis]"'
            ) from err
        if maxlen < 1 or ttl <= 0 or lease <= 0 or poll <= 0:
            raise ValueError(
                "expected maxlen >= 1 and ttl, lease, poll > 0, "
                f"got {maxlen!r}, {ttl!r}, {lease!r}, {poll!r}"
            )
        self.url = url
        self.maxlen = maxlen
        self.ttl = ttl
        self.lease = lease
        self.poll = poll
        self.prefix = prefix
        self._where = _CREDENTIALS.sub("//***@", url)
        self._ttl_ms = max(1, int(ttl * 1000))
        self._lease_ms = max(1, int(lease * 1000))
        self._errors: Any = redis_py.exceptions
        self._options: dict[str, Any] = {
            # RESP2 replies have the same shape on every server and redis-py version.
            "protocol": 2,
            "socket_timeout": max(timeout, poll + 1.0),
            "socket_connect_timeout": connect_timeout,
            # A restarted server: reconnect and retry once or twice, then give up.
            "retry_on_error": [redis_py.exceptions.ConnectionError],
            # Each reader waiting in XREAD BLOCK holds a connection: redis-py's default
            # pool (100 connections, then an error) would refuse the 101st open stream.
            "max_connections": max_connections,
        }
        self._sync_class: Any = redis_py.Redis
        self._sync_retry = Retry(ExponentialBackoff(cap=0.5, base=0.05), 2)
        self._async_class: Any = redis_asyncio.Redis
        self._async_retry = AsyncRetry(ExponentialBackoff(cap=0.5, base=0.05), 2)
        self._client: Any = None
        self._aclients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Any] = (
            weakref.WeakKeyDictionary()
        )
        self._lock = threading.Lock()
        # The next entry number of each stream this process produces: saves a round trip.
        self._next: dict[str, int] = {}
        # Each loop's calls waiting for the pipeline that sends them, those pipelines, and
        # the loops where a call is on its way alone.
        self._batches: weakref.WeakKeyDictionary[
            asyncio.AbstractEventLoop, list[tuple[_Call, asyncio.Future[list[Any]]]]
        ] = weakref.WeakKeyDictionary()
        self._sending: set[asyncio.Task[None]] = set()
        self._alone: weakref.WeakSet[asyncio.AbstractEventLoop] = weakref.WeakSet()
        # The blocking half's calls waiting for a pipeline, and whether a thread leads one.
        self._queue_lock = threading.Lock()
        self._queued: list[_Waiting] = []
        self._leading = False

    def __repr__(self) -> str:
        return f"RedisStore({self._where!r})"

    # Keys.

    def _keys(self, stream_id: str) -> tuple[str, str, str, str]:
        if not is_stream_id(stream_id):
            raise StreamNotFound(f"no stream {stream_id!r}")
        base = f"{self.prefix}:{{{stream_id}}}"
        return f"{base}:meta", f"{base}:events", f"{base}:lease", f"{base}:cancel"

    def _alias_key(self, alias: str) -> str:
        return f"{self.prefix}:alias:{alias}"

    # The operations, once for both drivers.

    def _create(self, owner: str | None, alias: str | None) -> _Op[str]:
        stream_id = new_stream_id()
        meta, _, lease, _ = self._keys(stream_id)
        fields: list[Any] = ["status", "running"]
        if owner is not None:
            fields += ["owner", owner]
        commands = [
            ("HSET", meta, *fields),
            ("PEXPIRE", meta, self._ttl_ms),
            ("SET", lease, 1, "PX", self._lease_ms),
        ]
        self._check((yield _Call(commands, transaction=True)))
        if alias is not None:
            alias_set = ("SET", self._alias_key(alias), stream_id, "PX", self._ttl_ms)
            self._check((yield _Call([alias_set])))
        self._next[stream_id] = 1
        return stream_id

    def _top(self, stream_id: str) -> _Op[tuple[str, int]]:
        """The stream's status and the number of its next entry, from Redis."""
        meta, events, _, _ = self._keys(stream_id)
        replies = yield _Call(
            [("HGET", meta, "status"), ("XREVRANGE", events, "+", "-", "COUNT", 1)]
        )
        status, top = self._check(replies)
        if status is None:
            raise StreamNotFound(f"no stream {stream_id!r}")
        return status.decode(), 1 + (_seq(top[0][0]) if top else 0)

    def _add(self, stream_id: str, fields: list[Any], final: Status | None) -> _Op[int | None]:
        """Add the next entry, renewing the lease, or with ``final`` the end marker, setting
        the status; return its number, or ``None`` if the stream has finished."""
        keys = self._keys(stream_id)
        seq = self._next.get(stream_id)
        if seq is None:
            status, seq = yield from self._top(stream_id)
            if status in FINAL_STATUSES:
                return None
        for _ in range(3):
            # Exact MAXLEN (no "~"), in the Redis 5 syntax (no "=", which came in 6.2).
            limits = (self.maxlen, f"{seq}-0", self._lease_ms, self._ttl_ms, final or "")
            (added,) = yield _Call([("EVAL", _ADD, len(keys), *keys, *limits, *fields)])
            if added == 0:  # expired, or lost with a restarted server
                self._next.pop(stream_id, None)
                raise StreamNotFound(f"no stream {stream_id!r}")
            # Our number was taken: another store object wrote to this stream.
            if not (isinstance(added, Exception) and "equal or smaller" in str(added)):
                self._check([added])
                self._next[stream_id] = seq + 1
                return seq
            _, seq = yield from self._top(stream_id)
        raise StoreError(f"stream {stream_id!r} has several producers writing at once")

    def _append(self, stream_id: str, blocks: tuple[bytes, ...]) -> _Op[str]:
        if len(blocks) > _MAX_BLOCKS:
            raise ValueError(f"RedisStore takes at most {_MAX_BLOCKS} blocks per append")
        fields = [part for i, block in enumerate(blocks) for part in (i, block)]
        seq = yield from self._add(stream_id, fields, None)
        if seq is None:
            raise StoreError(f"stream {stream_id!r} has finished")
        return str(seq)

    def _renew(self, stream_id: str) -> _Op[None]:
        keys = self._keys(stream_id)[:3]
        limits = (self._lease_ms, self._ttl_ms)
        (renewed,) = self._check((yield _Call([("EVAL", _RENEW, len(keys), *keys, *limits)])))
        if not renewed:  # expired, or lost with a restarted server
            self._next.pop(stream_id, None)
            raise StreamNotFound(f"no stream {stream_id!r}")

    def _finish(self, stream_id: str, status: Status) -> _Op[None]:
        _check_final(status)
        # The end marker goes in first: the status changes only if it was written.
        yield from self._add(stream_id, ["end", status], status)
        self._next.pop(stream_id, None)

    def _cancel(self, stream_id: str) -> _Op[bool]:
        try:
            meta, _, _, cancel = self._keys(stream_id)
        except StreamNotFound:
            return False
        # Two round trips: a DELETE of an unknown id must not create a key.
        if not self._check((yield _Call([("EXISTS", meta)])))[0]:
            return False
        self._check((yield _Call([("SET", cancel, 1, "PX", self._ttl_ms)])))
        return True

    def _cancelled(self, stream_id: str) -> _Op[bool]:
        try:
            _, _, _, cancel = self._keys(stream_id)
        except StreamNotFound:
            return False
        return bool(self._check((yield _Call([("EXISTS", cancel)])))[0])

    def _reader_key(self, stream_id: str) -> str | None:
        return f"{self.prefix}:{{{stream_id}}}:reader" if is_stream_id(stream_id) else None

    def _attach(self, stream_id: str, seconds: float) -> _Op[None]:
        key = self._reader_key(stream_id)
        if key is not None:
            self._check((yield _Call([("SET", key, 1, "PX", max(1, int(seconds * 1000)))])))

    def _attached(self, stream_id: str) -> _Op[bool]:
        key = self._reader_key(stream_id)
        if key is None:
            return False
        return bool(self._check((yield _Call([("EXISTS", key)])))[0])

    def _info(self, stream_id: str) -> _Op[StreamInfo | None]:
        try:
            meta, _, lease, cancel = self._keys(stream_id)
        except StreamNotFound:
            return None
        replies = yield _Call(
            [("HMGET", meta, "status", "owner"), ("EXISTS", lease), ("EXISTS", cancel)],
            transaction=True,
        )
        (status, owner), alive, cancelled = self._check(replies)
        if status is None:
            return None
        state: Any = status.decode()
        return StreamInfo(
            state,
            None if owner is None else owner.decode(),
            state == "running" and bool(alive),
            bool(cancelled),
        )

    def _resolve(self, alias: str) -> _Op[str | None]:
        (found,) = self._check((yield _Call([("GET", self._alias_key(alias))])))
        return None if found is None else str(found.decode())

    def _read(self, stream_id: str, after: str | None, idle: float | None) -> _ReadOp:
        meta, events, lease, _ = self._keys(stream_id)
        position, skip = _position(after)
        page = ("XRANGE", events, f"{position + 1}-0", "+", "COUNT", _PAGE)
        replies = yield _Call([("EXISTS", meta), page])
        exists, found = self._check(replies or [])
        if not exists:
            raise StreamNotFound(f"no stream {stream_id!r}")
        quiet_since = time.monotonic()
        following = False
        while True:
            entries, moved, ended = self._take(stream_id, found, position, skip)
            if moved != position:
                position, skip = moved, 0
                quiet_since = time.monotonic()
                yield from entries
            if ended:
                return
            if not following and len(found) == _PAGE:
                page = ("XRANGE", events, f"{position + 1}-0", "+", "COUNT", _PAGE)
                found = self._check((yield _Call([page])) or [])[0]
                continue
            following = True
            if found:
                block = self.poll
            else:
                # Nothing came within the poll: is the stream still there, and its producer?
                page = ("XRANGE", events, f"{position + 1}-0", "+", "COUNT", _PAGE)
                replies = yield _Call(
                    [("HGET", meta, "status"), ("EXISTS", lease), page], transaction=True
                )
                status, alive, found = self._check(replies or [])
                if found:
                    continue
                if status is None:
                    raise StreamNotFound(f"stream {stream_id!r} expired or was lost")
                if status.decode() in FINAL_STATUSES:
                    return  # ``after`` was past the end marker
                if not alive:
                    raise ProducerLost(
                        f"the producer of stream {stream_id!r} stopped renewing its lease"
                    )
                block = self.poll
                if idle is not None:
                    quiet = time.monotonic() - quiet_since
                    if quiet >= idle:
                        quiet_since = time.monotonic()
                        yield Entry(str(position), ())
                        quiet = 0.0
                    block = min(block, idle - quiet)
            block_ms = max(1, int(block * 1000))
            xread = ("XREAD", "COUNT", _PAGE, "BLOCK", block_ms, "STREAMS", events, f"{position}-0")
            replies = yield _Call([xread], blocks=True)
            found = _stream_entries(self._check(replies or [])[0])

    def _take(
        self, stream_id: str, found: list[Any], position: int, skip: int
    ) -> tuple[list[Entry], int, bool]:
        """The entries in a reply, the new position, and whether the end was among them."""
        entries: list[Entry] = []
        for raw_id, fields in found:
            seq = _seq(raw_id)
            if seq <= position:
                continue
            if seq != position + 1:
                raise EventsLost(
                    f"stream {stream_id!r} lost entries {position + 1}..{seq - 1} to its cap"
                )
            if b"end" in fields:
                return entries, position, True
            blocks = tuple(fields[str(i).encode()] for i in range(len(fields)))
            start, skip = skip, 0
            position = seq
            if start < len(blocks):
                entries.append(Entry(str(seq), blocks[start:], start))
        return entries, position, False

    def _check(self, replies: list[Any]) -> list[Any]:
        for reply in replies:
            if isinstance(reply, Exception):
                raise StoreError(f"Redis at {self._where} refused a command: {reply}") from reply
        return replies

    # Drivers.

    def _failure(self, exc: Exception) -> Exception:
        if isinstance(exc, (self._errors.ConnectionError, self._errors.TimeoutError)):
            return StoreUnavailable(f"Redis at {self._where} is unreachable: {exc}")
        return StoreError(f"Redis at {self._where} failed: {exc}")

    def _sync(self) -> Any:
        with self._lock:
            if self._client is None:
                self._client = self._sync_class.from_url(
                    self.url, retry=self._sync_retry, **self._options
                )
            return self._client

    def _execute(self, call: _Call) -> list[Any]:
        if call.transaction or call.blocks:
            return self._send(call.commands, call.transaction)
        waiting = _Waiting(call)
        with self._queue_lock:
            self._queued.append(waiting)
            lead, self._leading = not self._leading, True
        if not lead:
            waiting.answered.acquire()  # released with the replies, or with the lead
            lead = waiting.lead
        if lead:
            self._lead()
        if isinstance(waiting.replies, BaseException):
            raise waiting.replies
        return waiting.replies

    def _lead(self) -> None:
        """Send every call queued by now in one pipeline, answer them, and hand the lead
        to the first call queued meanwhile: each thread leads one pipeline at most."""
        with self._queue_lock:
            batch, self._queued = self._queued, []
        try:
            calls = [waiting.call for waiting in batch]
            replies = self._send(_joined(calls), False)
            for waiting, answer in zip(batch, _split(calls, replies), strict=True):
                waiting.replies = answer
        except BaseException as exc:  # each caller raises it, this thread too
            for waiting in batch:
                waiting.replies = exc
        finally:
            for waiting in batch[1:]:  # the first is this thread's own
                waiting.answered.release()
            with self._queue_lock:
                following = self._queued[0] if self._queued else None
                self._leading = following is not None
            if following is not None:
                following.lead = True
                following.answered.release()

    def _send(self, commands: list[tuple[Any, ...]], transaction: bool) -> list[Any]:
        client = self._sync()
        try:
            with client.pipeline(transaction=transaction) as pipe:
                for command in commands:
                    pipe.execute_command(*command)
                return list(pipe.execute(raise_on_error=False))
        except self._errors.RedisError as exc:
            raise self._failure(exc) from exc

    def _run(self, op: _Op[T]) -> T:
        try:
            call = next(op)
            while True:
                call = op.send(self._execute(call))
        except StopIteration as stop:
            result: T = stop.value
            return result

    def _async(self) -> Any:
        loop = asyncio.get_running_loop()
        client = self._aclients.get(loop)
        if client is None:
            client = self._async_class.from_url(self.url, retry=self._async_retry, **self._options)
            self._aclients[loop] = client
        return client

    async def _aexecute(self, call: _Call) -> list[Any]:
        if call.transaction or call.blocks:
            return await self._asend(call.commands, call.transaction)
        loop = asyncio.get_running_loop()
        batch = self._batches.get(loop)
        if batch is None and loop not in self._alone:
            # Nothing else on its way: no wait for company (one stream stays as fast).
            self._alone.add(loop)
            try:
                return await self._asend(call.commands, False)
            finally:
                self._alone.discard(loop)
        if batch is None:
            batch = self._batches[loop] = []
            task = loop.create_task(self._asend_batch(loop))
            self._sending.add(task)
            task.add_done_callback(self._sending.discard)
        replies: asyncio.Future[list[Any]] = loop.create_future()
        batch.append((call, replies))
        return await replies

    async def _asend_batch(self, loop: asyncio.AbstractEventLoop) -> None:
        """Send the calls queued on ``loop`` since this task was created, in one pipeline.
        They came while a call was on its way alone, or while this task waited to run."""
        batch = self._batches.pop(loop)
        calls = [call for call, _ in batch]
        try:
            replies = await self._asend(_joined(calls), False)
        except Exception as exc:  # each caller raises it
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        except BaseException:
            for _, future in batch:
                future.cancel()
            raise
        for (_, future), answer in zip(batch, _split(calls, replies), strict=True):
            if not future.done():  # its caller was cancelled
                future.set_result(answer)

    async def _asend(self, commands: list[tuple[Any, ...]], transaction: bool) -> list[Any]:
        client = self._async()
        cancels = _cancels()
        try:
            async with client.pipeline(transaction=transaction) as pipe:
                for command in commands:
                    pipe.execute_command(*command)
                replies = list(await pipe.execute(raise_on_error=False))
        except self._errors.RedisError as exc:
            raise self._failure(exc) from exc
        if _cancels() > cancels:
            # Before Python 3.12, the asyncio.wait_for around redis-py's socket writes
            # drops a cancel that lands as the write completes: deliver it. (On 3.10,
            # which has no Task.cancelling(), such a cancel goes unseen.)
            raise asyncio.CancelledError
        return replies

    async def _arun(self, op: _Op[T]) -> T:
        try:
            call = next(op)
            while True:
                call = op.send(await self._aexecute(call))
        except StopIteration as stop:
            result: T = stop.value
            return result

    # The blocking half.

    def create(self, owner: str | None = None, *, alias: str | None = None) -> str:
        return self._run(self._create(owner, alias))

    def append(self, stream_id: str, blocks: Sequence[bytes]) -> str:
        return self._run(self._append(stream_id, _check_blocks(blocks)))

    def renew(self, stream_id: str) -> None:
        self._run(self._renew(stream_id))

    def finish(self, stream_id: str, status: Status) -> None:
        self._run(self._finish(stream_id, status))

    def cancel(self, stream_id: str) -> bool:
        return self._run(self._cancel(stream_id))

    def cancelled(self, stream_id: str) -> bool:
        return self._run(self._cancelled(stream_id))

    def attach(self, stream_id: str, seconds: float) -> None:
        self._run(self._attach(stream_id, seconds))

    def attached(self, stream_id: str) -> bool:
        return self._run(self._attached(stream_id))

    def info(self, stream_id: str) -> StreamInfo | None:
        return self._run(self._info(stream_id))

    def resolve(self, alias: str) -> str | None:
        return self._run(self._resolve(alias))

    def read(
        self, stream_id: str, after: str | None = None, *, idle: float | None = None
    ) -> Iterator[Entry]:
        op = self._read(stream_id, after, idle)
        # The first round trip happens now, so an unknown stream raises here.
        call = next(op)
        assert isinstance(call, _Call)
        try:
            first = op.send(self._execute(call))
        except StopIteration:
            return iter(())
        return self._iterate(op, first)

    def _iterate(self, op: _ReadOp, item: _Call | Entry) -> Iterator[Entry]:
        try:
            while True:
                if isinstance(item, Entry):
                    yield item
                    item = op.send(None)
                else:
                    item = op.send(self._execute(item))
        except StopIteration:
            return
        finally:
            op.close()

    def close(self) -> None:
        with self._lock:
            client, self._client = self._client, None
        if client is not None:
            client.close()

    # The asyncio half.

    async def acreate(self, owner: str | None = None, *, alias: str | None = None) -> str:
        return await self._arun(self._create(owner, alias))

    async def aappend(self, stream_id: str, blocks: Sequence[bytes]) -> str:
        return await self._arun(self._append(stream_id, _check_blocks(blocks)))

    async def arenew(self, stream_id: str) -> None:
        await self._arun(self._renew(stream_id))

    async def afinish(self, stream_id: str, status: Status) -> None:
        await self._arun(self._finish(stream_id, status))

    async def acancel(self, stream_id: str) -> bool:
        return await self._arun(self._cancel(stream_id))

    async def acancelled(self, stream_id: str) -> bool:
        return await self._arun(self._cancelled(stream_id))

    async def aattach(self, stream_id: str, seconds: float) -> None:
        await self._arun(self._attach(stream_id, seconds))

    async def aattached(self, stream_id: str) -> bool:
        return await self._arun(self._attached(stream_id))

    async def ainfo(self, stream_id: str) -> StreamInfo | None:
        return await self._arun(self._info(stream_id))

    async def aresolve(self, alias: str) -> str | None:
        return await self._arun(self._resolve(alias))

    def aread(
        self, stream_id: str, after: str | None = None, *, idle: float | None = None
    ) -> AsyncIterator[Entry]:
        op = self._read(stream_id, after, idle)
        # A bad id or ``after`` raises here; an unknown stream at the first iteration.
        first = next(op)
        return self._aiterate(op, first)

    async def _aiterate(self, op: _ReadOp, item: _Call | Entry) -> AsyncIterator[Entry]:
        try:
            while True:
                if isinstance(item, Entry):
                    yield item
                    item = op.send(None)
                else:
                    item = op.send(await self._aexecute(item))
        except StopIteration:
            return
        finally:
            op.close()

    async def aclose(self) -> None:
        """Close the asyncio client of the running loop (call it before the loop ends)."""
        client = self._aclients.pop(asyncio.get_running_loop(), None)
        if client is not None:
            close = getattr(client, "aclose", None) or client.close
            await close()


def _cancels() -> int:
    """The cancels requested of the running task and not yet handled (0 before 3.11)."""
    cancelling = getattr(asyncio.current_task(), "cancelling", None)
    return int(cancelling()) if cancelling is not None else 0


def _joined(calls: list[_Call]) -> list[tuple[Any, ...]]:
    """The commands of ``calls``, for one pipeline."""
    return [command for call in calls for command in call.commands]


def _split(calls: list[_Call], replies: list[Any]) -> Iterator[list[Any]]:
    """The replies of a pipeline of :func:`_joined` ``calls``, call by call."""
    start = 0
    for call in calls:
        end = start + len(call.commands)
        yield replies[start:end]
        start = end


def _seq(entry_id: bytes) -> int:
    return int(entry_id.split(b"-", 1)[0])


def _stream_entries(reply: Any) -> list[Any]:
    """The entries of a one-stream ``XREAD`` reply (RESP2: ``[[name, entries]]`` or nil)."""
    return list(reply[0][1]) if reply else []
