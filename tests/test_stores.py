"""The stores of resumable streams, each against MemoryStore and a real redis-server."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis
from redis_server import RedisServer, redis_server, redis_url  # noqa: F401
from servers import free_port

from indox_integrations.stores import (
    Entry,
    EventsLost,
    MemoryStore,
    ProducerLost,
    RedisStore,
    Store,
    StoreError,
    StoreUnavailable,
    StreamNotFound,
    format_event_id,
    is_stream_id,
    parse_event_id,
    with_id,
)

BATCHES = [
    [b"data: Once\n\n"],
    [b"data:  upon\n\n", b"event: reasoning\ndata: hmm\n\n", b"data:  a\n\n"],
    [b"data:  time\n\n", b"event: finish\ndata: {}\n\n"],
    [b"event: done\ndata: [DONE]\n\n"],
]

Make = Callable[..., Store]


@pytest.fixture(params=["memory", "redis"])
def make_store(request: pytest.FixtureRequest) -> Iterator[Make]:
    """Build stores of one kind; two stores built here share their data (two processes)."""
    made: list[Store] = []
    memory: dict[str, MemoryStore] = {}

    def make(**options: Any) -> Store:
        store: Store
        if request.param == "memory":
            # One MemoryStore per option set: "another process" is the same object.
            key = repr(sorted(options.items()))
            if key not in memory:
                memory[key] = MemoryStore(**options)
            store = memory[key]
        else:
            url = request.getfixturevalue("redis_url")
            store = RedisStore(url, poll=0.05, **options)
        made.append(store)
        return store

    yield make
    for store in made:
        store.close()


def produce(store: Store, batches: list[list[bytes]] = BATCHES, **create: Any) -> str:
    stream_id = store.create(**create)
    for blocks in batches:
        store.append(stream_id, blocks)
    store.finish(stream_id, "done")
    return stream_id


def flat(entries: Iterator[Entry] | list[Entry]) -> list[tuple[str, bytes]]:
    """Each block with its wire event id, checking ``wire()`` says the same."""
    pairs = []
    for entry in entries:
        tagged = list(zip(entry.event_ids(), entry.blocks, strict=True))
        assert entry.wire() == b"".join(b"id: " + i.encode() + b"\n" + b for i, b in tagged)
        pairs.extend(tagged)
    return pairs


def expected(batches: list[list[bytes]] = BATCHES) -> list[tuple[str, bytes]]:
    return [
        (f"{n}:{i}", block) for n, blocks in enumerate(batches, 1) for i, block in enumerate(blocks)
    ]


def wait_until(condition: Callable[[], bool], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


# Event ids.


def test_event_ids_round_trip() -> None:
    assert format_event_id("12", 3) == "12:3"
    assert parse_event_id("12:3") == ("12", 3)
    assert parse_event_id(" 7:0 ") == ("7", 0)
    assert with_id(b"data: x\n\n", "1:0") == b"id: 1:0\ndata: x\n\n"


@pytest.mark.parametrize("bad", ["", "12", "abc", "1:", ":1", "0:0", "-1:0", "1:x", "1:2:3"])
def test_parse_event_id_rejects_what_format_did_not_make(bad: str) -> None:
    with pytest.raises(ValueError, match="expected an event id"):
        parse_event_id(bad)


def test_stream_ids_are_unguessable(make_store: Make) -> None:
    store = make_store()
    ids = {store.create() for _ in range(50)}
    assert len(ids) == 50
    for stream_id in ids:
        # token_urlsafe(16): 16 random bytes, 22 characters.
        assert is_stream_id(stream_id) and len(stream_id) >= 22


# Replay.


def test_replay_from_the_start(make_store: Make) -> None:
    store = make_store()
    stream_id = produce(store)
    entries = list(store.read(stream_id))
    assert [e.id for e in entries] == ["1", "2", "3", "4"]
    assert flat(entries) == expected()


def test_replay_after_every_id_exactly_once(make_store: Make) -> None:
    """Every position, mid-batch ones included: exactly the blocks after it."""
    store = make_store()
    stream_id = produce(store)
    everything = expected()
    for k, (event_id, _) in enumerate(everything):
        assert flat(store.read(stream_id, event_id)) == everything[k + 1 :], event_id


def test_replay_mid_batch_starts_at_the_next_block(make_store: Make) -> None:
    store = make_store()
    stream_id = produce(store)
    first, *rest = store.read(stream_id, "2:0")
    assert (first.id, first.start, first.blocks) == ("2", 1, tuple(BATCHES[1][1:]))
    assert first.event_ids() == ["2:1", "2:2"]
    assert [e.id for e in rest] == ["3", "4"]


def test_replay_after_the_last_block_ends_at_once(make_store: Make) -> None:
    store = make_store()
    stream_id = produce(store)
    assert list(store.read(stream_id, "4:0")) == []


def test_replay_after_a_future_id(make_store: Make) -> None:
    """An id past the end (not one the store made): nothing to replay, and no hang."""
    store = make_store()
    stream_id = produce(store)
    assert list(store.read(stream_id, "99:0")) == []
    running = store.create()
    store.append(running, BATCHES[0])
    reader = store.read(running, "2:0", idle=0.01)
    store.append(running, BATCHES[1])
    store.append(running, BATCHES[2])
    store.finish(running, "done")
    assert flat(reader) == expected(BATCHES[:3])[2:]


def test_reader_in_another_process_sees_the_same_stream(make_store: Make) -> None:
    producer, reader = make_store(), make_store()
    stream_id = producer.create(owner="u")
    producer.append(stream_id, BATCHES[0])
    # The other process appends too (a store that did not create the stream).
    reader.append(stream_id, BATCHES[1])
    producer.append(stream_id, BATCHES[2])
    reader.finish(stream_id, "done")
    assert flat(reader.read(stream_id)) == expected(BATCHES[:3])
    assert flat(producer.read(stream_id, "1:0")) == expected(BATCHES[:3])[1:]


def test_bad_after_is_a_value_error(make_store: Make) -> None:
    store = make_store()
    stream_id = produce(store)
    with pytest.raises(ValueError, match="expected an event id"):
        list(store.read(stream_id, "garbage"))


def test_append_takes_a_list_of_bytes(make_store: Make) -> None:
    store = make_store()
    stream_id = store.create()
    with pytest.raises(ValueError, match="non-empty list"):
        store.append(stream_id, [])
    with pytest.raises(ValueError, match="non-empty list"):
        store.append(stream_id, b"data: x\n\n")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="expected bytes blocks, got str"):
        store.append(stream_id, ["data: x\n\n"])  # type: ignore[list-item]


# Following live.


def slow_producer(store: Store, stream_id: str, batches: list[list[bytes]]) -> threading.Thread:
    def run() -> None:
        for blocks in batches:
            time.sleep(0.02)
            store.append(stream_id, blocks)
        store.finish(stream_id, "done")

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def test_follow_live_across_threads(make_store: Make) -> None:
    producer_store, reader_store = make_store(), make_store()
    batches = [[f"data: {n}\n\n".encode()] for n in range(30)]
    stream_id = producer_store.create()
    results: list[list[tuple[str, bytes]]] = [[] for _ in range(4)]

    def read(slot: int) -> None:
        results[slot] = flat(reader_store.read(stream_id))

    readers = [threading.Thread(target=read, args=(slot,)) for slot in range(4)]
    for thread in readers:
        thread.start()
    slow_producer(producer_store, stream_id, batches).join()
    for thread in readers:
        thread.join(10)
        assert not thread.is_alive()
    assert results == [expected(batches)] * 4


def test_follow_live_across_tasks(make_store: Make) -> None:
    """Readers in an event loop, the producer in a thread (a WSGI worker next door)."""
    producer_store, reader_store = make_store(), make_store()
    batches = [[f"data: {n}\n\n".encode(), b"data: x\n\n"] for n in range(20)]
    stream_id = producer_store.create()

    async def read(after: str | None) -> list[tuple[str, bytes]]:
        return flat([entry async for entry in reader_store.aread(stream_id, after)])

    async def main() -> list[list[tuple[str, bytes]]]:
        try:
            tasks = [asyncio.create_task(read(None)) for _ in range(3)]
            tasks.append(asyncio.create_task(read("1:0")))
            await asyncio.sleep(0.05)
            thread = slow_producer(producer_store, stream_id, batches)
            results = await asyncio.wait_for(asyncio.gather(*tasks), 20)
            thread.join()
            return results
        finally:
            await reader_store.aclose()

    results = asyncio.run(main())
    assert results == [expected(batches)] * 3 + [expected(batches)[1:]]


def test_async_producer_and_readers(make_store: Make) -> None:
    store = make_store()

    async def main() -> tuple[list[tuple[str, bytes]], Any]:
        try:
            stream_id = await store.acreate(owner="me", alias="chat-1")
            assert await store.aresolve("chat-1") == stream_id

            async def read() -> list[tuple[str, bytes]]:
                return flat([entry async for entry in store.aread(stream_id)])

            task = asyncio.create_task(read())
            for blocks in BATCHES:
                await asyncio.sleep(0.01)
                assert await store.aappend(stream_id, blocks)
                await store.arenew(stream_id)
            assert not await store.acancelled(stream_id)
            await store.afinish(stream_id, "done")
            result = await asyncio.wait_for(task, 10)
            return result, await store.ainfo(stream_id)
        finally:
            await store.aclose()

    pairs, info = asyncio.run(main())
    assert pairs == expected()
    assert (info.status, info.owner, info.producing) == ("done", "me", False)


def test_a_reader_cancelled_while_waiting_leaves_the_store_usable(make_store: Make) -> None:
    """A client that leaves: its task is cancelled inside the blocking read."""
    store = make_store()

    async def main() -> list[tuple[str, bytes]]:
        try:
            stream_id = await store.acreate()

            async def read() -> None:
                async for _ in store.aread(stream_id):
                    pass

            task = asyncio.create_task(read())
            await asyncio.sleep(0.1)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            for blocks in BATCHES:
                await store.aappend(stream_id, blocks)
            await store.afinish(stream_id, "done")
            return flat([entry async for entry in store.aread(stream_id)])
        finally:
            await store.aclose()

    assert asyncio.run(main()) == expected()


def test_idle_ticks_while_nothing_comes(make_store: Make) -> None:
    store = make_store()
    stream_id = store.create()
    store.append(stream_id, BATCHES[0])
    reader = store.read(stream_id, idle=0.05)
    assert next(reader).id == "1"
    tick = next(reader)
    assert (tick.id, tick.blocks, tick.wire()) == ("1", (), b"")
    store.append(stream_id, BATCHES[1])
    while not (entry := next(reader)).blocks:
        pass
    assert entry.id == "2"
    store.finish(stream_id, "done")
    assert all(not entry.blocks for entry in reader)


# Status, owner, cancel, lease.


def test_finish_and_status(make_store: Make) -> None:
    store = make_store()
    stream_id = store.create()
    info = store.info(stream_id)
    assert info is not None
    assert (info.status, info.owner, info.producing, info.cancel_requested) == (
        "running", None, True, False,
    )  # fmt: skip
    store.append(stream_id, BATCHES[0])
    with pytest.raises(ValueError, match="final status"):
        store.finish(stream_id, "running")
    store.finish(stream_id, "failed")
    info = store.info(stream_id)
    assert info is not None
    assert (info.status, info.producing) == ("failed", False)
    with pytest.raises(StoreError, match="finished"):
        store.append(stream_id, BATCHES[1])
    assert flat(store.read(stream_id)) == expected(BATCHES[:1])


def test_finishing_twice_changes_nothing(make_store: Make) -> None:
    store, other = make_store(), make_store()
    stream_id = produce(store)
    store.finish(stream_id, "failed")
    other.finish(stream_id, "cancelled")
    info = store.info(stream_id)
    assert info is not None and info.status == "done"
    assert flat(other.read(stream_id)) == expected()


def test_owner_is_stored(make_store: Make) -> None:
    store, other = make_store(), make_store()
    stream_id = store.create(owner="user-42")
    info = other.info(stream_id)
    assert info is not None and info.owner == "user-42"


def test_alias_names_the_latest_stream(make_store: Make) -> None:
    store, other = make_store(), make_store()
    assert other.resolve("chat-7") is None
    store.create(alias="chat-7")
    latest = store.create(alias="chat-7")
    assert other.resolve("chat-7") == latest


def test_cancel_is_seen_by_the_producer_elsewhere(make_store: Make) -> None:
    """DELETE on one process, the generation on another: the producer's next check sees it."""
    producer_store, other = make_store(), make_store()
    stream_id = producer_store.create()
    assert not producer_store.cancelled(stream_id)
    stop_seen = threading.Event()
    reader_done: list[list[tuple[str, bytes]]] = []

    def producer() -> None:
        n = 0
        while not producer_store.cancelled(stream_id):
            n += 1
            producer_store.append(stream_id, [f"data: {n}\n\n".encode()])
            time.sleep(0.02)
        stop_seen.set()
        producer_store.append(stream_id, [b'event: error\ndata: {"type": "cancelled"}\n\n'])
        producer_store.finish(stream_id, "cancelled")

    reader = threading.Thread(target=lambda: reader_done.append(flat(other.read(stream_id))))
    reader.start()
    thread = threading.Thread(target=producer)
    thread.start()
    wait_until(lambda: other.info(stream_id) is not None)
    time.sleep(0.1)
    assert other.cancel(stream_id) is True
    # Seen at once, by every process: the producer's next check is what takes time.
    assert producer_store.cancelled(stream_id)
    assert stop_seen.wait(5)
    thread.join(5)
    reader.join(5)
    info = other.info(stream_id)
    assert info is not None and (info.status, info.cancel_requested) == ("cancelled", True)
    assert reader_done[0][-1][1] == b'event: error\ndata: {"type": "cancelled"}\n\n'


