"""The offline demo client, sync and async, shaped like indoxRouter's."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from upstreams import TRICKY_TEXTS

from indox_integrations import (
    AsyncDemoClient,
    DemoClient,
    DemoProviderError,
    FinishEvent,
    ReasoningEvent,
    TextEvent,
    ToolCallDeltaEvent,
    ToolCallEvent,
    UsageEvent,
    iter_events,
)
from indox_integrations.demo import MODELS, STORY

TEXTS = [text for text in TRICKY_TEXTS if len(text) < 10_000] + ["a", "", "x" * 2_000]


def collect_sync(stream: Any) -> list[Any]:
    return list(stream)


def collect_async(stream: Any) -> list[Any]:
    async def main() -> list[Any]:
        return [chunk async for chunk in await stream]

    return asyncio.run(main())


@pytest.fixture(params=["sync", "async"])
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def stream(kind: str, method: str, first: Any, **options: Any) -> list[Any]:
    """All chunks of one streamed call through the sync or the async client."""
    if kind == "sync":
        client: Any = DemoClient(delay=0)
        return collect_sync(getattr(client, method)(first, stream=True, **options))
    client = AsyncDemoClient(delay=0)
    return collect_async(getattr(client, method)(first, stream=True, **options))


def split(chunks: list[Any]) -> tuple[list[str], dict[str, Any]]:
    *texts, usage = chunks
    assert all(type(t) is str for t in texts)
    return texts, usage


def test_models_are_listed() -> None:
    assert MODELS == ("demo/story", "demo/echo", "demo/fail", "demo/think", "demo/tools")
    assert DemoClient.models == AsyncDemoClient.models == MODELS
    assert DemoClient.default_model == "demo/story"


def test_story_streams_word_by_word_then_the_guide_usage(kind: str) -> None:
    texts, usage = split(stream(kind, "completion", "Tell me a story"))
    assert "".join(texts) == STORY
    assert len(texts) > 50
    assert usage == {
        "is_usage_info": True,
        "usage": {
            "tokens_prompt": 4,
            "tokens_completion": len(texts),
            "tokens_total": 4 + len(texts),
        },
        "cost": round((4 + len(texts)) * 0.000002, 8),
        "model": "demo/story",
        "provider": "demo",
        "finish_reason": "stop",
    }


@pytest.mark.parametrize("text", TEXTS, ids=lambda t: repr(t[:20]))
def test_echo_round_trips_exactly_in_small_chunks(kind: str, text: str) -> None:
    texts, usage = split(stream(kind, "completion", text, model="demo/echo"))
    assert "".join(texts) == text
    assert all(1 <= len(t) <= 8 for t in texts)
    assert usage["usage"]["tokens_completion"] == len(texts)


def test_echo_uses_every_chunk_size() -> None:
    texts, _ = split(stream("sync", "completion", "x" * 2_000, model="demo/echo"))
    assert {len(t) for t in texts[:-1]} == set(range(1, 9))


def test_chat_echoes_the_last_user_message(kind: str) -> None:
    messages = [
        {"role": "system", "content": "ignored"},
        {"role": "user", "content": "first"},
        {"role": "assistant", "content": "reply"},
        {"role": "user", "content": "line one\nline two 🙂"},
    ]
    texts, usage = split(stream(kind, "chat", messages, model="demo/echo"))
    assert "".join(texts) == "line one\nline two 🙂"
    assert usage["model"] == "demo/echo"


def test_fail_raises_after_a_few_chunks(kind: str) -> None:
    got: list[Any] = []

    if kind == "sync":
        with pytest.raises(DemoProviderError, match="simulated"):
            for chunk in DemoClient(delay=0).completion("x", model="demo/fail", stream=True):
                got.append(chunk)
    else:

        async def main() -> None:
            source = await AsyncDemoClient(delay=0).completion("x", model="demo/fail", stream=True)
            async for chunk in source:
                got.append(chunk)

        with pytest.raises(DemoProviderError, match="simulated"):
            asyncio.run(main())
    assert len(got) == 3 and all(type(c) is str for c in got)


def test_unknown_model_fails_at_call_time() -> None:
    with pytest.raises(ValueError, match="unknown model 'gpt-4'.*demo/story, demo/echo"):
        DemoClient(delay=0).completion("x", model="gpt-4", stream=True)
    with pytest.raises(ValueError, match="unknown model"):
        DemoClient(delay=0).chat([{"role": "user", "content": "x"}], model="nope", stream=True)

    async def main() -> None:
        await AsyncDemoClient(delay=0).completion("x", model="gpt-4", stream=True)

    with pytest.raises(ValueError, match="unknown model 'gpt-4'"):
        asyncio.run(main())


def test_max_tokens_stops_early_with_finish_reason_length(kind: str) -> None:
    texts, usage = split(stream(kind, "completion", "story", max_tokens=5))
    assert len(texts) == 5
    assert "".join(texts) == "Unit Seven had been built "
    assert usage["finish_reason"] == "length"
    assert usage["usage"]["tokens_completion"] == 5


def test_non_stream_response_is_the_whole_text_with_usage() -> None:
    response = DemoClient(delay=0).completion("hello there", model="demo/echo")
    sent = response["usage"]["tokens_completion"]
    assert sent >= 2  # eleven characters in chunks of at most eight
    assert response == {
        "data": "hello there",
        "success": True,
        "usage": {"tokens_prompt": 2, "tokens_completion": sent, "tokens_total": 2 + sent},
        "cost": round((2 + sent) * 0.000002, 8),
        "model": "demo/echo",
        "provider": "demo",
        "finish_reason": "stop",
    }
    # The kit reads it as one text event plus usage.
    events = list(iter_events(response))
    assert events[0] == TextEvent("hello there")
    assert isinstance(events[1], UsageEvent) and events[1].usage["model"] == "demo/echo"


def test_non_stream_async_and_fail() -> None:
    async def main() -> Any:
        return await AsyncDemoClient(delay=0).chat(
            [{"role": "user", "content": "hi"}], model="demo/echo"
        )

    assert asyncio.run(main())["data"] == "hi"
    with pytest.raises(DemoProviderError):
        DemoClient(delay=0).completion("x", model="demo/fail")


def test_get_usage_info_is_partial_after_an_early_stop() -> None:
    source = DemoClient(delay=0).completion("one two three", stream=True)
    for _ in range(4):
        next(source)
    usage = source.get_usage_info()
    assert usage["usage"] == {"tokens_prompt": 3, "tokens_completion": 4, "tokens_total": 7}
    assert usage["finish_reason"] is None
    source.close()
    assert source.closed
    with pytest.raises(StopIteration):
        next(source)


def test_async_stream_aclose_and_usage() -> None:
    async def main() -> tuple[dict[str, Any], bool]:
        source = await AsyncDemoClient(delay=0).completion("a b", stream=True)
        await source.__anext__()
        await source.__anext__()
        await source.aclose()
        return source.get_usage_info(), source.closed

    usage, closed = asyncio.run(main())
    assert usage["usage"]["tokens_completion"] == 2 and closed


def test_delay_paces_the_chunks() -> None:
    client = DemoClient(delay=0.05)
    source = client.completion("abcdefghijklmnopqrstuvwxyz", model="demo/echo", stream=True)
    started = time.monotonic()
    chunks = list(source)
    assert time.monotonic() - started >= 0.05 * (len(chunks) - 1) * 0.9


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_think_streams_reasoning_then_the_answer(kind: str) -> None:
    evs = list(iter_events(stream(kind, "completion", "Why is the sky blue?", model="demo/think")))
    kinds = [type(e) for e in evs]
    first_text = kinds.index(TextEvent)
    assert ReasoningEvent in kinds[:first_text] and ReasoningEvent not in kinds[first_text:]
    reasoning = "".join(e.text for e in evs if isinstance(e, ReasoningEvent))
    assert reasoning.startswith("The user asked: Why is the sky blue?\n")
    assert evs[-2:] == [FinishEvent("stop"), evs[-1]] and isinstance(evs[-1], UsageEvent)


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_tools_streams_a_weather_call_in_pieces(kind: str) -> None:
    evs = list(iter_events(stream(kind, "completion", "Weather in New York?", model="demo/tools")))
    deltas = [e for e in evs if isinstance(e, ToolCallDeltaEvent)]
    assert len(deltas) > 3 and deltas[0].id == "call_demo_1" and deltas[0].name == "get_weather"
    assert all(d.id is None and d.name is None for d in deltas[1:])
    calls = [e for e in evs if isinstance(e, ToolCallEvent)]
    assert calls == [
        ToolCallEvent(
            0,
            "call_demo_1",
            "get_weather",
            {"city": "New York", "unit": "celsius"},
            "".join(d.arguments for d in deltas),
            True,
        )
    ]
    assert not any(isinstance(e, TextEvent) for e in evs)
    usage = evs[-1]
    assert isinstance(usage, UsageEvent) and usage.usage["finish_reason"] == "tool_calls"
    assert evs[-2] == FinishEvent("tool_calls")
