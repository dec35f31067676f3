"""The stream limiter, its slots, and the pipeline's on_finish that gives them back."""

from __future__ import annotations

import asyncio
import gc
import logging
import threading
from collections.abc import AsyncIterator, Iterator

import pytest
from django.core.exceptions import ImproperlyConfigured

from indox_integrations import async_sse_stream, sse_stream
from indox_integrations.django import conf
from indox_integrations.overload import Overload, Refusal, Slot, StreamLimiter, request_function
from indox_integrations.protocols import get_protocol


def slot(result: Slot | Refusal) -> Slot:
    assert isinstance(result, Slot), result
    return result


def refusal(result: Slot | Refusal) -> Refusal:
    assert isinstance(result, Refusal), result
    return result


def test_past_max_streams_a_503_until_a_slot_comes_back() -> None:
    limiter = StreamLimiter()
    first = slot(limiter.acquire(max_streams=2))
    slot(limiter.acquire(max_streams=2))
    refused = refusal(limiter.acquire(max_streams=2))
    assert (refused.status, refused.kind) == (503, "overloaded")
    assert int(refused.headers["Retry-After"]) > 0
    assert refused.as_json() == {"error": {"type": "overloaded", "message": refused.message}}
    assert limiter.open_streams() == 2
    first.release()
    first.release()  # once only
    assert limiter.open_streams() == 1
    slot(limiter.acquire(max_streams=2))


def test_per_key_a_429_for_that_key_only_and_no_key_is_not_limited() -> None:
    limiter = StreamLimiter()
    alice = slot(limiter.acquire("alice", max_streams_per_key=1))
    refused = refusal(limiter.acquire("alice", max_streams_per_key=1))
    assert (refused.status, refused.kind) == (429, "too_many_streams")
    slot(limiter.acquire("bob", max_streams_per_key=1))
    for _ in range(3):
        slot(limiter.acquire(None, max_streams_per_key=1))
    assert limiter.open_streams("alice") == 1
    alice.release()
    assert limiter.open_streams("alice") == 0
    assert "alice" not in limiter._per_key  # keys of users gone do not pile up
    slot(limiter.acquire("alice", max_streams_per_key=1))


def test_routes_share_the_process_count_each_with_its_own_limit() -> None:
    limiter = StreamLimiter()
    unlimited = Overload(limiter=limiter)
    small = Overload(max_streams=2, limiter=limiter)
    held = [slot(unlimited.admit()) for _ in range(2)]
    assert refusal(small.admit()).status == 503
    held[0].release()
    slot(small.admit())