def test_attached_readers_are_seen_by_the_producer_elsewhere(make_store: Make) -> None:
    """A reader on one process says it reads; the producer on another sees it, until it lapses."""
    producer_store, reader_store = make_store(), make_store()
    stream_id = producer_store.create()
    assert not producer_store.attached(stream_id)
    reader_store.attach(stream_id, 0.3)
    assert producer_store.attached(stream_id)
    assert wait_until(lambda: not producer_store.attached(stream_id), 5)
    reader_store.attach(stream_id, 30)
    assert producer_store.attached(stream_id)
    # Ids of another shape are never attached, and attaching to one is harmless.
    reader_store.attach("not an id", 30)
    assert not producer_store.attached("not an id")


def test_attached_async(make_store: Make) -> None:
    store = make_store()

    async def main() -> tuple[bool, bool]:
        stream_id = await store.acreate()
        before = await store.aattached(stream_id)
        await store.aattach(stream_id, 30)
        after = await store.aattached(stream_id)
        await store.aclose()
        return before, after

    assert asyncio.run(main()) == (False, True)


def test_lease_expiry_ends_readers_with_producer_lost(make_store: Make) -> None:
    store = make_store(lease=0.3)
    stream_id = store.create()
    store.append(stream_id, BATCHES[0])
    # The producer dies here: nobody renews.
    reader = store.read(stream_id)
    assert next(reader).id == "1"
    with pytest.raises(ProducerLost):
        next(reader)
    info = store.info(stream_id)
    assert info is not None and (info.status, info.producing) == ("running", False)
    # A reader arriving later replays what there is, then gets the same signal.
    late = store.read(stream_id)
    assert next(late).id == "1"
    with pytest.raises(ProducerLost):
        next(late)


