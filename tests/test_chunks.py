"""Every chunk shape an LLM client hands out becomes text, usage or error events."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from openai.types.chat import ChatCompletionChunk
from openai.types.completion_usage import CompletionUsage
from upstreams import GUIDE_NORMALIZED, GUIDE_USAGE

from indox_integrations import (
    ErrorEvent,
    Event,
    FinishEvent,
    TextEvent,
    UnsupportedChunkError,
    UsageEvent,
    aiter_events,
    iter_events,
    normalize_usage,
)
from indox_integrations.chunks import ChunkNormalizer


def events(chunks: Any) -> list[Event]:
    return list(iter_events(chunks))


def async_events(chunks: list[Any]) -> list[Event]:
    async def source() -> AsyncIterator[Any]:
        for chunk in chunks:
            await asyncio.sleep(0)
            yield chunk

    async def main() -> list[Event]:
        return [event async for event in aiter_events(source())]

    return asyncio.run(main())


@pytest.fixture(params=["sync", "async"])
def run(request: pytest.FixtureRequest) -> Any:
    """Normalize a list of chunks through iter_events or aiter_events."""
    return events if request.param == "sync" else async_events


def text(evs: list[Event]) -> str:
    return "".join(e.text for e in evs if isinstance(e, TextEvent))


def usages(evs: list[Event]) -> list[dict[str, Any]]:
    return [e.usage for e in evs if isinstance(e, UsageEvent)]


# --- str and bytes ---------------------------------------------------------------


def test_str_chunks_become_text_events_and_empty_ones_vanish(run: Any) -> None:
    assert run(["Once", "", " upon", "\na time"]) == [
        TextEvent("Once"),
        TextEvent(" upon"),
        TextEvent("\na time"),
    ]


def test_str_subclass_is_plain_text(run: Any) -> None:
    class Token(str):
        pass

    [event] = run([Token("hi")])
    assert event == TextEvent("hi") and type(event.text) is str


def test_multibyte_char_split_across_bytes_chunks_decodes_once(run: Any) -> None:
    data = "café 🙂 漢字".encode()
    cut_e, cut_emoji = data.index("é".encode()) + 1, data.index("🙂".encode()) + 2
    chunks = [data[:cut_e], data[cut_e:cut_emoji], bytearray(data[cut_emoji:])]
    evs = run(chunks)
    assert text(evs) == "café 🙂 漢字"
    assert "\ufffd" not in text(evs)
    # The half character waits for its second half rather than being sent twice.
    assert [e.text for e in evs] == ["caf", "é ", "🙂 漢字"]


def test_bytes_stream_ending_mid_character_flushes_a_replacement(run: Any) -> None:
    assert text(run([b"ok \xe6\xbc"])) == "ok \ufffd"


# --- the guide's usage dict and indoxRouter 0.1.x dicts --------------------------


def test_guide_usage_dict_becomes_one_normalized_usage_event(run: Any) -> None:
    evs = run(["Hello", " world", GUIDE_USAGE])
    assert text(evs) == "Hello world"
    assert evs[-1] == UsageEvent(GUIDE_NORMALIZED)
    assert len(usages(evs)) == 1


def _router_chunk(content: str | None, **extra: Any) -> dict[str, Any]:
    delta = {} if content is None else {"content": content}
    chunk: dict[str, Any] = {
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "model": "gpt-4o-mini",
        "provider": "openai",
        "choices": [{"index": 0, "delta": delta, "finish_reason": extra.pop("finish", None)}],
        **extra,
    }
    if content is not None:
        chunk["data"] = content  # indoxRouter 0.1.x copies the delta into "data"
    return chunk


def test_indoxrouter_delta_chunks_yield_the_text_once(run: Any) -> None:
    chunks = [
        {**_router_chunk(None), "choices": [{"index": 0, "delta": {"role": "assistant"}}]},
        _router_chunk("Hel"),
        _router_chunk("lo"),
        _router_chunk(None, finish="stop"),
        _router_chunk(
            None,
            usage={"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7, "cost": 1e-5},
        ),
    ]
    evs = run(chunks)
    assert [e.text for e in evs if isinstance(e, TextEvent)] == ["Hel", "lo"]
    assert usages(evs) == [
        {
            "prompt_tokens": 5,
            "completion_tokens": 2,
            "total_tokens": 7,
            "cost": 1e-5,
            "model": "gpt-4o-mini",
            "provider": "openai",
            "finish_reason": "stop",
        }
    ]


def test_indoxrouter_completion_chunks_use_choice_text(run: Any) -> None:
    chunks = [
        {"choices": [{"index": 0, "text": "Once"}], "data": "Once"},
        {"choices": [{"index": 0, "text": " more", "finish_reason": "length"}], "data": " more"},
    ]
    evs = run(chunks)
    assert evs == [TextEvent("Once"), TextEvent(" more"), FinishEvent("length")]


def test_data_only_chunks_are_text(run: Any) -> None:
    assert run([{"data": "raw"}, {"data": ""}, {"data": " text"}]) == [
        TextEvent("raw"),
        TextEvent(" text"),
    ]


@pytest.mark.parametrize(
    ("error", "message"),
    [
        ("Status 429: rate limited", "Status 429: rate limited"),
        ({"message": "model overloaded", "code": 529}, "model overloaded"),
    ],
)
def test_error_chunks_become_error_events(run: Any, error: Any, message: str) -> None:
    evs = run(["partial", {"error": error}])
    assert evs == [TextEvent("partial"), ErrorEvent("upstream_error", message)]


# --- OpenAI SDK objects ----------------------------------------------------------


def _openai_chunk(
    content: str | None = None,
    finish_reason: str | None = None,
    usage: CompletionUsage | None = None,
    choices: bool = True,
) -> ChatCompletionChunk:
    choice = {"index": 0, "delta": {"content": content}, "finish_reason": finish_reason}
    return ChatCompletionChunk.model_validate(
        {
            "id": "chatcmpl-9",
            "object": "chat.completion.chunk",
            "created": 1_700_000_000,
            "model": "gpt-4o-mini-2024-07-18",
            "choices": [choice] if choices else [],
            "usage": usage,
        }
    )


def test_openai_chunk_objects_are_read_by_attribute(run: Any) -> None:
    usage = CompletionUsage(prompt_tokens=9, completion_tokens=3, total_tokens=12)
    chunks = [
        ChatCompletionChunk.model_validate(
            {
                "id": "chatcmpl-9",
                "object": "chat.completion.chunk",
                "created": 1,
                "model": "gpt-4o-mini-2024-07-18",
                "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}],
            }
        ),
        _openai_chunk("Hi"),
        _openai_chunk(" there"),
        _openai_chunk(finish_reason="stop"),
        _openai_chunk(choices=False, usage=usage),
    ]
    evs = run(chunks)
    assert evs == [
        TextEvent("Hi"),
        TextEvent(" there"),
        FinishEvent("stop"),
        UsageEvent(
            {
                "prompt_tokens": 9,
                "completion_tokens": 3,
                "total_tokens": 12,
                "model": "gpt-4o-mini-2024-07-18",
                "finish_reason": "stop",
            }
        ),
    ]


# --- get_usage_info() ------------------------------------------------------------


class UsageGenerator:
    """A generator object like indoxRouter's that knows its usage on the side."""

    def __init__(self, chunks: list[Any]) -> None:
        self._chunks = iter(chunks)
        self.sent = 0
        self.usage_calls = 0

    def __iter__(self) -> Iterator[Any]:
        return self

    def __next__(self) -> Any:
        chunk = next(self._chunks)
        self.sent += 1
        return chunk

    def get_usage_info(self) -> dict[str, Any]:
        self.usage_calls += 1
        return {
            "is_usage_info": True,
            "usage": {"tokens_prompt": 4, "tokens_completion": self.sent},
            "model": "m",
        }


