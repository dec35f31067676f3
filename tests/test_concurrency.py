"""Feeds pull an upstream ahead of the consumer, in batches, and close it exactly once."""

from __future__ import annotations

import asyncio
import contextvars
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator

import pytest
from waits import await_until, wait_until

from indox_integrations import async_sse_stream, concurrency
from indox_integrations.clients import LLMRequest, acall_client, client_error
from indox_integrations.concurrency import (
    MAX_BUFFERED,
    FeedTimeout,
    OutOfThreads,
    TaskFeed,
    ThreadFeed,
    _Batches,
    _resolve,
    close_async,
    close_sync,
)
from indox_integrations.requests import CompletionRequest


class Counter:
    """An endless upstream that counts what was pulled and whether it was closed."""

    def __init__(self) -> None:
        self.pulled = 0
        self.closed = 0

    def sync(self, delay: float = 0.0) -> Iterator[int]:
        try:
            while True:
                if delay:
                    time.sleep(delay)
                self.pulled += 1
                yield self.pulled
        finally:
            self.closed += 1

    async def async_(self, delay: float = 0.0) -> AsyncIterator[int]:
        try:
            while True:
                await asyncio.sleep(delay)
                self.pulled += 1
                yield self.pulled
        finally:
            self.closed += 1


def test_ready_chunks_come_in_one_batch_then_done() -> None:
    feed = ThreadFeed(iter(range(10)))
    feed.start()
    assert wait_until(lambda: feed.done)
    assert feed.get(1.0) == list(range(10))
    assert feed.get(1.0) == []
    assert feed.error is None


def test_back_pressure_bounds_what_is_pulled_ahead() -> None:
    counter = Counter()
    feed = ThreadFeed(counter.sync())
    feed.start()
    assert wait_until(lambda: counter.pulled >= MAX_BUFFERED)
    time.sleep(0.1)
    assert counter.pulled <= MAX_BUFFERED + 1
    batch = feed.get(1.0)
    assert batch == list(range(1, len(batch) + 1)) and len(batch) >= MAX_BUFFERED
    assert wait_until(lambda: counter.pulled > len(batch))
    feed.stop()
    assert wait_until(lambda: feed.closed, 2.0) and counter.closed == 1


def test_silence_raises_feed_timeout() -> None:
    counter = Counter()
    feed = ThreadFeed(counter.sync(delay=0.5))
    feed.start()
    started = time.monotonic()
    with pytest.raises(FeedTimeout):
        feed.get(0.05)
    assert time.monotonic() - started < 0.4

    async def main() -> None:
        with pytest.raises(FeedTimeout):
            await feed.aget(0.05)
        assert await feed.aget(2.0) == [1]

    asyncio.run(main())
    feed.stop()
    assert wait_until(lambda: feed.closed, 2.0) and counter.closed == 1


def test_upstream_error_is_kept_for_the_consumer() -> None:
    def failing() -> Iterator[str]:
        yield "a"
        raise ConnectionError("reset")

    feed = ThreadFeed(failing())
    feed.start()
    assert wait_until(lambda: feed.done)
    assert feed.get(1.0) == ["a"]
    assert feed.get(1.0) == []
    assert isinstance(feed.error, ConnectionError)
    assert feed.closed


def test_stop_closes_a_generator_once_its_current_next_returns() -> None:
    counter = Counter()
    feed = ThreadFeed(counter.sync(delay=0.3))
    feed.start()
    assert wait_until(lambda: counter.pulled == 1)
    feed.stop()
    assert not feed.closed  # it is inside time.sleep: it cannot be closed yet
    assert wait_until(lambda: feed.closed, 2.0)
    assert counter.closed == 1
    time.sleep(0.4)
    assert counter.pulled == 2  # the pull that was running, then nothing more


