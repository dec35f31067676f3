"""The ``openai`` SDK, sync and async, streaming reasoning, parallel tool calls, refusals and
finish reasons from a local OpenAI-compatible server, through the core; OpenAIChat's tools."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import openai
import pytest
from fake_openai import Deltas, FakeOpenAI, call, reasoning, tool_calls
from rich_streams import PROMPT, TOOLS, openai_scripts, openai_wire, usage, wire

from indox_integrations import (
    FinishEvent,
    Limits,
    ReasoningEvent,
    TextEvent,
    ToolCallDeltaEvent,
    ToolCallEvent,
    UsageEvent,
    acall_client,
    async_sse_stream,
    call_client,
    iter_events,
    parse_chat,
    sse_stream,
)
from indox_integrations.openai import OpenAIChat

SCENARIOS = list(openai_scripts())


@pytest.fixture
def server() -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as fake:
        for name, (script, _) in openai_scripts().items():
            fake.scripts[name] = script
        yield fake


def sync_client(server: FakeOpenAI) -> openai.OpenAI:
    return openai.OpenAI(api_key="test", base_url=server.url + "/v1", max_retries=0)


def async_client(server: FakeOpenAI) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(api_key="test", base_url=server.url + "/v1", max_retries=0)


def chat(model: str | None) -> Any:
    body = {"messages": [{"role": "user", "content": PROMPT}], "model": model}
    return parse_chat(body, Limits())


def events_of(data: bytes) -> list[tuple[str, Any]]:
    pairs = []
    for block in data.decode().split("\n\n"):
        lines = [line for line in block.split("\n") if line and not line.startswith(":")]
        if lines:
            name = next((line[7:] for line in lines if line.startswith("event: ")), "message")
            pairs.append((name, "\n".join(line[6:] for line in lines if line.startswith("data: "))))
    return wire(pairs)


def sync_wire(server: FakeOpenAI, model: str, adapter: Any = None) -> list[tuple[str, Any]]:
    with sync_client(server) as client:
        llm = adapter(client) if adapter else client
        return events_of(b"".join(sse_stream(call_client(llm, chat(model)), usage="attach")))


def async_wire(server: FakeOpenAI, model: str, adapter: Any = None) -> list[tuple[str, Any]]:
    async def run() -> bytes:
        async with async_client(server) as client:
            llm = adapter(client) if adapter else client
            stream = async_sse_stream(await acall_client(llm, chat(model)), usage="attach")
            return b"".join([data async for data in stream])

    return events_of(asyncio.run(run()))


WIRES = {"sync": sync_wire, "async": async_wire}


@pytest.mark.parametrize("scenario", SCENARIOS)
@pytest.mark.parametrize("mode", list(WIRES))
def test_every_part_of_a_rich_stream_reaches_the_wire(
    server: FakeOpenAI, mode: str, scenario: str
) -> None:
    assert WIRES[mode](server, scenario) == openai_wire(scenario, scenario)
    (record,) = server.wait_ended()
    assert record.outcome == "completed"


def test_the_sdks_chunk_objects_become_typed_events(server: FakeOpenAI) -> None:
    with sync_client(server) as client:
        events = list(iter_events(call_client(client, chat("parallel-tools"))))
    assert events[0] == ReasoningEvent("Two lookups.")
    deltas = [e for e in events if isinstance(e, ToolCallDeltaEvent)]
    assert [(d.index, d.id, d.name) for d in deltas[:2]] == [
        (0, "call_1", "get_weather"),
        (1, "call_2", "get_time"),
    ]
    assert "".join(d.arguments for d in deltas if d.index == 0) == '{"city": "Paris"}'
    calls = [e for e in events if isinstance(e, ToolCallEvent)]
    assert [(c.id, c.arguments, c.raw, c.valid) for c in calls] == [
        ("call_1", {"city": "Paris"}, '{"city": "Paris"}', True),
        ("call_2", {"tz": "CET"}, '{"tz": "CET"}', True),
    ]
    assert [e for e in events if isinstance(e, FinishEvent)] == [FinishEvent("tool_calls")]
    assert isinstance(events[-1], UsageEvent)


def test_truncated_arguments_arrive_raw_and_flagged(server: FakeOpenAI) -> None:
    with sync_client(server) as client:
        events = list(iter_events(call_client(client, chat("length"))))
    (broken,) = [e for e in events if isinstance(e, ToolCallEvent)]
    assert (broken.arguments, broken.raw, broken.valid) == ('{"city": "Pa', '{"city": "Pa', False)


def test_text_and_reasoning_in_one_delta_keep_their_order(server: FakeOpenAI) -> None:
    server.scripts["both"] = Deltas(({"reasoning_content": "Hm.", "content": "Yes."},))
    with sync_client(server) as client:
        events = list(iter_events(call_client(client, chat("both"))))
    assert events[:2] == [ReasoningEvent("Hm."), TextEvent("Yes.")]


# -- OpenAIChat: tools, tool_choice and reasoning_effort set on the server --------------------


def adapter(**options: Any) -> Any:
    return lambda client: OpenAIChat(
        client, tools=TOOLS, tool_choice="auto", reasoning_effort="low", **options
    )


@pytest.mark.parametrize("mode", list(WIRES))
def test_the_adapter_passes_its_tools_through(server: FakeOpenAI, mode: str) -> None:
    events = WIRES[mode](server, "parallel-tools", adapter(user="u-1"))
    assert events == openai_wire("parallel-tools", "parallel-tools")
    body = server.requests[-1].body
    assert body["tools"] == TOOLS
    assert (body["tool_choice"], body["reasoning_effort"], body["user"]) == ("auto", "low", "u-1")


def test_an_adapter_without_them_sends_none(server: FakeOpenAI) -> None:
    sync_wire(server, "reasoning", lambda client: OpenAIChat(client))
    body = server.requests[-1].body
    assert not {"tools", "tool_choice", "reasoning_effort"} & set(body)


@pytest.mark.parametrize("mode", list(WIRES))
def test_a_full_answer_with_tool_calls(server: FakeOpenAI, mode: str) -> None:
    server.scripts["full-tools"] = Deltas(
        (
            reasoning("Hm."),
            "Looking.",
            tool_calls(call(0, '{"city": "Paris"}', "call_1", "get_weather")),
            tool_calls(call(1, '{"tz": "CET"}', "call_2", "get_time")),
        ),
        finish_reason="tool_calls",
    )
    events = WIRES[mode](server, "full-tools", adapter(stream=False))
    assert events == [
        ("reasoning", "Hm."),
        ("message", "Looking."),
        (
            "tool_call_delta",
            {"index": 0, "id": "call_1", "name": "get_weather", "arguments": '{"city": "Paris"}'},
        ),
        (
            "tool_call_delta",
            {"index": 1, "id": "call_2", "name": "get_time", "arguments": '{"tz": "CET"}'},
        ),
        (
            "tool_call",
            {"index": 0, "id": "call_1", "name": "get_weather", "arguments": {"city": "Paris"}},
        ),
        (
            "tool_call",
            {"index": 1, "id": "call_2", "name": "get_time", "arguments": {"tz": "CET"}},
        ),
        ("finish", {"reason": "tool_calls"}),
        ("usage", usage("full-tools", 4, 4, "tool_calls")),
        ("done", "[DONE]"),
    ]
    assert server.streams == []
    assert server.requests[-1].body["tools"] == TOOLS