def test_get_usage_info_fills_in_when_no_usage_chunk_came() -> None:
    source = UsageGenerator(["a", "b", "c"])
    evs = events(source)
    assert text(evs) == "abc"
    assert evs[-1] == UsageEvent(
        {"prompt_tokens": 4, "completion_tokens": 3, "total_tokens": 7, "model": "m"}
    )
    assert source.usage_calls == 1


def test_get_usage_info_is_not_called_when_a_usage_chunk_came() -> None:
    source = UsageGenerator(["a", GUIDE_USAGE])
    assert usages(events(source)) == [GUIDE_NORMALIZED]
    assert source.usage_calls == 0


def test_get_usage_info_gives_partial_usage_after_an_early_stop() -> None:
    source = UsageGenerator(["a", "b", "c", "d"])
    normalizer = ChunkNormalizer(source)
    for chunk in source:
        normalizer.feed(chunk)
        if source.sent == 2:
            break
    assert normalizer.fallback_usage() == {
        "prompt_tokens": 4,
        "completion_tokens": 2,
        "total_tokens": 6,
        "model": "m",
    }
    assert normalizer.fallback_usage() is None  # once only


def test_async_source_get_usage_info_is_used() -> None:
    class AsyncUsageGenerator:
        def __init__(self) -> None:
            self.left = ["x", "y"]

        def __aiter__(self) -> AsyncUsageGenerator:
            return self

        async def __anext__(self) -> str:
            if not self.left:
                raise StopAsyncIteration
            return self.left.pop(0)

        def get_usage_info(self) -> dict[str, Any]:
            return {"usage": {"prompt_tokens": 1, "completion_tokens": 2}}

    async def main() -> list[Event]:
        return [e async for e in aiter_events(AsyncUsageGenerator())]

    evs = asyncio.run(main())
    assert evs == [
        TextEvent("x"),
        TextEvent("y"),
        UsageEvent({"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3}),
    ]


# --- full (non-streamed) responses -----------------------------------------------


def test_full_openai_style_dict_is_one_text_event_plus_usage() -> None:
    response = {
        "id": "chatcmpl-2",
        "object": "chat.completion",
        "model": "gpt-4o-mini",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "The whole answer."},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7},
    }
    assert events(response) == [
        TextEvent("The whole answer."),
        FinishEvent("stop"),
        UsageEvent(
            {
                "prompt_tokens": 3,
                "completion_tokens": 4,
                "total_tokens": 7,
                "model": "gpt-4o-mini",
                "finish_reason": "stop",
            }
        ),
    ]