class BlockingResponse:
    """Like an HTTP response stream: ``__next__`` blocks on the network until ``close()``."""

    def __init__(self) -> None:
        self.gone = threading.Event()
        self.close_calls = 0

    def __iter__(self) -> BlockingResponse:
        return self

    def __next__(self) -> str:
        if self.gone.wait(10):
            raise ConnectionError("response closed")
        return "late"

    def close(self) -> None:
        self.close_calls += 1
        self.gone.set()


def test_stop_closes_a_response_at_once_which_interrupts_its_read() -> None:
    response = BlockingResponse()
    feed = ThreadFeed(response)
    feed.start()
    time.sleep(0.05)
    started = time.monotonic()
    feed.stop()
    assert feed.closed and response.close_calls == 1
    assert wait_until(lambda: feed.done, timeout=2.0)
    assert time.monotonic() - started < 1.0
    assert response.close_calls == 1


class SDKStream(BlockingResponse):
    """Like the openai and anthropic SDKs' ``Stream``: a generator ``__iter__`` over a response."""

    def __iter__(self) -> Iterator[str]:  # type: ignore[override]
        while True:
            yield self.__next__()


def test_stop_closes_a_stream_whose_iterator_is_a_generator_at_once() -> None:
    # The generator cannot be closed from here, but the stream's own close() can: it
    # interrupts the read, so a silent SDK stream is not left open until its next event.
    response = SDKStream()
    feed = ThreadFeed(response)
    feed.start()
    time.sleep(0.05)
    started = time.monotonic()
    feed.stop()
    assert feed.closed and response.close_calls == 1
    assert wait_until(lambda: feed.done, timeout=2.0)
    assert time.monotonic() - started < 1.0


class RacingStream:
    """A stream whose first ``close()`` fails, as a running generator's does, while its
    read returns and the feed's thread reaches its own close meanwhile."""

    def __init__(self) -> None:
        self.feed: ThreadFeed | None = None
        self.read = threading.Event()
        self.closes = 0

    def __iter__(self) -> RacingStream:
        return self

    def __next__(self) -> str:
        self.read.wait(10)
        return "late"

    def close(self) -> None:
        if self.feed is not None and not self.feed.done:
            self.read.set()
            assert wait_until(lambda: self.feed is not None and self.feed.done)
            raise ValueError("generator already executing")
        self.closes += 1


def test_a_close_that_fails_while_the_thread_finishes_is_retried() -> None:
    stream = RacingStream()
    feed = stream.feed = ThreadFeed(stream)
    feed.start()
    time.sleep(0.05)
    feed.stop()
    assert feed.closed and stream.closes == 1


def test_the_feed_thread_sees_the_callers_context() -> None:
    request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id")
    request_id.set("req-7")

    def upstream() -> Iterator[str]:
        yield request_id.get("missing")

    feed = ThreadFeed(upstream())
    feed.start()
    assert wait_until(lambda: feed.done)
    assert feed.get(1.0) == ["req-7"]


def test_task_feed_batches_and_cancels() -> None:
    counter = Counter()

    async def main() -> None:
        feed = TaskFeed(counter.async_(delay=0.01))
        feed.start()
        first = await feed.aget(2.0)
        assert first and first[0] == 1
        await asyncio.sleep(0.1)
        batch = await feed.aget(2.0)
        assert len(batch) > 1 and batch[0] == first[-1] + 1
        feed.stop()
        assert await await_until(lambda: feed.closed, 2.0)
        assert feed.done

    asyncio.run(main())
    assert counter.closed == 1


def test_task_feed_back_pressure_and_error() -> None:
    counter = Counter()

    async def failing() -> AsyncIterator[str]:
        yield "x"
        raise ValueError("bad chunk stream")

    async def main() -> None:
        feed = TaskFeed(counter.async_())
        feed.start()
        await asyncio.sleep(0.1)
        assert MAX_BUFFERED <= counter.pulled <= MAX_BUFFERED + 1
        feed.stop()
        assert await await_until(lambda: feed.closed, 2.0)

        broken = TaskFeed(failing())
        broken.start()
        assert await broken.aget(1.0) == ["x"]
        assert await broken.aget(1.0) == []
        assert isinstance(broken.error, ValueError)

    asyncio.run(main())
    assert counter.closed == 1