def test_lease_expiry_reaches_async_readers(make_store: Make) -> None:
    store = make_store(lease=0.3)
    stream_id = store.create()

    async def main() -> None:
        try:
            with pytest.raises(ProducerLost):
                async for _ in store.aread(stream_id):
                    pass
        finally:
            await store.aclose()

    asyncio.run(main())


def test_renewed_lease_keeps_readers_waiting(make_store: Make) -> None:
    store = make_store(lease=1.0)
    stream_id = store.create()
    done = threading.Event()

    def renew() -> None:
        while not done.wait(0.05):
            store.renew(stream_id)

    renewer = threading.Thread(target=renew)
    renewer.start()
    reader_out: list[Any] = []
    reader = threading.Thread(target=lambda: reader_out.append(flat(store.read(stream_id))))
    reader.start()
    time.sleep(2.0)  # two leases long
    store.append(stream_id, BATCHES[0])
    store.finish(stream_id, "done")
    done.set()
    renewer.join()
    reader.join(5)
    assert reader_out == [expected(BATCHES[:1])]


# Bounds and expiry.


def test_maxlen_bounds_each_stream(make_store: Make) -> None:
    store = make_store(maxlen=5)
    stream_id = store.create()
    for n in range(1, 21):
        store.append(stream_id, [f"data: {n}\n\n".encode()])
    store.finish(stream_id, "done")
    # The last entries are all there...
    assert [e.id for e in store.read(stream_id, "17:0")] == ["18", "19", "20"]
    # ...and a reader further behind is told, never silently skipped ahead.
    with pytest.raises(EventsLost):
        list(store.read(stream_id))
    with pytest.raises(EventsLost):
        list(store.read(stream_id, "3:0"))
    if isinstance(store, RedisStore):
        with redis.Redis.from_url(store.url) as client:
            assert client.xlen(f"indox:{{{stream_id}}}:events") <= 5