def test_full_indoxrouter_style_dict_is_one_text_event_plus_usage() -> None:
    response = {
        "data": "Full text\nwith lines",
        "success": True,
        "usage": {"tokens_prompt": 2, "tokens_completion": 5, "tokens_total": 7},
        "cost": 0.5,
        "model": "openai/gpt-4o-mini",
        "provider": "openai",
        "finish_reason": "stop",
    }
    assert events(response) == [
        TextEvent("Full text\nwith lines"),
        UsageEvent(
            {
                "prompt_tokens": 2,
                "completion_tokens": 5,
                "total_tokens": 7,
                "cost": 0.5,
                "model": "openai/gpt-4o-mini",
                "provider": "openai",
                "finish_reason": "stop",
            }
        ),
    ]


@pytest.mark.parametrize("response", ["a whole answer", b"a whole answer"])
def test_full_str_or_bytes_response_is_one_text_event(response: Any) -> None:
    assert events(response) == [TextEvent("a whole answer")]


# --- unsupported shapes ----------------------------------------------------------


@pytest.mark.parametrize(
    ("chunk", "type_name"),
    [(None, "NoneType"), (42, "int"), (object(), "object"), (3.5, "float")],
)
def test_unknown_chunk_types_are_rejected_by_name(run: Any, chunk: Any, type_name: str) -> None:
    with pytest.raises(UnsupportedChunkError, match=rf"expected .*got {type_name}\b"):
        run(["fine", chunk])


def test_dict_with_unknown_keys_is_rejected_with_its_keys(run: Any) -> None:
    with pytest.raises(UnsupportedChunkError, match=r"got dict with keys \[content, delta\]"):
        run([{"delta": "x", "content": "y"}])


def test_unsupported_chunk_error_is_a_type_error() -> None:
    assert issubclass(UnsupportedChunkError, TypeError)


# --- normalize_usage -------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (GUIDE_USAGE, GUIDE_NORMALIZED),
        (
            {"prompt_tokens": 3, "completion_tokens": 4},
            {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7},
        ),
        (
            {"usage": {"input_tokens": 3, "output_tokens": 4, "total_tokens": 9.0}},
            {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 9},
        ),
        (
            CompletionUsage(prompt_tokens=1, completion_tokens=2, total_tokens=3),
            {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3},
        ),
        (
            {"usage": {"tokens_prompt": True, "tokens_completion": "8", "tokens_total": 1.5}},
            {"prompt_tokens": None, "completion_tokens": None, "total_tokens": None},
        ),
        ({}, {"prompt_tokens": None, "completion_tokens": None, "total_tokens": None}),
    ],
)
def test_normalize_usage_shape(raw: Any, expected: dict[str, Any]) -> None:
    usage = normalize_usage(raw)
    assert usage == expected
    for key in ("prompt_tokens", "completion_tokens", "total_tokens"):
        assert usage[key] is None or type(usage[key]) is int


def test_normalize_usage_known_extras_fill_only_gaps() -> None:
    raw = {"usage": {"prompt_tokens": 1, "completion_tokens": 1}, "model": "from-usage"}
    assert normalize_usage(raw, model="from-stream", provider="p", finish_reason=None) == {
        "prompt_tokens": 1,
        "completion_tokens": 1,
        "total_tokens": 2,
        "model": "from-usage",
        "provider": "p",
    }


def test_anthropic_cached_prompt_tokens_count_as_prompt_tokens() -> None:
    evs = events(
        [
            {
                "type": "message_start",
                "message": {
                    "model": "claude-x",
                    "usage": {
                        "input_tokens": 5,
                        "cache_read_input_tokens": 100,
                        "cache_creation_input_tokens": 20,
                        "output_tokens": 1,
                    },
                },
            },
            {"type": "content_block_start", "index": 0, "content_block": {"type": "text"}},
            {
                "type": "content_block_delta",
                "index": 0,
                "delta": {"type": "text_delta", "text": "Hi"},
            },
            {"type": "content_block_stop", "index": 0},
            {
                "type": "message_delta",
                "delta": {"stop_reason": "model_context_window_exceeded"},
                "usage": {"output_tokens": 7},
            },
            {"type": "message_stop"},
        ]
    )
    assert evs == [
        TextEvent("Hi"),
        FinishEvent("length"),
        UsageEvent(
            {
                "prompt_tokens": 125,
                "completion_tokens": 7,
                "total_tokens": 132,
                "model": "claude-x",
                "finish_reason": "length",
            }
        ),
    ]
