"""Rich answers (reasoning, parallel tool calls, refusals, finish reasons) and the wire they make.

OpenAI-compatible streams are :class:`fake_openai.Deltas` scripts; LangChain
ones come from langchain-core's fake chat models.  ``*_WIRE`` is what the
default (``indox``) wire carries for each, with ``usage="attach"``, as
``(event, data)`` pairs, JSON data parsed (see :func:`wire`).
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

from fake_openai import Deltas, call, reasoning, refusal, tool_calls
from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.language_models import GenericFakeChatModel
from langchain_core.messages import AIMessageChunk
from langchain_core.messages.tool import tool_call_chunk
from langchain_core.outputs import ChatGenerationChunk
from pydantic import Field

JSON_EVENTS = ("tool_call_delta", "tool_call", "finish", "usage", "error")

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}
TIME = {
    "type": "function",
    "function": {
        "name": "get_time",
        "description": "The time in a zone.",
        "parameters": {"type": "object", "properties": {"tz": {"type": "string"}}},
    },
}
TOOLS = [WEATHER, TIME]

PROMPT = "Say hello, dear world"
"""Four words: four prompt tokens at the fake OpenAI server."""


def wire(events: Any) -> list[tuple[str, Any]]:
    """``(event, data)`` of httpx-sse events (or pairs), the JSON events parsed."""
    pairs = [(e.event, e.data) if hasattr(e, "event") else tuple(e) for e in events]
    return [(name, json.loads(data) if name in JSON_EVENTS else data) for name, data in pairs]


def usage(model: str, prompt: int, completion: int, reason: str) -> dict[str, Any]:
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "model": model,
        "finish_reason": reason,
    }


def delta(index: int, arguments: str, id: str | None = None, name: str | None = None) -> Any:
    return ("tool_call_delta", {"index": index, "id": id, "name": name, "arguments": arguments})


def done(index: int, id: str, name: str, arguments: Any) -> Any:
    return ("tool_call", {"index": index, "id": id, "name": name, "arguments": arguments})


# -- OpenAI-compatible streams ------------------------------------------------------------


def openai_scripts() -> dict[str, tuple[Deltas, list[tuple[str, Any]]]]:
    """Scenario name -> (script, wire without the usage and done events)."""
    return {
        "reasoning-content": (
            Deltas(
                (reasoning("Paris is"), reasoning(" the capital."), "It is", " Paris."),
            ),
            [
                ("reasoning", "Paris is"),
                ("reasoning", " the capital."),
                ("message", "It is"),
                ("message", " Paris."),
                ("finish", {"reason": "stop"}),
            ],
        ),
        "reasoning": (
            Deltas((reasoning("Think", "reasoning"), reasoning("ing.\nDone.", "reasoning"), "Hi")),
            [
                ("reasoning", "Think"),
                ("reasoning", "ing.\nDone."),
                ("message", "Hi"),
                ("finish", {"reason": "stop"}),
            ],
        ),
        "parallel-tools": (
            Deltas(
                (
                    reasoning("Two lookups.", "reasoning"),
                    tool_calls(
                        call(0, "", "call_1", "get_weather"), call(1, "", "call_2", "get_time")
                    ),
                    tool_calls(call(0, '{"city": ')),
                    tool_calls(call(1, '{"tz": ')),
                    tool_calls(call(0, '"Paris"}')),
                    tool_calls(call(1, '"CET"}')),
                ),
                finish_reason="tool_calls",
            ),
            [
                ("reasoning", "Two lookups."),
                delta(0, "", "call_1", "get_weather"),
                delta(1, "", "call_2", "get_time"),
                delta(0, '{"city": '),
                delta(1, '{"tz": '),
                delta(0, '"Paris"}'),
                delta(1, '"CET"}'),
                done(0, "call_1", "get_weather", {"city": "Paris"}),
                done(1, "call_2", "get_time", {"tz": "CET"}),
                ("finish", {"reason": "tool_calls"}),
            ],
        ),
        "refusal": (
            Deltas((refusal("I can't"), refusal(" help with that."))),
            [
                ("message", "I can't"),
                ("message", " help with that."),
                ("finish", {"reason": "content_filter"}),
            ],
        ),
        "length": (
            Deltas(
                ("Looking", tool_calls(call(0, '{"city": "Pa', "call_9", "get_weather"))),
                finish_reason="length",
            ),
            [
                ("message", "Looking"),
                delta(0, '{"city": "Pa', "call_9", "get_weather"),
                (
                    "tool_call",
                    {
                        "index": 0,
                        "id": "call_9",
                        "name": "get_weather",
                        "arguments": '{"city": "Pa',
                        "invalid_arguments": True,
                    },
                ),
                ("finish", {"reason": "length"}),
            ],
        ),
        "content-filter": (
            Deltas(("Some", " words"), finish_reason="content_filter"),
            [
                ("message", "Some"),
                ("message", " words"),
                ("finish", {"reason": "content_filter"}),
            ],
        ),
    }


def openai_wire(scenario: str, model: str) -> list[tuple[str, Any]]:
    """The whole wire of an OpenAI scenario streamed for ``PROMPT``."""
    script, events = openai_scripts()[scenario]
    reason = events[-1][1]["reason"]
    return [
        *events,
        ("usage", usage(model, 4, len(script.texts), reason)),
        ("done", "[DONE]"),
    ]


# -- LangChain: langchain-core's fake chat models ----------------------------------------


class ChunksChatModel(GenericFakeChatModel):
    """langchain-core's ``GenericFakeChatModel``, streaming the given ``AIMessageChunk``s.

    The chunks go through ``BaseChatModel.stream()``/``astream()`` as a provider's
    would (run ids, callbacks, the closing chunk).  ``calls`` records which of
    the two served each call and the keyword arguments it got.
    """

    chunks: list[AIMessageChunk]
    delay: float = 0.0
    temperature: float | None = None
    max_tokens: int | None = None
    messages: Iterator[Any] = Field(default_factory=lambda: iter(()))
    calls: list[tuple[str, dict[str, Any]]] = Field(default_factory=list)

    def _stream(
        self, messages: Any, stop: Any = None, run_manager: Any = None, **kwargs: Any
    ) -> Iterator[ChatGenerationChunk]:
        self.calls.append(("stream", kwargs))
        for chunk in self.chunks:
            time.sleep(self.delay)
            yield ChatGenerationChunk(message=chunk.model_copy(deep=True))

    async def _astream(
        self, messages: Any, stop: Any = None, run_manager: Any = None, **kwargs: Any
    ) -> AsyncIterator[ChatGenerationChunk]:
        self.calls.append(("astream", kwargs))
        for chunk in self.chunks:
            await asyncio.sleep(self.delay)
            yield ChatGenerationChunk(message=chunk.model_copy(deep=True))


def langchain_chunks() -> list[AIMessageChunk]:
    """Reasoning (the standard block and Anthropic's), text, two calls in parallel, usage."""
    return [
        AIMessageChunk(content=[{"type": "reasoning", "reasoning": "Two", "index": 0}]),
        AIMessageChunk(content=[{"type": "thinking", "thinking": " lookups.", "index": 1}]),
        AIMessageChunk(content=[{"type": "text", "text": "Checking", "index": 2}]),
        AIMessageChunk(
            content=[],
            tool_call_chunks=[
                tool_call_chunk(name="get_weather", args='{"city": ', id="call_1", index=0),
                tool_call_chunk(name="get_time", args='{"tz": ', id="call_2", index=1),
            ],
        ),
        AIMessageChunk(
            content=[],
            tool_call_chunks=[
                tool_call_chunk(args='"Paris"}', index=0),
                tool_call_chunk(args='"CET"}', index=1),
            ],
        ),
        AIMessageChunk(
            content=[],
            usage_metadata={"input_tokens": 9, "output_tokens": 5, "total_tokens": 14},
            response_metadata={"finish_reason": "tool_calls", "model_name": "fake-rich"},
        ),
    ]


LANGCHAIN_WIRE = [
    ("reasoning", "Two"),
    ("reasoning", " lookups."),
    ("message", "Checking"),
    delta(0, '{"city": ', "call_1", "get_weather"),
    delta(1, '{"tz": ', "call_2", "get_time"),
    delta(0, '"Paris"}'),
    delta(1, '"CET"}'),
    done(0, "call_1", "get_weather", {"city": "Paris"}),
    done(1, "call_2", "get_time", {"tz": "CET"}),
    ("finish", {"reason": "tool_calls"}),
    ("usage", usage("fake-rich", 9, 5, "tool_calls")),
    ("done", "[DONE]"),
]


def chat_openai_wire(model: str) -> list[tuple[str, Any]]:
    """The wire of the ``parallel-tools`` script through ``ChatOpenAI``: langchain-openai
    keeps the tool calls, the finish reason and the usage, and drops the reasoning."""
    script, events = openai_scripts()["parallel-tools"]
    return [
        *[event for event in events if event[0] != "reasoning"],
        ("usage", usage(model, 4, len(script.texts), "tool_calls")),
        ("done", "[DONE]"),
    ]


class Recorder(BaseCallbackHandler):
    """A LangChain callback that counts the tokens a model streamed and how its run ended."""

    run_inline = True

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.tokens = 0
        self.ends: list[str] = []

    def on_llm_new_token(self, token: str, **kwargs: Any) -> None:
        with self.lock:
            self.tokens += 1

    def on_llm_end(self, response: Any, **kwargs: Any) -> None:
        with self.lock:
            self.ends.append("end")

    def on_llm_error(self, error: BaseException, **kwargs: Any) -> None:
        with self.lock:
            self.ends.append(type(error).__name__)

    def state(self) -> dict[str, Any]:
        with self.lock:
            return {"tokens": self.tokens, "ends": list(self.ends)}

    def wait_ended(self, timeout: float = 5.0) -> dict[str, Any]:
        """The state once the run has ended (or when ``timeout`` is up)."""
        deadline = time.monotonic() + timeout
        while not self.state()["ends"] and time.monotonic() < deadline:
            time.sleep(0.02)
        return self.state()