def test_reader_left_behind_the_cap_is_told(make_store: Make) -> None:
    store = make_store(maxlen=3)
    stream_id = store.create()
    store.append(stream_id, BATCHES[0])
    reader = store.read(stream_id)
    assert next(reader).id == "1"
    for _ in range(5):
        store.append(stream_id, BATCHES[1])
    with pytest.raises(EventsLost):
        next(reader)


def test_streams_expire(make_store: Make) -> None:
    store = make_store(ttl=0.3)
    stream_id = produce(store)
    assert store.info(stream_id) is not None
    assert wait_until(lambda: store.info(stream_id) is None)
    with pytest.raises(StreamNotFound):
        list(store.read(stream_id))


def test_every_redis_key_has_a_ttl(redis_server: RedisServer, redis_url: str) -> None:  # noqa: F811
    store = RedisStore(redis_url, ttl=100, lease=5)
    try:
        running = store.create(owner="u", alias="chat")
        store.append(running, BATCHES[0])
        store.cancel(running)
        store.attach(running, 50)
        finished = produce(store, owner="v")
        store.renew(running)
        with redis_server.client() as client:
            keys = sorted(k.decode() for k in client.keys("*"))
            tag = f"{{{running}}}"
            assert [k for k in keys if tag in k] == [
                f"indox:{tag}:cancel", f"indox:{tag}:events", f"indox:{tag}:lease",
                f"indox:{tag}:meta", f"indox:{tag}:reader",
            ]  # fmt: skip
            assert "indox:alias:chat" in keys
            for key in keys:
                ttl = client.pttl(key)
                assert 0 < ttl <= 100_000, (key, ttl)
            assert client.pttl(f"indox:{tag}:lease") <= 5_000
            # A finished stream has no lease left, and its keys live ttl from the end.
            assert not client.exists(f"indox:{{{finished}}}:lease")
            assert client.pttl(f"indox:{{{finished}}}:meta") > 90_000
    finally:
        store.close()


