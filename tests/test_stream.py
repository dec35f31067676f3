"""The streaming pipeline: wire format, usage, errors, heartbeats, timeouts, closing."""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest
from httpx_sse import ServerSentEvent
from httpx_sse._decoders import SSEDecoder
from upstreams import GUIDE_NORMALIZED, GUIDE_USAGE, Tracker, async_upstream, sync_upstream
from waits import await_until, wait_until

from indox_integrations import (
    AsyncDemoClient,
    DemoClient,
    StreamReport,
    async_sse_stream,
    sse_stream,
)

OPEN = b": stream open\n\n"
PING = b": ping\n\n"
DONE = b"event: done\ndata: [DONE]\n\n"
SECRET = "sk-test-123"


# sse_stream over a sync upstream; async_sse_stream over a sync one (thread) or an async one (task).
MODES = ("sync", "async+sync", "async+async")


@pytest.fixture(params=MODES)
def mode(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def tracker() -> Tracker:
    return Tracker()


@pytest.fixture
def records(caplog: pytest.LogCaptureFixture) -> Callable[[], list[logging.LogRecord]]:
    """The per-stream log records (those carrying a StreamReport)."""
    caplog.set_level(logging.INFO, logger="indox_integrations")
    return lambda: [r for r in caplog.records if hasattr(r, "indox_stream")]


def upstream(mode: str, tracker: Tracker, **options: Any) -> Any:
    if mode == "async+async":
        return async_upstream(tracker, **options)
    return sync_upstream(tracker, **options)


def consume(mode: str, source: Any, **options: Any) -> bytes:
    """Run the whole stream through the pipeline that ``mode`` names."""
    if mode == "sync":
        return b"".join(sse_stream(source, **options))

    async def main() -> bytes:
        return b"".join([data async for data in async_sse_stream(source, **options)])

    return asyncio.run(main())


def parse(wire: bytes) -> list[ServerSentEvent]:
    decoder, events = SSEDecoder(), []
    for line in wire.decode("utf-8").split("\n")[:-1]:
        event = decoder.decode(line)
        if event is not None:
            events.append(event)
    return events


def texts(events: list[ServerSentEvent]) -> list[str]:
    return [e.data for e in events if e.event == "message"]


def named(events: list[ServerSentEvent], name: str) -> list[Any]:
    return [json.loads(e.data) for e in events if e.event == name]


class ResponseLike:
    """An HTTP-response-like upstream: a generator ``__iter__`` plus a counted ``close()``."""

    def __init__(
        self, chunks: list[Any], delay: float = 0.0, fail: bool = False, first_delay: float = 0.0
    ) -> None:
        self.chunks = chunks
        self.delay = delay
        self.first_delay = first_delay
        self.fail = fail
        self.close_calls = 0
        self.pulled = 0

    def __iter__(self) -> Iterator[Any]:
        time.sleep(self.first_delay)
        for chunk in self.chunks:
            self.pulled += 1
            yield chunk
            time.sleep(self.delay)
        if self.fail:
            raise ConnectionError(f"connection reset; key {SECRET}")

    def close(self) -> None:
        self.close_calls += 1


class AsyncResponseLike:
    """The async twin, with a counted ``aclose()`` like httpx's responses."""

    def __init__(
        self, chunks: list[Any], delay: float = 0.0, fail: bool = False, first_delay: float = 0.0
    ) -> None:
        self.chunks = chunks
        self.delay = delay
        self.first_delay = first_delay
        self.fail = fail
        self.close_calls = 0
        self.pulled = 0

    async def __aiter__(self) -> AsyncIterator[Any]:
        await asyncio.sleep(self.first_delay)
        for chunk in self.chunks:
            self.pulled += 1
            yield chunk
            await asyncio.sleep(self.delay)
        if self.fail:
            raise ConnectionError(f"connection reset; key {SECRET}")

    async def aclose(self) -> None:
        self.close_calls += 1


def response_like(mode: str, *args: Any, **options: Any) -> ResponseLike | AsyncResponseLike:
    cls = AsyncResponseLike if mode == "async+async" else ResponseLike
    return cls(*args, **options)


# --- wire format -----------------------------------------------------------------


def test_wire_opens_sends_each_chunk_and_ends_with_done(mode: str, tracker: Tracker) -> None:
    chunks = ["Hello", " world", "line one\nline two", "", "[DONE]", "data: x"]
    wire = consume(mode, upstream(mode, tracker, chunks=chunks, delay=0.0))
    assert wire.startswith(OPEN)
    assert wire.endswith(DONE)
    assert PING not in wire
    events = parse(wire)
    assert texts(events) == ["Hello", " world", "line one\nline two", "[DONE]", "data: x"]
    assert [(e.event, e.data) for e in events[-1:]] == [("done", "[DONE]")]
    assert tracker.snapshot()["closed"] == 1 and tracker.completed == 1


@pytest.mark.parametrize("runner", ["sync", "async"])
def test_a_full_response_is_one_text_event_then_usage(runner: str) -> None:
    response = {
        "data": "whole answer",
        "usage": {"tokens_prompt": 2, "tokens_completion": 3, "tokens_total": 5},
        "model": "m",
    }
    wire = consume("sync" if runner == "sync" else "async+sync", response, usage="attach")
    events = parse(wire)
    assert texts(events) == ["whole answer"]
    assert named(events, "usage") == [
        {"prompt_tokens": 2, "completion_tokens": 3, "total_tokens": 5, "model": "m"}
    ]
    assert wire.endswith(DONE)


def test_many_fast_chunks_arrive_in_order(mode: str, tracker: Tracker) -> None:
    chunks = [f"{i}," for i in range(500)]
    wire = consume(mode, upstream(mode, tracker, chunks=chunks, delay=0.0))
    assert "".join(texts(parse(wire))) == "".join(chunks)


# --- usage -----------------------------------------------------------------------


@pytest.mark.parametrize("policy", ["skip", "attach"])
def test_usage_policy_and_on_usage(mode: str, tracker: Tracker, policy: str) -> None:
    seen: list[dict[str, Any]] = []
    source = upstream(mode, tracker, chunks=["a", "b", GUIDE_USAGE], delay=0.0)
    wire = consume(mode, source, usage=policy, on_usage=seen.append)
    events = parse(wire)
    assert texts(events) == ["a", "b"]
    assert seen == [GUIDE_NORMALIZED]
    if policy == "skip":
        assert named(events, "usage") == []
        assert b"tokens" not in wire
    else:
        assert named(events, "usage") == [GUIDE_NORMALIZED]
        assert [e.event for e in events[-2:]] == ["usage", "done"]


def test_async_on_usage_callback_runs_on_the_loop(tracker: Tracker) -> None:
    seen: list[dict[str, Any]] = []

    async def on_usage(usage: dict[str, Any]) -> None:
        await asyncio.sleep(0)
        seen.append(usage)

    async def main() -> None:
        stream = async_sse_stream(async_upstream(tracker, ["x", GUIDE_USAGE]), on_usage=on_usage)
        async for _ in stream:
            pass
        assert await await_until(lambda: bool(seen))

    asyncio.run(main())
    assert seen == [GUIDE_NORMALIZED]


def test_client_disconnect_reports_partial_usage_sync() -> None:
    usage: list[dict[str, Any]] = []
    reports: list[StreamReport] = []
    source = DemoClient(delay=0.02).completion("Hi there", model="demo/story", stream=True)
    stream = sse_stream(source, on_usage=usage.append, on_complete=reports.append)
    got = 0
    for data in stream:
        got += data.startswith(b"data: ")
        if got == 3:
            break
    stream.close()
    assert source.closed or wait_until(lambda: source.closed)
    [partial] = usage
    assert partial["prompt_tokens"] == 2
    assert 3 <= partial["completion_tokens"] < 100
    assert partial["total_tokens"] == 2 + partial["completion_tokens"]
    assert (partial["model"], partial["provider"]) == ("demo/story", "demo")
    assert reports[0].outcome == "client_disconnected" and reports[0].usage == partial


def test_client_disconnect_reports_partial_usage_async() -> None:
    usage: list[dict[str, Any]] = []

    async def main() -> Any:
        source = await AsyncDemoClient(delay=0.02).completion("Hi", model="demo/story", stream=True)
        stream = async_sse_stream(source, on_usage=usage.append)
        got = 0
        async for data in stream:
            got += data.startswith(b"data: ")
            if got == 3:
                break
        await stream.aclose()
        assert await await_until(lambda: source.closed)
        return source

    asyncio.run(main())
    [partial] = usage
    assert 3 <= partial["completion_tokens"] < 100
    assert partial["model"] == "demo/story"


# --- upstream errors -------------------------------------------------------------


def test_upstream_exception_becomes_an_error_event_without_secrets(
    mode: str, tracker: Tracker, records: Callable[[], list[logging.LogRecord]]
) -> None:
    reports: list[StreamReport] = []
    source = upstream(mode, tracker, chunks=["one ", "two ", "three "], delay=0.0, fail_after=2)
    wire = consume(mode, source, on_complete=reports.append)
    events = parse(wire)
    assert texts(events) == ["one ", "two "]
    [error] = named(events, "error")
    assert set(error) == {"type", "message"}
    assert error["type"] == "upstream_error"
    assert error["message"] == "the model stream failed (RuntimeError)"
    assert SECRET.encode() not in wire and b"Traceback" not in wire
    assert wire.endswith(DONE) and [e.event for e in events[-2:]] == ["error", "done"]
    [record] = records()
    assert record.levelno == logging.ERROR
    assert record.indox_stream.outcome == "upstream_error"  # type: ignore[attr-defined]
    assert record.exc_info is not None and isinstance(record.exc_info[1], RuntimeError)
    assert SECRET in str(record.exc_info[1])
    assert reports[0].outcome == "upstream_error" and isinstance(reports[0].error, RuntimeError)
    assert tracker.snapshot()["closed"] == 1


def test_expose_errors_puts_the_exception_text_in_the_event(tracker: Tracker) -> None:
    source = sync_upstream(tracker, chunks=["a"], fail_after=0)
    [error] = named(parse(consume("sync", source, expose_errors=True)), "error")
    assert error == {
        "type": "upstream_error",
        "message": f"RuntimeError: upstream exploded with secret {SECRET}",
    }


def test_in_band_error_chunk_ends_the_stream(mode: str, tracker: Tracker) -> None:
    chunks = ["partial", {"error": {"message": "model overloaded"}}, "never sent"]
    wire = consume(mode, upstream(mode, tracker, chunks=chunks, delay=0.01))
    events = parse(wire)
    assert texts(events) == ["partial"]
    assert named(events, "error") == [{"type": "upstream_error", "message": "model overloaded"}]
    assert wire.endswith(DONE)
    assert wait_until(lambda: tracker.snapshot()["closed"] == 1)
    assert tracker.completed == 0


def test_unsupported_chunk_becomes_an_invalid_chunk_error(
    mode: str, tracker: Tracker, records: Callable[[], list[logging.LogRecord]]
) -> None:
    wire = consume(mode, upstream(mode, tracker, chunks=["ok", 42, "never"], delay=0.01))
    events = parse(wire)
    assert texts(events) == ["ok"]
    [error] = named(events, "error")
    assert error["type"] == "invalid_chunk"
    assert "got int" in error["message"]
    assert wire.endswith(DONE)
    assert records()[0].indox_stream.outcome == "upstream_error"  # type: ignore[attr-defined]
    assert wait_until(lambda: tracker.snapshot()["closed"] == 1)


# --- heartbeats and idle timeout -------------------------------------------------


def test_heartbeats_while_the_upstream_is_silent(mode: str, tracker: Tracker) -> None:
    source = upstream(mode, tracker, chunks=["first", "second"], first_delay=0.5, delay=0.5)
    wire = consume(mode, source, heartbeat=0.05)
    first, second = wire.index(b"data: first"), wire.index(b"data: second")
    # About ten each; a generous floor for a busy machine.
    assert wire[:first].count(PING) >= 3, "no heartbeat before the first token"
    assert wire[first:second].count(PING) >= 3
    assert texts(parse(wire)) == ["first", "second"]
    assert wire.endswith(DONE)


def test_empty_chunks_do_not_stop_heartbeats(mode: str, tracker: Tracker) -> None:
    # Content-less chunks (role deltas, keep-alives) write nothing to the client, so the
    # connection still needs its heartbeats.
    async def keep_alives() -> AsyncIterator[str]:
        for _ in range(60):
            await asyncio.sleep(0.01)
            yield ""
        yield "end"

    if mode == "async+async":
        source: Any = keep_alives()
    else:
        source = sync_upstream(tracker, chunks=["end"], first_delay=0.6, silent_step=0.01)
    wire = consume(mode, source, heartbeat=0.05)
    assert wire[: wire.index(b"data: end")].count(PING) >= 3
    assert wire.endswith(DONE)


def test_idle_timeout_ends_with_a_timeout_error_and_closes_the_upstream(
    mode: str, tracker: Tracker, records: Callable[[], list[logging.LogRecord]]
) -> None:
    reports: list[StreamReport] = []
    source = upstream(mode, tracker, chunks=["late"], first_delay=1.5)
    started = time.monotonic()
    wire = consume(mode, source, heartbeat=0.05, idle_timeout=0.3, on_complete=reports.append)
    took = time.monotonic() - started
    assert took < 1.2, "the stream waited for the upstream instead of timing out"
    events = parse(wire)
    assert texts(events) == []
    assert named(events, "error") == [
        {"type": "timeout", "message": "no data from the model for 0.3 s"}
    ]
    assert wire.endswith(DONE) and PING in wire
    assert reports[0].outcome == "timeout"
    assert [r.indox_stream.outcome for r in records()] == ["timeout"]  # type: ignore[attr-defined]
    # A sync generator can only be closed once its current next() returns.
    assert wait_until(lambda: tracker.snapshot()["closed"] == 1, timeout=5.0)
    time.sleep(0.05)
    assert tracker.snapshot()["closed"] == 1 and tracker.completed == 0


def test_chunks_reset_the_idle_timeout(mode: str, tracker: Tracker) -> None:
    # 0.8 s in all, past the timeout; 0.4 s of slack between any two chunks.
    source = upstream(mode, tracker, chunks=8, delay=0.1)
    wire = consume(mode, source, idle_timeout=0.5)
    assert b"event: error" not in wire
    assert len(texts(parse(wire))) == 8


# --- closing exactly once in every outcome ---------------------------------------


def _read_then_leave(mode: str, stream_source: Any, how: str, **options: Any) -> bytes:
    """Read two data events, then go away the way ``how`` says (close, aclose, cancel)."""
    if mode == "sync":
        stream = sse_stream(stream_source, **options)
        out = b""
        for data in stream:
            out += data
            if out.count(b"data: ") >= 2:
                break
        stream.close()
        return out

    async def main() -> bytes:
        stream = async_sse_stream(stream_source, **options)
        out = b""
        if how == "cancel":
            two = asyncio.Event()

            async def reader() -> None:
                nonlocal out
                async for data in stream:
                    out += data
                    if out.count(b"data: ") >= 2:
                        two.set()

            task = asyncio.create_task(reader())
            await asyncio.wait_for(two.wait(), 10)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
        else:
            async for data in stream:
                out += data
                if out.count(b"data: ") >= 2:
                    break
            if how == "aclose":
                await stream.aclose()
            else:
                stream.close()
        # Give the upstream's task (if any) a chance to run its finally.
        await asyncio.sleep(0.05)
        return out

    return asyncio.run(main())


@pytest.mark.parametrize(
    "outcome", ["completed", "client_disconnected", "upstream_error", "timeout"]
)
def test_response_like_upstream_closed_exactly_once(mode: str, outcome: str) -> None:
    reports: list[StreamReport] = []
    kwargs: dict[str, Any] = {"delay": 0.05}
    if outcome == "upstream_error":
        kwargs["fail"] = True
    if outcome == "timeout":
        kwargs["first_delay"] = 0.8
    source = response_like(mode, ["a", "b", "c", "d"], **kwargs)
    options: dict[str, Any] = {
        "on_complete": reports.append,
        "idle_timeout": 0.3 if outcome == "timeout" else 5.0,
    }
    if outcome == "client_disconnected":
        source.delay = 0.2
        _read_then_leave(mode, source, "aclose", **options)
    else:
        consume(mode, source, **options)
    assert wait_until(lambda: source.close_calls >= 1, timeout=5.0)
    time.sleep(0.1)
    assert source.close_calls == 1
    assert [r.outcome for r in reports] == [outcome]


@pytest.mark.parametrize("how", ["close", "aclose", "cancel"])
def test_async_client_gone_closes_the_upstream_once(
    how: str, tracker: Tracker, records: Callable[[], list[logging.LogRecord]]
) -> None:
    for source in (
        sync_upstream(tracker, chunks=50, delay=0.05),
        async_upstream(tracker, chunks=50, delay=0.05),
    ):
        _read_then_leave("async", source, how)
    assert wait_until(lambda: tracker.snapshot()["closed"] == 2)
    time.sleep(0.1)
    snapshot = tracker.snapshot()
    assert snapshot["closed"] == 2 and snapshot["completed"] == 0
    outcomes = [r.indox_stream.outcome for r in records()]  # type: ignore[attr-defined]
    assert outcomes == ["client_disconnected"] * 2


def test_sync_close_stops_pulling_and_closes_within_a_second(
    tracker: Tracker, records: Callable[[], list[logging.LogRecord]]
) -> None:
    reports: list[StreamReport] = []
    source = sync_upstream(tracker, chunks=100, delay=0.1)
    wire = _read_then_leave("sync", source, "close", on_complete=reports.append)
    left = time.monotonic()
    assert wait_until(lambda: tracker.snapshot()["closed"] == 1, timeout=2.0)
    assert tracker.closed[0] - left < 1.0
    pulled = tracker.snapshot()["pulled"]
    time.sleep(0.3)
    assert tracker.snapshot()["pulled"] == pulled < 10
    [report] = reports
    assert report.outcome == "client_disconnected"
    assert report.bytes == len(wire) and report.chunks >= 2
    assert len(records()) == 1


def test_close_before_iterating_closes_the_upstream(
    records: Callable[[], list[logging.LogRecord]],
) -> None:
    sync_source = ResponseLike(["never"])
    reports: list[StreamReport] = []
    sse_stream(sync_source, on_complete=reports.append).close()
    assert sync_source.close_calls == 1 and sync_source.pulled == 0

    async def main() -> None:
        for closer in ("aclose", "close"):
            source = AsyncResponseLike(["never"])
            stream = async_sse_stream(source, on_complete=reports.append)
            if closer == "aclose":
                await stream.aclose()
            else:
                stream.close()
            assert await await_until(lambda: source.close_calls == 1)  # noqa: B023
            assert source.pulled == 0

    asyncio.run(main())
    assert [r.outcome for r in reports] == ["client_disconnected"] * 3
    assert all(r.chunks == 0 for r in reports)
    assert len(records()) == 3


@pytest.mark.parametrize("swallow", [False, True], ids=["async", "async-swallowing-the-cancel"])
def test_close_from_another_thread_closes_an_async_upstream(
    tracker: Tracker, swallow: bool
) -> None:
    # Django's ASGI handler calls response.close() through sync_to_async, off the loop.
    async def main() -> float:
        upstream = async_upstream(tracker, chunks=100, delay=0.1, swallow_cancel=swallow)
        stream = async_sse_stream(upstream)
        seen = 0
        async for data in stream:
            seen += data.startswith(b"data: ")
            if seen == 2:
                break
        await asyncio.to_thread(stream.close)
        left = time.monotonic()
        assert await await_until(lambda: tracker.snapshot()["closed"] == 1, timeout=2.0)
        return tracker.closed[0] - left

    # Debug mode makes asyncio refuse calls from the wrong thread instead of missing them.
    assert asyncio.run(main(), debug=True) < 1.0
    assert tracker.completed == 0


# --- the stream report and its log record ----------------------------------------


def test_report_of_a_completed_stream(
    mode: str, tracker: Tracker, records: Callable[[], list[logging.LogRecord]]
) -> None:
    reports: list[StreamReport] = []
    source = upstream(mode, tracker, chunks=["a", "b", "c", GUIDE_USAGE], first_delay=0.2)
    started = time.monotonic()
    wire = consume(mode, source, on_complete=reports.append)
    took = time.monotonic() - started
    [report] = reports
    assert report.outcome == "completed"
    assert report.chunks == 4
    assert report.bytes == len(wire)
    assert report.time_to_first_token is not None
    assert 0.15 <= report.time_to_first_token <= report.duration <= took + 0.01
    assert report.usage == GUIDE_NORMALIZED
    assert report.error is None
    [record] = records()
    assert record.levelno == logging.INFO
    assert record.indox_stream is report  # type: ignore[attr-defined]
    assert record.getMessage().startswith("stream completed: 4 chunks")


def test_report_of_a_stream_without_text(tracker: Tracker) -> None:
    reports: list[StreamReport] = []
    consume("sync", sync_upstream(tracker, chunks=["", GUIDE_USAGE]), on_complete=reports.append)
    assert reports[0].time_to_first_token is None and reports[0].outcome == "completed"


def test_failing_callbacks_are_logged_not_raised(
    tracker: Tracker, caplog: pytest.LogCaptureFixture
) -> None:
    def boom(_: Any) -> None:
        raise RuntimeError("callback failed")

    wire = consume("sync", sync_upstream(tracker, ["a", GUIDE_USAGE]), on_usage=boom,
                   on_complete=boom)  # fmt: skip
    assert wire.endswith(DONE)
    failures = [r for r in caplog.records if "callback" in r.getMessage()]
    assert len(failures) == 2


# --- done-when: concurrency -------------------------------------------------------


def test_hundred_sync_upstreams_progress_at_once_in_one_loop(tracker: Tracker) -> None:
    async def one() -> bytes:
        source = sync_upstream(tracker, chunks=4, delay=0.3)
        return b"".join([data async for data in async_sse_stream(source)])

    async def main() -> list[bytes]:
        return await asyncio.gather(*(one() for _ in range(100)))

    started = time.monotonic()
    wires = asyncio.run(main())
    took = time.monotonic() - started
    snapshot = tracker.snapshot()
    assert snapshot["max_active"] == 100
    assert snapshot["completed"] == snapshot["closed"] == 100
    assert all(texts(parse(w)) == [f"tok{i} " for i in range(4)] for w in wires)
    # One after the other would take 100 x 0.9 s.
    assert took < 15


def test_slow_sync_upstream_does_not_block_the_loop(tracker: Tracker) -> None:
    async def main() -> float:
        ticks: list[float] = []
        done = False

        async def ticker() -> None:
            while not done:
                ticks.append(time.monotonic())
                await asyncio.sleep(0.01)

        tick_task = asyncio.create_task(ticker())
        source = sync_upstream(tracker, chunks=3, delay=1.0, first_delay=1.0)
        wire = b"".join([data async for data in async_sse_stream(source)])
        done = True
        await tick_task
        assert texts(parse(wire)) == ["tok0 ", "tok1 ", "tok2 "]
        assert ticks[-1] - ticks[0] > 2.4
        return max(b - a for a, b in zip(ticks, ticks[1:], strict=False))

    # A loop blocked in the upstream's next() would miss ticks for a whole second.
    assert asyncio.run(main()) < 0.5


@pytest.mark.parametrize("kind", ["sync", "async", "async-swallowing-the-cancel"])
def test_cancelling_the_consumer_closes_the_upstream_at_once(kind: str, tracker: Tracker) -> None:
    """An upstream that drops the feed's cancel is closed too, at its next chunk."""

    async def main() -> float:
        # 100 chunks 0.1 s apart: the upstream alone would run for ten seconds.
        if kind == "sync":
            upstream: Any = sync_upstream(tracker, chunks=100, delay=0.1)
        else:
            swallow = kind != "async"
            upstream = async_upstream(tracker, chunks=100, delay=0.1, swallow_cancel=swallow)
        stream = async_sse_stream(upstream)
        first = asyncio.Event()

        async def consumer() -> None:
            async for data in stream:
                if data.startswith(b"data: "):
                    first.set()

        task = asyncio.create_task(consumer())
        await asyncio.wait_for(first.wait(), 5)
        task.cancel()
        cancelled = time.monotonic()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert await await_until(lambda: tracker.snapshot()["closed"] == 1, timeout=3.0)
        return tracker.closed[0] - cancelled

    assert asyncio.run(main()) < 1.0
    pulled = tracker.snapshot()["pulled"]
    time.sleep(0.3)
    snapshot = tracker.snapshot()
    assert snapshot["pulled"] == pulled < 10
    assert snapshot["completed"] == 0 and snapshot["closed"] == 1


def test_many_async_streams_share_one_loop(tracker: Tracker) -> None:
    async def one() -> bytes:
        return b"".join([d async for d in async_sse_stream(async_upstream(tracker, 3, 0.1))])

    async def main() -> list[bytes]:
        return await asyncio.gather(*(one() for _ in range(50)))

    wires = asyncio.run(main())
    assert tracker.snapshot()["max_active"] == 50
    assert all(w.endswith(DONE) for w in wires)


# --- argument checks -------------------------------------------------------------


def test_bad_options_are_rejected_at_once() -> None:
    with pytest.raises(ValueError, match="usage must be 'skip' or 'attach', got 'log'"):
        sse_stream(["x"], usage="log")  # type: ignore[arg-type]
    for name in ("heartbeat", "idle_timeout"):
        options: dict[str, Any] = {name: 0}
        with pytest.raises(ValueError, match=f"{name} must be a positive number"):
            async_sse_stream(["x"], **options)


def test_async_upstream_is_refused_by_the_sync_stream(tracker: Tracker) -> None:
    source = async_upstream(tracker)
    with pytest.raises(TypeError, match="serve async upstreams with async_sse_stream"):
        sse_stream(source)


def test_unawaited_client_call_is_refused_by_the_async_stream() -> None:
    async def call() -> list[str]:
        return ["x"]

    coroutine = call()
    with pytest.raises(TypeError, match="await the client call first"):
        async_sse_stream(coroutine)
    coroutine.close()


@pytest.mark.parametrize("source", [None, 42, object()])
def test_non_iterable_upstream_is_refused_before_the_response(source: Any) -> None:
    for make in (sse_stream, async_sse_stream):
        with pytest.raises(TypeError, match=f"got {type(source).__name__}"):
            make(source)


def test_sync_stream_runs_in_a_plain_thread_without_a_loop(tracker: Tracker) -> None:
    out: list[bytes] = []
    thread = threading.Thread(
        target=lambda: out.append(b"".join(sse_stream(sync_upstream(tracker, 3, 0.0))))
    )
    thread.start()
    thread.join(10)
    assert texts(parse(out[0])) == ["tok0 ", "tok1 ", "tok2 "]


def test_a_gone_client_reported_by_the_server_ends_a_silent_stream(tracker: Tracker) -> None:
    """WSGI: a probe answering "gone" stops the stream at the first silence, no write needed."""
    asked: list[float] = []

    def gone() -> bool:
        asked.append(time.monotonic())
        return len(asked) >= 2

    reports: list[StreamReport] = []
    stream = sse_stream(
        sync_upstream(tracker, chunks=3, first_delay=10, silent_step=0.01),
        gone,
        heartbeat=0.05,
        on_complete=reports.append,
    )
    started = time.monotonic()
    wire = b"".join(stream)
    assert time.monotonic() - started < 2
    assert wire == b": stream open\n\n: ping\n\n"  # one heartbeat, then the probe said gone
    assert reports[0].outcome == "client_disconnected"
    deadline = time.monotonic() + 1
    while not tracker.closed and time.monotonic() < deadline:
        time.sleep(0.01)
    assert tracker.snapshot()["closed"] == 1 and tracker.pulled == 0
