"""``AnthropicChat``: the arguments it builds, and the real ``anthropic`` SDK through the core."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import pytest
from fake_anthropic import SIGNATURE, FakeAnthropic, Reply, text, thinking, tool_use

from indox_integrations import (
    ChatRequest,
    CompletionRequest,
    FinishEvent,
    Limits,
    ReasoningEvent,
    RequestError,
    TextEvent,
    ToolCallDeltaEvent,
    ToolCallEvent,
    UsageEvent,
    acall_client,
    async_sse_stream,
    call_client,
    client_error,
    iter_events,
    parse_chat,
    sse_stream,
)
from indox_integrations.anthropic import AnthropicChat

ROOT = Path(__file__).resolve().parent.parent

WEATHER_TOOL = {
    "name": "get_weather",
    "description": "The weather in a city.",
    "input_schema": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
    },
}

THINK = Reply(blocks=(thinking("The user ", "greets me."), text("Hello", "!")))
TOOLS = Reply(
    blocks=(text("Let me check."), tool_use("get_weather", '{"ci', 'ty": "Pa', 'ris"}')),
    stop_reason="tool_use",
)
SLOW = Reply(texts=tuple(f"tok{i} " for i in range(200)), delay=0.05)


class Recorder:
    """A stand-in client that records what ``messages.create`` was called with."""

    def __init__(self) -> None:
        self.messages = self
        self.calls: list[dict[str, Any]] = []

    def create(self, **arguments: Any) -> Iterator[Any]:
        self.calls.append(arguments)
        return iter(())


def chat(
    *messages: tuple[str, str], model: str | None = "claude-test", **options: Any
) -> ChatRequest:
    body = {"messages": [{"role": r, "content": c} for r, c in messages], "model": model}
    return parse_chat({**body, **options}, Limits())


HELLO = ("user", "Say hello, dear world")


@pytest.fixture
def server() -> Iterator[FakeAnthropic]:
    with FakeAnthropic() as fake:
        yield fake


@pytest.fixture
def client(server: FakeAnthropic) -> Iterator[anthropic.Anthropic]:
    with anthropic.Anthropic(api_key="test", base_url=server.url, max_retries=0) as real:
        yield real


def async_client(server: FakeAnthropic) -> anthropic.AsyncAnthropic:
    return anthropic.AsyncAnthropic(api_key="test", base_url=server.url, max_retries=0)


def events_of(wire: bytes) -> list[tuple[str, str]]:
    """(event, data) pairs of an SSE body; comments dropped."""
    events = []
    for block in wire.decode().split("\n\n"):
        lines = [line for line in block.split("\n") if line and not line.startswith(":")]
        if lines:
            name = next((line[7:] for line in lines if line.startswith("event: ")), "message")
            events.append(
                (name, "\n".join(line[6:] for line in lines if line.startswith("data: ")))
            )
    return events


# -- the arguments of messages.create --------------------------------------------------------


def test_a_prompt_becomes_one_user_message_with_the_defaults() -> None:
    recorder = Recorder()
    AnthropicChat(recorder, model="claude-default")(CompletionRequest("Tell me a tale"))
    assert recorder.calls == [
        {
            "model": "claude-default",
            "max_tokens": 1024,
            "messages": [{"role": "user", "content": "Tell me a tale"}],
            "stream": True,
        }
    ]


def test_system_messages_go_to_the_system_parameter() -> None:
    request = chat(
        ("system", "Answer in French."),
        ("user", "Hi"),
        ("assistant", "Bonjour !"),
        ("system", "Be brief."),
        ("user", "How are you?"),
    )
    arguments = AnthropicChat(Recorder(), system="Ignored when the request brings one.").arguments(
        request
    )
    assert arguments["system"] == "Answer in French.\n\nBe brief."
    assert arguments["messages"] == [
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Bonjour !"},
        {"role": "user", "content": "How are you?"},
    ]


def test_the_adapters_system_prompt_fills_in_for_a_request_without_one() -> None:
    assert AnthropicChat(Recorder(), system="Be brief.").arguments(chat(HELLO))["system"] == (
        "Be brief."
    )
    blocks = [{"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}}]
    assert AnthropicChat(Recorder(), system=iter(blocks)).arguments(chat(HELLO))["system"] == blocks
    assert "system" not in AnthropicChat(Recorder()).arguments(chat(HELLO))


def test_tools_and_thinking_come_from_the_adapter_never_from_the_request() -> None:
    sneaky = {"name": "rm_rf", "input_schema": {"type": "object"}}
    request = chat(HELLO, tools=[sneaky], thinking={"type": "enabled", "budget_tokens": 9000})
    llm = AnthropicChat(
        Recorder(),
        tools=[WEATHER_TOOL],
        thinking=2048,
        max_tokens=4096,
        tool_choice={"type": "auto"},
    )
    arguments = llm.arguments(request)
    assert arguments["tools"] == [WEATHER_TOOL]
    assert arguments["thinking"] == {"type": "enabled", "budget_tokens": 2048}
    assert arguments["tool_choice"] == {"type": "auto"}
    assert "tools" not in AnthropicChat(Recorder()).arguments(request)
    assert "thinking" not in AnthropicChat(Recorder()).arguments(request)


def test_the_requests_model_and_max_tokens_win_and_temperature_travels_in_extra_body() -> None:
    llm = AnthropicChat(
        Recorder(),
        model="claude-default",
        max_tokens=2000,
        extra_body={"top_k": 5},
        stop_sequences=["END"],
    )
    arguments = llm.arguments(chat(HELLO, model="claude-asked", temperature=0.3, max_tokens=50))
    assert arguments["model"] == "claude-asked"
    assert arguments["max_tokens"] == 50
    assert arguments["extra_body"] == {"top_k": 5, "temperature": 0.3}
    assert arguments["stop_sequences"] == ["END"]
    assert "temperature" not in arguments
    assert llm.options == {"extra_body": {"top_k": 5}, "stop_sequences": ["END"]}


def test_without_any_model_the_error_says_where_to_name_one() -> None:
    recorder = Recorder()
    with pytest.raises(RequestError, match="AnthropicChat") as info:
        AnthropicChat(recorder)(chat(HELLO, model=None))
    assert info.value.field == "model"
    assert recorder.calls == []


def test_a_request_of_only_system_messages_is_refused_before_calling() -> None:
    recorder = Recorder()
    with pytest.raises(RequestError) as info:
        AnthropicChat(recorder)(chat(("system", "Be brief.")))
    assert (info.value.field, info.value.status) == ("messages", 400)
    assert recorder.calls == []


def test_max_tokens_must_leave_room_above_the_thinking_budget() -> None:
    with pytest.raises(ValueError, match=r"above the thinking budget \(2048\), got 1024"):
        AnthropicChat(Recorder(), thinking=2048)
    llm = AnthropicChat(
        Recorder(), thinking={"type": "enabled", "budget_tokens": 1024}, max_tokens=4096
    )
    with pytest.raises(RequestError, match=r"greater than the thinking budget \(1024\), got 1000"):
        llm(chat(HELLO, max_tokens=1000))
    assert llm.arguments(chat(HELLO))["max_tokens"] == 4096


@pytest.mark.parametrize(
    ("options", "error", "match"),
    [
        ({"messages": []}, TypeError, "builds messages itself"),
        ({"stream": False}, TypeError, "builds stream itself"),
        ({"max_tokens": 0}, ValueError, "max_tokens to be a positive int, got 0"),
        ({"thinking": "high"}, TypeError, "thinking to be a dict or a token budget .* got str"),
        ({"thinking": True}, TypeError, "got bool"),
    ],
)
def test_misconfiguration_is_refused_at_once(
    options: dict[str, Any], error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match):
        AnthropicChat(Recorder(), **options)


def test_refuses_what_is_not_an_anthropic_client() -> None:
    with pytest.raises(TypeError, match=r"expected an Anthropic client .* got dict"):
        AnthropicChat({})


def test_repr_names_the_client_and_model(client: anthropic.Anthropic) -> None:
    assert (
        repr(AnthropicChat(client, model="claude-x"))
        == "AnthropicChat(Anthropic, model='claude-x')"
    )


def test_importing_the_adapter_does_not_import_the_sdk() -> None:
    probe = "import sys, indox_integrations.anthropic; print('anthropic' in sys.modules)"
    result = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"


class AsyncRecorder:
    """An ``AsyncAnthropic`` stand-in: ``messages.create`` is a coroutine function."""

    def __init__(self) -> None:
        self.messages = self
        self.threads: list[str] = []

    async def create(self, **arguments: Any) -> list[Any]:
        self.threads.append(threading.current_thread().name)
        return []


def test_async_skins_await_an_async_client_on_the_loop_and_call_a_sync_one_in_a_thread() -> None:
    aio, sync = AsyncRecorder(), Recorder()
    threads: list[str] = []

    def create(**arguments: Any) -> Iterator[Any]:
        threads.append(threading.current_thread().name)
        return iter(())

    sync.create = create  # type: ignore[method-assign]

    async def run() -> None:
        assert await acall_client(AnthropicChat(aio, model="m"), chat(HELLO)) == []
        assert list(await acall_client(AnthropicChat(sync, model="m"), chat(HELLO))) == []

    asyncio.run(run())
    assert aio.threads == [threading.current_thread().name]
    assert threads == ["indox-client-call"]


def test_the_real_sdk_sends_everything_the_adapter_builds(
    server: FakeAnthropic, client: anthropic.Anthropic
) -> None:
    llm = AnthropicChat(
        client,
        model="claude-default",
        max_tokens=4096,
        tools=[WEATHER_TOOL],
        thinking=2048,
        tool_choice={"type": "auto"},
        metadata={"user_id": "u-1"},
    )
    request = chat(("system", "Be brief."), HELLO, model=None, temperature=1.0)
    list(iter_events(call_client(llm, request)))
    body = server.requests[-1].body
    assert body == {
        "model": "claude-default",
        "max_tokens": 4096,
        "messages": [{"role": "user", "content": "Say hello, dear world"}],
        "stream": True,
        "system": "Be brief.",
        "tools": [WEATHER_TOOL],
        "thinking": {"type": "enabled", "budget_tokens": 2048},
        "tool_choice": {"type": "auto"},
        "metadata": {"user_id": "u-1"},
        "temperature": 1.0,
    }
    assert server.requests[-1].headers["anthropic-version"]


# -- the real SDK's streams through the core ----------------------------------------------


def test_text_with_usage_from_start_and_delta(
    server: FakeAnthropic, client: anthropic.Anthropic
) -> None:
    # message_start says input_tokens=25, output_tokens=1; message_delta says output_tokens=3
    # in all (cumulative): the completion is 3, not 1 + 3.
    server.scripts["claude-test"] = Reply(input_tokens=25)
    events = list(iter_events(call_client(AnthropicChat(client), chat(HELLO))))
    assert [e for e in events if isinstance(e, TextEvent)] == [
        TextEvent("Hello"),
        TextEvent(", world"),
        TextEvent("!"),
    ]
    assert [e for e in events if isinstance(e, FinishEvent)] == [FinishEvent("stop")]
    (usage,) = [e.usage for e in events if isinstance(e, UsageEvent)]
    assert usage["prompt_tokens"] == 25
    assert usage["completion_tokens"] == 3
    assert usage["total_tokens"] == 28
    assert usage["model"] == "claude-test"
    assert usage["finish_reason"] == "stop"
    assert [type(e) for e in events][-2:] == [FinishEvent, UsageEvent]
    (record,) = server.wait_ended()
    assert record.outcome == "completed"


def test_thinking_streams_as_reasoning_before_the_text(
    server: FakeAnthropic, client: anthropic.Anthropic
) -> None:
    server.scripts["think"] = THINK
    llm = AnthropicChat(client, thinking=1024, max_tokens=2048)
    events = list(iter_events(call_client(llm, chat(HELLO, model="think"))))
    shown = [e for e in events if isinstance(e, (ReasoningEvent, TextEvent))]
    assert shown == [
        ReasoningEvent("The user "),
        ReasoningEvent("greets me."),
        TextEvent("Hello"),
        TextEvent("!"),
    ]
    assert SIGNATURE not in repr(events)


def test_a_tool_call_streams_its_arguments_then_completes_parsed(
    server: FakeAnthropic, client: anthropic.Anthropic
) -> None:
    server.scripts["tools"] = TOOLS
    llm = AnthropicChat(client, tools=[WEATHER_TOOL])
    events = list(iter_events(call_client(llm, chat(HELLO, model="tools"))))
    calls = [e for e in events if isinstance(e, (ToolCallDeltaEvent, ToolCallEvent))]
    raw = '{"city": "Paris"}'
    assert calls == [
        ToolCallDeltaEvent(0, "toolu_01", "get_weather", ""),
        ToolCallDeltaEvent(0, None, None, ""),
        ToolCallDeltaEvent(0, None, None, '{"ci'),
        ToolCallDeltaEvent(0, None, None, 'ty": "Pa'),
        ToolCallDeltaEvent(0, None, None, 'ris"}'),
        ToolCallEvent(0, "toolu_01", "get_weather", {"city": "Paris"}, raw, True),
    ]
    kinds = [type(e) for e in events]
    # The call is complete at its content_block_stop, before the finish reason.
    assert kinds.index(ToolCallEvent) < kinds.index(FinishEvent)
    assert [e for e in events if isinstance(e, FinishEvent)] == [FinishEvent("tool_calls")]
    assert [e for e in events if isinstance(e, TextEvent)] == [TextEvent("Let me check.")]


def test_two_tool_calls_get_their_own_indexes(
    server: FakeAnthropic, client: anthropic.Anthropic
) -> None:
    server.scripts["two"] = Reply(
        blocks=(
            tool_use("get_weather", '{"city": "Paris"}', id="toolu_a"),
            tool_use("get_weather", '{"city": ', '"Oslo"}', id="toolu_b"),
        ),
        stop_reason="tool_use",
    )
    events = list(iter_events(call_client(AnthropicChat(client), chat(HELLO, model="two"))))
    complete = [e for e in events if isinstance(e, ToolCallEvent)]
    assert [(c.index, c.id, c.arguments) for c in complete] == [
        (0, "toolu_a", {"city": "Paris"}),
        (1, "toolu_b", {"city": "Oslo"}),
    ]


def test_a_tool_without_arguments_completes_with_an_empty_object(
    server: FakeAnthropic, client: anthropic.Anthropic
) -> None:
    # Anthropic streams a single empty partial_json for a tool without parameters.
    server.scripts["now"] = Reply(blocks=(tool_use("get_time"),), stop_reason="tool_use")
    events = list(iter_events(call_client(AnthropicChat(client), chat(HELLO, model="now"))))
    (call,) = [e for e in events if isinstance(e, ToolCallEvent)]
    assert (call.name, call.arguments, call.valid) == ("get_time", {}, True)


def test_tool_arguments_that_are_not_json_arrive_raw_and_flagged(
    server: FakeAnthropic, client: anthropic.Anthropic
) -> None:
    server.scripts["broken"] = Reply(
        blocks=(tool_use("get_weather", '{"city": "Pa'),), stop_reason="max_tokens"
    )
    events = list(iter_events(call_client(AnthropicChat(client), chat(HELLO, model="broken"))))
    (call,) = [e for e in events if isinstance(e, ToolCallEvent)]
    assert (call.arguments, call.raw, call.valid) == ('{"city": "Pa', '{"city": "Pa', False)
    assert [e for e in events if isinstance(e, FinishEvent)] == [FinishEvent("length")]


@pytest.mark.parametrize(
    ("stop_reason", "reason"),
    [
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("max_tokens", "length"),
        ("tool_use", "tool_calls"),
        ("refusal", "content_filter"),
        ("pause_turn", "other"),
    ],
)
def test_stop_reasons_map_to_finish_reasons(
    server: FakeAnthropic, client: anthropic.Anthropic, stop_reason: str, reason: str
) -> None:
    server.scripts[stop_reason] = Reply(stop_reason=stop_reason)
    stream = call_client(AnthropicChat(client), chat(HELLO, model=stop_reason))
    events = events_of(b"".join(sse_stream(stream, usage="attach")))
    assert [json.loads(data) for name, data in events if name == "finish"] == [{"reason": reason}]
    assert json.loads(dict(events)["usage"])["finish_reason"] == reason
    assert [name for name, _ in events][-3:] == ["finish", "usage", "done"]


def test_the_wire_carries_reasoning_tool_calls_finish_and_usage(
    server: FakeAnthropic, client: anthropic.Anthropic
) -> None:
    server.scripts["both"] = Reply(
        blocks=(thinking("Weather?"), tool_use("get_weather", '{"city": "Paris"}')),
        stop_reason="tool_use",
        input_tokens=12,
    )
    llm = AnthropicChat(client, tools=[WEATHER_TOOL])
    events = events_of(
        b"".join(sse_stream(call_client(llm, chat(HELLO, model="both")), usage="attach"))
    )
    assert [name for name, _ in events] == [
        "reasoning",
        "tool_call_delta",
        "tool_call_delta",
        "tool_call_delta",
        "tool_call",
        "finish",
        "usage",
        "done",
    ]
    assert events[0][1] == "Weather?"
    assert json.loads(events[1][1]) == {
        "index": 0,
        "id": "toolu_01",
        "name": "get_weather",
        "arguments": "",
    }
    assert json.loads(events[4][1]) == {
        "index": 0,
        "id": "toolu_01",
        "name": "get_weather",
        "arguments": {"city": "Paris"},
    }
    usage = json.loads(events[6][1])
    assert (usage["prompt_tokens"], usage["completion_tokens"], usage["total_tokens"]) == (
        12,
        3,
        15,
    )


def test_async_client_streams_the_same_events(server: FakeAnthropic) -> None:
    server.scripts["think"] = THINK

    async def run() -> bytes:
        async with async_client(server) as llm:
            source = await call_client(AnthropicChat(llm), chat(HELLO, model="think"))
            stream = async_sse_stream(source, usage="attach")
            return b"".join([data async for data in stream])

    events = events_of(asyncio.run(run()))
    assert [e for e in events if e[0] in ("reasoning", "message")] == [
        ("reasoning", "The user "),
        ("reasoning", "greets me."),
        ("message", "Hello"),
        ("message", "!"),
    ]
    assert [name for name, _ in events][-3:] == ["finish", "usage", "done"]


def test_a_mid_stream_error_event_becomes_the_error_event(
    server: FakeAnthropic, client: anthropic.Anthropic
) -> None:
    # The SDK raises on Anthropic's `event: error`; the kit turns that into its own.
    server.scripts["bad"] = Reply(error_after=1, error_message="Overloaded")
    reports: list[Any] = []
    source = call_client(AnthropicChat(client), chat(HELLO, model="bad"))
    events = events_of(b"".join(sse_stream(source, usage="attach", on_complete=reports.append)))
    assert events == [
        ("message", "Hello"),
        (
            "error",
            '{"type": "upstream_error", "message": "the model stream failed (APIStatusError)"}',
        ),
        ("done", "[DONE]"),
    ]
    assert isinstance(reports[0].error, anthropic.APIStatusError)
    assert reports[0].error.body == {
        "type": "error",
        "error": {"type": "overloaded_error", "message": "Overloaded"},
    }


def test_async_mid_stream_error_can_expose_its_message(server: FakeAnthropic) -> None:
    server.scripts["bad"] = Reply(error_after=2)

    async def run() -> bytes:
        async with async_client(server) as llm:
            source = await call_client(AnthropicChat(llm), chat(HELLO, model="bad"))
            stream = async_sse_stream(source, expose_errors=True)
            return b"".join([data async for data in stream])

    events = events_of(asyncio.run(run()))
    assert [name for name, _ in events] == ["message", "message", "error", "done"]
    error = json.loads(events[2][1])
    assert error["type"] == "upstream_error"
    assert error["message"].startswith("APIStatusError: ")
    assert "Overloaded" in error["message"]


def test_an_error_event_as_a_dict_becomes_the_error_event() -> None:
    # A hand-written callable may pass Anthropic's raw events on as dicts.
    chunks = [
        {"type": "message_start", "message": {"model": "m", "usage": {"input_tokens": 3}}},
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hi"}},
        {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}},
    ]
    events = events_of(b"".join(sse_stream(iter(chunks), expose_errors=True)))
    assert events == [
        ("message", "Hi"),
        ("error", '{"type": "upstream_error", "message": "Overloaded"}'),
        ("done", "[DONE]"),
    ]


def test_a_wrong_key_is_a_502_naming_the_problem(server: FakeAnthropic) -> None:
    bad = anthropic.Anthropic(api_key="sk-ant-wrong", base_url=server.url, max_retries=0)
    with pytest.raises(anthropic.AuthenticationError) as info:
        call_client(AnthropicChat(bad), chat(HELLO))
    status, body = client_error(info.value)
    assert status == 502
    # The SDK's own words, whichever version: "Error code: 401 - ..." or "401 invalid x-api-key".
    message = body["error"]["message"]
    assert message.startswith("AuthenticationError: ") and "401" in message, message
    assert "invalid x-api-key" in message, message
    assert "sk-ant-wrong" not in json.dumps(body)


@pytest.mark.parametrize(("status", "expected"), [(404, 404), (429, 429), (529, 502)])
def test_http_errors_before_streaming_keep_a_fitting_status(
    server: FakeAnthropic, client: anthropic.Anthropic, status: int, expected: int
) -> None:
    server.scripts["m"] = Reply(status=status, error_message="nope")
    with pytest.raises(anthropic.APIStatusError) as info:
        call_client(AnthropicChat(client), chat(HELLO, model="m"))
    assert client_error(info.value)[0] == expected


def test_closing_the_sync_stream_closes_the_connection(
    server: FakeAnthropic, client: anthropic.Anthropic
) -> None:
    server.scripts["slow"] = SLOW
    stream = sse_stream(call_client(AnthropicChat(client), chat(HELLO, model="slow")))
    assert [next(stream) for _ in range(3)][1:] == [b"data: tok0 \n\n", b"data: tok1 \n\n"]
    closed_at = time.monotonic()
    stream.close()
    (record,) = server.wait_ended(timeout=5)
    assert record.ended_early
    assert record.ended is not None and record.ended - closed_at < 1.0


def test_closing_the_async_stream_closes_the_connection(server: FakeAnthropic) -> None:
    server.scripts["slow"] = SLOW

    async def run() -> float:
        async with async_client(server) as llm:
            source = await call_client(AnthropicChat(llm), chat(HELLO, model="slow"))
            stream = async_sse_stream(source)
            for _ in range(3):
                await stream.__anext__()
            closed_at = time.monotonic()
            await stream.aclose()
            return closed_at

    closed_at = asyncio.run(run())
    (record,) = server.wait_ended(timeout=5)
    assert record.ended_early
    assert record.ended is not None and record.ended - closed_at < 1.0


def test_a_silent_async_stream_is_released_at_once(server: FakeAnthropic) -> None:
    server.scripts["silent"] = Reply(first_delay=30)

    async def run() -> float:
        async with async_client(server) as llm:
            source = await call_client(AnthropicChat(llm), chat(HELLO, model="silent"))
            stream = async_sse_stream(source, heartbeat=0.1)
            assert await stream.__anext__() == b": stream open\n\n"
            assert await stream.__anext__() == b": ping\n\n"
            closed_at = time.monotonic()
            stream.close()
            await asyncio.sleep(0.3)
            return closed_at

    closed_at = asyncio.run(run())
    (record,) = server.wait_ended(timeout=5)
    assert record.ended_early and record.sent == 0
    assert record.ended is not None and record.ended - closed_at < 1.0