# Unknown ids and Redis faults.


def test_unknown_ids(make_store: Make) -> None:
    store = make_store()
    for stream_id in ["A" * 22, "not/an id", "", "x}:meta"]:
        assert store.info(stream_id) is None
        assert store.cancel(stream_id) is False
        assert store.cancelled(stream_id) is False
        with pytest.raises(StreamNotFound):
            list(store.read(stream_id))
        with pytest.raises(StreamNotFound):
            store.append(stream_id, BATCHES[0])
        with pytest.raises(StreamNotFound):
            store.renew(stream_id)
        with pytest.raises(StreamNotFound):
            store.finish(stream_id, "done")


def test_unknown_ids_async(make_store: Make) -> None:
    store = make_store()

    async def main() -> None:
        try:
            assert await store.ainfo("D" * 22) is None
            assert await store.acancel("D" * 22) is False
            with pytest.raises(StreamNotFound):
                async for _ in store.aread("D" * 22):
                    pass
            with pytest.raises(StreamNotFound):
                await store.aappend("D" * 22, BATCHES[0])
        finally:
            await store.aclose()

    asyncio.run(main())


def test_an_unknown_id_creates_no_key(redis_server: RedisServer, redis_url: str) -> None:  # noqa: F811
    store = RedisStore(redis_url)
    try:
        assert store.cancel("B" * 22) is False
        assert store.info("B" * 22) is None
        with pytest.raises(StreamNotFound):
            store.append("B" * 22, BATCHES[0])
        with pytest.raises(StreamNotFound):
            store.renew("B" * 22)
        with redis_server.client() as client:
            assert client.keys("*") == []
    finally:
        store.close()