def test_close_sync_once_per_object_and_failures_are_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    calls: list[str] = []

    class Closable:
        def close(self) -> None:
            calls.append("closed")

    class Broken:
        def close(self) -> None:
            raise OSError("already gone")

    same = Closable()
    close_sync(same, same, object(), Broken(), Closable())
    assert calls == ["closed", "closed"]
    assert [r.getMessage() for r in caplog.records] == ["closing the upstream failed"]


def test_close_async_prefers_aclose_and_awaits_close() -> None:
    calls: list[str] = []

    class WithAclose:
        async def aclose(self) -> None:
            calls.append("aclose")

        def close(self) -> None:
            calls.append("close")

    class AsyncClose:  # openai.AsyncStream has an async close()
        async def close(self) -> None:
            calls.append("async close")

    class SyncClose:
        def close(self) -> None:
            calls.append("sync close")

    one = WithAclose()
    asyncio.run(close_async(one, one, AsyncClose(), SyncClose(), 42))
    assert calls == ["aclose", "async close", "sync close"]


def test_stop_from_another_thread_wakes_an_idle_loop() -> None:
    counter = Counter()
    log: list[str] = []

    async def main() -> None:
        feed = TaskFeed(counter.async_(delay=30))
        feed.start()
        await asyncio.sleep(0.05)
        threading.Thread(target=feed.stop).start()
        assert await await_until(lambda: feed.closed, 2.0)
        log.append("closed")

    asyncio.run(main(), debug=True)
    assert log == ["closed"] and counter.closed == 1


def test_a_cancel_landing_with_a_chunk_is_not_lost() -> None:
    """Django's ASGI handler cancels once; asyncio.wait_for (< 3.12) could drop it."""

    async def main() -> None:
        batches = _Batches()
        consumer = asyncio.ensure_future(batches.aget(10.0))
        await asyncio.sleep(0)
        with batches._lock:
            batches._items.append("chunk")
            assert batches._waiter is not None
            _resolve(batches._waiter)
        consumer.cancel()
        with pytest.raises(asyncio.CancelledError):
            await consumer

    asyncio.run(main())


def test_back_pressure_counts_bytes_as_well_as_chunks() -> None:
    """Megabyte chunks: a stalled consumer holds about 64 KiB, not 64 MB."""
    pulled = 0

    def big() -> Iterator[bytes]:
        nonlocal pulled
        while True:
            pulled += 1
            yield b"x" * 1_000_000

    async def big_async() -> AsyncIterator[bytes]:
        nonlocal pulled
        while True:
            pulled += 1
            yield b"x" * 1_000_000
            await asyncio.sleep(0)

    feed = ThreadFeed(big())
    feed.start()
    assert wait_until(lambda: pulled >= 1)
    time.sleep(0.2)
    assert pulled <= 2
    assert len(feed.get(1.0)) == 1
    feed.stop()

    async def main() -> None:
        nonlocal pulled
        pulled = 0
        task_feed = TaskFeed(big_async())
        task_feed.start()
        await asyncio.sleep(0.2)
        assert 1 <= pulled <= 2
        task_feed.stop()

    asyncio.run(main())


# --- the threads of sync upstreams ---------------------------------------------------