def test_the_count_holds_under_threads() -> None:
    limiter = StreamLimiter()
    granted: list[Slot] = []
    lock = threading.Lock()

    def take() -> None:
        for _ in range(200):
            result = limiter.acquire("k", max_streams=50, max_streams_per_key=50)
            if isinstance(result, Slot):
                with lock:
                    granted.append(result)
                result.release()

    threads = [threading.Thread(target=take) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert granted and limiter.open_streams() == 0 and limiter.open_streams("k") == 0


def test_a_slot_as_context_manager_is_given_back_unless_handed_over() -> None:
    limiter = StreamLimiter()
    with slot(limiter.acquire()):
        pass
    assert limiter.open_streams() == 0
    with pytest.raises(RuntimeError), slot(limiter.acquire()) as held:
        held.hand_over({})
        raise RuntimeError("the response could not be built")
    assert limiter.open_streams() == 0
    with slot(limiter.acquire()) as held:
        options = held.hand_over({"usage": "attach"})
    assert limiter.open_streams() == 1
    on_finish = options.get("on_finish")
    assert on_finish is not None and options.get("usage") == "attach"
    on_finish()
    assert limiter.open_streams() == 0


def test_hand_over_keeps_the_users_own_on_finish() -> None:
    limiter = StreamLimiter()
    calls: list[int] = []
    held = slot(limiter.acquire())
    options = held.hand_over({"on_finish": lambda: calls.append(limiter.open_streams())})
    on_finish = options.get("on_finish")
    assert on_finish is not None
    on_finish()
    assert calls == [0]  # the slot is back before the user's hook runs


def test_refusals_are_logged_as_warning_or_info_never_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    limiter = StreamLimiter()
    with caplog.at_level(logging.DEBUG, logger="indox_integrations"):
        slot(limiter.acquire("a", max_streams=1, max_streams_per_key=1))
        refusal(limiter.acquire("a", max_streams=1))
        refusal(limiter.acquire("a", max_streams_per_key=1))
    assert [r.levelname for r in caplog.records] == ["WARNING", "INFO"]


def test_protocol_refusals_take_the_protocols_error_shape() -> None:
    limiter = StreamLimiter()
    slot(limiter.acquire(max_streams=1))
    refused = refusal(limiter.acquire(max_streams=1))
    reply = refused.reply(get_protocol("openai"))
    assert reply.status == 503 and reply.headers["Retry-After"] == str(refused.retry_after)
    assert set(reply.body["error"]) == {"message", "type", "param", "code"}
    indox = refused.reply(get_protocol("indox"))
    assert indox.body["error"]["message"].endswith(refused.message)


@pytest.mark.parametrize(
    ("options", "error"),
    [
        ({"max_streams": 0}, ValueError),
        ({"max_streams": True}, ValueError),
        ({"max_streams": 1.5}, ValueError),
        ({"max_streams_per_key": 2}, ValueError),  # without limit_key
        ({"limit_key": lambda request: None}, ValueError),  # without max_streams_per_key
        ({"max_streams_per_key": 2, "limit_key": "user"}, TypeError),
    ],
)
def test_wrong_limits_fail_when_the_route_is_made(options: dict[str, object], error: type) -> None:
    with pytest.raises(error):
        Overload(**options)  # type: ignore[arg-type]


def test_context_of_a_route_must_be_a_function_of_the_request() -> None:
    assert request_function("context", None) is None
    with pytest.raises(TypeError, match="function of the request"):
        request_function("context", {"user": 1})


def test_django_settings_errors_name_the_key() -> None:
    values = {"max_streams": 0, "max_streams_per_key": None, "limit_key": None, "context": None}
    with pytest.raises(ImproperlyConfigured, match="INDOX_INTEGRATIONS.*max_streams"):
        conf.overload(values, where=conf.SETTING)
    values = {**values, "max_streams": 3, "limit_key": 42, "max_streams_per_key": 1}
    with pytest.raises(ImproperlyConfigured, match="LIMIT_KEY"):
        conf.overload(values, where=conf.SETTING)
    with pytest.raises(ImproperlyConfigured, match=r"View\(context=...\)"):
        conf.context({"context": "no.such.module.function"}, where="View")
    overload = conf.overload(
        {**values, "limit_key": "indox_integrations.overload.request_function"}, where="View"
    )
    assert overload.max_streams == 3 and callable(overload.limit_key)


# The pipeline's on_finish: exactly once, however the stream ends.


def chunks(count: int, fail: bool = False) -> Iterator[str]:
    for index in range(count):
        if fail and index == 1:
            raise RuntimeError("upstream broke")
        yield f"t{index}"


def test_on_finish_once_when_a_stream_completes() -> None:
    calls: list[str] = []
    stream = sse_stream(chunks(3), on_finish=lambda: calls.append("finish"))
    assert b"event: done" in b"".join(stream)
    stream.close()
    assert calls == ["finish"]


def test_on_finish_once_when_the_upstream_fails_or_the_reader_leaves(
    caplog: pytest.LogCaptureFixture,
) -> None:
    calls: list[str] = []
    with caplog.at_level(logging.CRITICAL, logger="indox_integrations"):
        failed = sse_stream(chunks(3, fail=True), on_finish=lambda: calls.append("failed"))
        assert b"event: error" in b"".join(failed)
    left = sse_stream(chunks(100), on_finish=lambda: calls.append("left"))
    next(left)
    left.close()
    left.close()
    assert calls == ["failed", "left"]


def test_on_finish_runs_before_the_callbacks() -> None:
    calls: list[str] = []
    stream = sse_stream(
        chunks(2),
        on_finish=lambda: calls.append("finish"),
        on_complete=lambda report: calls.append("complete"),
    )
    list(stream)
    assert calls == ["finish", "complete"]


def test_on_finish_of_a_stream_dropped_unsent_runs_when_it_is_collected() -> None:
    calls: list[str] = []
    stream = sse_stream(chunks(2), on_finish=lambda: calls.append("dropped"))
    del stream
    gc.collect()
    assert calls == ["dropped"]


def test_on_finish_once_for_an_async_stream_cancelled_midway() -> None:
    calls: list[str] = []

    async def upstream() -> AsyncIterator[str]:
        for index in range(100):
            await asyncio.sleep(0.01)
            yield f"t{index}"

    async def main() -> None:
        stream = async_sse_stream(upstream(), on_finish=lambda: calls.append("finish"))
        await stream.__anext__()
        await stream.__anext__()
        await stream.aclose()

    asyncio.run(main())
    assert calls == ["finish"]