def reads(server: RedisServer) -> int:
    """How many reads the server has made from its clients' sockets: its round trips."""
    with server.client() as client:
        return int(client.info("stats")["total_reads_processed"])


def test_the_calls_of_many_tasks_share_round_trips(
    redis_server: RedisServer,  # noqa: F811
    redis_url: str,  # noqa: F811
) -> None:
    """Many producers on one loop: their appends and cancel checks go to Redis in a few
    pipelines, and each gets its own answer, an error included."""
    store = RedisStore(redis_url)
    streams = 200

    async def main() -> tuple[list[Any], list[bool]]:
        try:
            ids = [await store.acreate() for _ in range(streams)]
            ids[7] = "G" * 22  # never created: its append alone fails
            await store.acancel(ids[3])
            before = reads(redis_server)
            appended = await asyncio.gather(
                *(store.aappend(i, [f"data: {n}\n\n".encode()]) for n, i in enumerate(ids)),
                return_exceptions=True,
            )
            cancelled = await asyncio.gather(*(store.acancelled(i) for i in ids))
            # Sent one by one, these 400 calls would take 400 reads (plus the INFO ones).
            assert reads(redis_server) - before < 20
            return appended, cancelled
        finally:
            await store.aclose()

    try:
        appended, cancelled = asyncio.run(main())
        assert isinstance(appended[7], StreamNotFound)
        assert [a for n, a in enumerate(appended) if n != 7] == ["1"] * (streams - 1)
        assert [n for n, c in enumerate(cancelled) if c] == [3]
        info = store.info(store.create())  # the blocking half works beside it
        assert info is not None and info.status == "running"
    finally:
        store.close()


def test_a_blocked_read_holds_back_no_other_call(redis_url: str) -> None:  # noqa: F811
    """A reader waits in ``XREAD BLOCK`` (up to 5 s here) on a connection of its own:
    the calls made beside it, the append it waits for among them, are not queued behind it."""
    store = RedisStore(redis_url, poll=5.0)

    async def main() -> list[Entry]:
        try:
            followed = await store.acreate()
            written = [await store.acreate() for _ in range(20)]

            async def read() -> list[Entry]:
                return [entry async for entry in store.aread(followed)]

            async def write(stream_id: str, until: float) -> None:
                while time.monotonic() < until:
                    await store.aappend(stream_id, BATCHES[0])

            # For half a second, twenty writers keep calls on their way: the reader
            # starts to block among them.
            until = time.monotonic() + 0.5
            reader = asyncio.create_task(read())
            await asyncio.gather(*(write(stream_id, until) for stream_id in written))
            await store.aappend(followed, BATCHES[0])
            await store.afinish(followed, "done")
            return await asyncio.wait_for(reader, 10)
        finally:
            await store.aclose()

    started = time.monotonic()
    entries = asyncio.run(main())
    assert time.monotonic() - started < 3.0
    assert [entry.blocks for entry in entries] == [tuple(BATCHES[0])]