def test_starting_a_thread_feed_never_starts_a_thread_in_the_caller(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """On the event loop, ``Thread.start()`` would wait for the new thread to win the GIL."""
    ThreadFeed(iter([])).start()  # the spawner exists: it starts once per process
    caller = threading.get_ident()
    started_by_caller: list[str] = []
    start = threading.Thread.start

    def recording_start(thread: threading.Thread) -> None:
        if threading.get_ident() == caller:
            started_by_caller.append(thread.name)
        start(thread)

    monkeypatch.setattr(threading.Thread, "start", recording_start)

    async def run() -> list[list[int]]:
        feeds = [ThreadFeed(iter(range(3))) for _ in range(20)]
        for feed in feeds:
            feed.start()  # more feeds than idle threads: new ones are needed
        return [[item for batch in await drain(feed) for item in batch] for feed in feeds]

    assert asyncio.run(run()) == [[0, 1, 2]] * 20
    assert started_by_caller == []


async def drain(feed: ThreadFeed) -> list[list[int]]:
    batches = []
    while batch := await feed.aget(5.0):
        batches.append(batch)
    return batches


def test_a_finished_upstreams_thread_runs_the_next_upstream(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ran_in: list[int] = []

    def upstream() -> Iterator[int]:
        ran_in.append(threading.get_ident())
        yield 1

    first = ThreadFeed(upstream())
    first.start()
    assert wait_until(lambda: first.closed, 3)
    workers = concurrency._workers
    assert wait_until(lambda: workers._idle and workers._spawning == 0)
    started: list[str] = []
    start = threading.Thread.start
    monkeypatch.setattr(
        threading.Thread, "start", lambda thread: (started.append(thread.name), start(thread))[1]
    )
    second = ThreadFeed(upstream())
    second.start()
    assert wait_until(lambda: second.closed, 3)
    assert started == []  # an idle thread took it
    names = {t.ident: t.name for t in threading.enumerate()}
    assert names.get(ran_in[1]) in ("indox-upstream", "indox-idle")


def test_idle_threads_end_and_busy_ones_are_named_for_their_job(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(concurrency, "IDLE_SECONDS", 0.05)
    release = threading.Event()
    names: list[str] = []
    threads: list[threading.Thread] = []

    def upstream() -> Iterator[int]:
        names.append(threading.current_thread().name)
        threads.append(threading.current_thread())
        release.wait(5)
        yield 1

    feeds = [ThreadFeed(upstream()) for _ in range(5)]
    for feed in feeds:
        feed.start()
    assert wait_until(lambda: len(names) == 5)
    assert names == ["indox-upstream"] * 5
    release.set()
    assert wait_until(lambda: all(feed.closed for feed in feeds), 3)
    assert wait_until(lambda: not any(thread.is_alive() for thread in threads))


@pytest.fixture
def out_of_threads(monkeypatch: pytest.MonkeyPatch, refuse_threads: Callable[[str], None]) -> None:
    """A process at its thread limit: no new worker starts (no idle one is left either)."""
    monkeypatch.setattr(concurrency, "_workers", concurrency._Workers())
    refuse_threads(concurrency.IDLE_NAME)


@pytest.mark.usefixtures("out_of_threads")
def test_a_stream_no_thread_can_be_started_for_fails_at_once_and_closes_its_upstream() -> None:
    class Upstream:
        closed = False

        def __iter__(self) -> Upstream:
            return self

        def __next__(self) -> str:
            return "never read"

        def close(self) -> None:
            self.closed = True

    upstream = Upstream()

    async def run() -> tuple[bytes, float]:
        began = time.monotonic()
        stream = async_sse_stream(upstream, heartbeat=30, idle_timeout=60)
        return b"".join([data async for data in stream]), time.monotonic() - began

    wire, took = asyncio.run(run())
    assert b"event: error" in wire and b"upstream_error" in wire and b"OutOfThreads" in wire
    assert b"never read" not in wire
    assert took < 5  # at once, not at the idle timeout
    assert upstream.closed


@pytest.mark.usefixtures("out_of_threads")
def test_a_sync_client_call_no_thread_can_be_started_for_is_a_503() -> None:
    calls: list[LLMRequest] = []

    def client(request: LLMRequest) -> Iterator[str]:
        calls.append(request)
        return iter(["hi"])

    async def call() -> BaseException:
        try:
            await acall_client(client, CompletionRequest(prompt="hi"))
        except OutOfThreads as exc:
            return exc
        raise AssertionError("the call ran")

    error = asyncio.run(asyncio.wait_for(call(), 5))
    status, body = client_error(error)
    assert calls == [] and status == 503
    assert body["error"]["message"].startswith("OutOfThreads: no thread could be started")