def test_the_calls_of_many_threads_share_round_trips(
    redis_server: RedisServer,  # noqa: F811
    redis_url: str,  # noqa: F811
) -> None:
    """The blocking half: threads that call at once share pipelines, and each gets its
    own answer, an error included."""
    store = RedisStore(redis_url)
    threads = 100
    ids = [store.create() for _ in range(threads)]
    ids[7] = "T" * 22  # never created: its append alone fails
    store.cancel(ids[3])
    answers: list[Any] = [None] * threads
    start = threading.Barrier(threads)

    def call(n: int) -> None:
        start.wait()
        try:
            answers[n] = (store.append(ids[n], [b"data: x\n\n"]), store.cancelled(ids[n]))
        except StoreError as exc:
            answers[n] = exc

    before = reads(redis_server)
    workers = [threading.Thread(target=call, args=(n,)) for n in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(10)
    after = reads(redis_server)
    try:
        # One by one, these 200 calls would take 200 reads or more.
        assert after - before < 100
        assert isinstance(answers[7], StreamNotFound)
        assert [a for n, a in enumerate(answers) if n not in (3, 7)] == [("1", False)] * 98
        assert answers[3] == ("1", True)
    finally:
        store.close()


def test_a_blocked_read_holds_back_no_other_thread(redis_url: str) -> None:  # noqa: F811
    """A thread following a stream (``XREAD BLOCK``, up to 5 s here) holds back none of
    the calls other threads make meanwhile."""
    store = RedisStore(redis_url, poll=5.0)
    followed = store.create()
    written = [store.create() for _ in range(20)]
    entries: list[Entry] = []
    reader = threading.Thread(target=lambda: entries.extend(store.read(followed)))
    until = time.monotonic() + 0.5

    def write(stream_id: str) -> None:
        while time.monotonic() < until:
            store.append(stream_id, BATCHES[0])

    started = time.monotonic()
    writers = [threading.Thread(target=write, args=(s,)) for s in written]
    for thread in [reader, *writers]:
        thread.start()
    for writer in writers:
        writer.join(10)
    store.append(followed, BATCHES[0])
    store.finish(followed, "done")
    reader.join(10)
    try:
        assert time.monotonic() - started < 3.0
        assert [entry.blocks for entry in entries] == [tuple(BATCHES[0])]
    finally:
        store.close()


def test_a_redis_entry_holds_up_to_3000_blocks(redis_url: str) -> None:  # noqa: F811
    store = RedisStore(redis_url)
    try:
        stream_id = store.create()
        store.append(stream_id, [b"data: x\n\n"] * 3000)
        with pytest.raises(ValueError, match="at most 3000 blocks"):
            store.append(stream_id, [b"data: x\n\n"] * 3001)
        store.finish(stream_id, "done")
        assert [len(entry.blocks) for entry in store.read(stream_id)] == [3000]
    finally:
        store.close()


PRODUCER = """
import sys, time
from indox_integrations.stores import RedisStore
store = RedisStore(sys.argv[1], lease=1.0)
stream_id = store.create(owner="p")
store.append(stream_id, [b"data: before\\n\\n"])
print(stream_id, flush=True)
while True:
    time.sleep(0.1)
    store.renew(stream_id)
"""


def test_killed_producer_process_ends_readers_with_producer_lost(redis_url: str) -> None:  # noqa: F811
    producer = subprocess.Popen(
        [sys.executable, "-c", PRODUCER, redis_url], stdout=subprocess.PIPE, text=True
    )
    store = RedisStore(redis_url, poll=0.05)
    try:
        assert producer.stdout is not None
        stream_id = producer.stdout.readline().strip()
        time.sleep(1.5)  # longer than the lease: alive only because it renews
        info = store.info(stream_id)
        assert info is not None and info.producing
        reader = store.read(stream_id, idle=0.1)
        assert next(reader).blocks == (b"data: before\n\n",)
        producer.send_signal(signal.SIGKILL)
        producer.wait(5)
        with pytest.raises(ProducerLost):
            for _ in reader:
                pass
    finally:
        producer.kill()
        producer.communicate(timeout=5)
        store.close()


def test_unreachable_redis_raises_store_unavailable() -> None:
    store = RedisStore(f"redis://:secret@127.0.0.1:{free_port()}/0")
    with pytest.raises(StoreUnavailable, match="unreachable") as caught:
        store.create()
    assert "secret" not in str(caught.value)
    with pytest.raises(StoreUnavailable):
        store.info("C" * 22)

    async def main() -> None:
        try:
            with pytest.raises(StoreUnavailable):
                await store.acreate()
        finally:
            await store.aclose()

    asyncio.run(main())


def test_redis_going_away_ends_readers_cleanly() -> None:
    """Stopped mid-stream: the blocked reader raises StoreUnavailable; restarted (empty):
    the stream is gone, and the same store works again."""
    with RedisServer() as server:
        store = RedisStore(server.url, poll=0.05)
        try:
            stream_id = store.create()
            store.append(stream_id, BATCHES[0])
            failures: list[BaseException] = []

            def read() -> None:
                try:
                    for _ in store.read(stream_id):
                        pass
                except BaseException as exc:
                    failures.append(exc)

            reader = threading.Thread(target=read)
            reader.start()
            time.sleep(0.2)
            server.kill()
            reader.join(10)
            assert not reader.is_alive()
            assert [type(exc) for exc in failures] == [StoreUnavailable]
            with pytest.raises(StoreUnavailable):
                store.append(stream_id, BATCHES[1])
            server.start()
            assert store.info(stream_id) is None
            with pytest.raises(StreamNotFound):
                store.append(stream_id, BATCHES[1])
            with server.client() as client:
                assert client.keys("*") == []
            assert produce(store)
        finally:
            store.close()


def test_redis_going_away_ends_async_readers_cleanly() -> None:
    with RedisServer() as server:
        store = RedisStore(server.url, poll=0.05)

        async def main() -> None:
            try:
                stream_id = await store.acreate()

                async def read() -> None:
                    async for _ in store.aread(stream_id):
                        pass

                task = asyncio.create_task(read())
                await asyncio.sleep(0.2)
                server.stop()
                with pytest.raises(StoreUnavailable):
                    await asyncio.wait_for(task, 10)
                server.start()
                assert await store.ainfo(stream_id) is None
            finally:
                await store.aclose()

        asyncio.run(main())


def test_missing_redis_py_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [m for m in sys.modules if m == "redis" or m.startswith("redis.")]:
        monkeypatch.setitem(sys.modules, name, None)
    with pytest.raises(ImportError, match=r'pip install "indox-integrations\[redis\]"'):
        RedisStore("redis://127.0.0.1:1/0")


@pytest.mark.skipif(
    sys.version_info < (3, 11), reason="no Task.cancelling(): a dropped cancel goes unseen"
)
def test_every_cancelled_redis_reader_ends(redis_url: str) -> None:  # noqa: F811
    """Readers cancelled at any moment of their round trips end at once. (On Python 3.11,
    redis-py's ``asyncio.wait_for`` around a socket write can drop a cancel landing as
    the write completes; the store delivers it.)"""
    store = RedisStore(redis_url, poll=0.002)
    readers = 150

    async def main() -> tuple[int, int]:
        try:
            stream_id = await store.acreate()

            async def read() -> None:
                async for _ in store.aread(stream_id):
                    pass

            tasks = [asyncio.create_task(read()) for _ in range(readers)]
            await asyncio.sleep(0.05)
            for task in tasks:  # one each loop turn: cancels land at every point
                task.cancel()
                await asyncio.sleep(0.002)
            done, running = await asyncio.wait(tasks, timeout=3)
            for task in running:
                task.cancel()
            return sum(task.cancelled() for task in done), len(running)
        finally:
            await store.aclose()

    assert asyncio.run(main()) == (readers, 0)
