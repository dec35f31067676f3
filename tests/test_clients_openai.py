"""The ``openai`` SDK, sync and async, against a local OpenAI-compatible server, via the core."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import openai
import pytest
from fake_indoxrouter import Script
from fake_openai import FakeOpenAI

from indox_integrations import (
    ChatRequest,
    CompletionRequest,
    FinishEvent,
    Limits,
    RequestError,
    TextEvent,
    UsageEvent,
    async_sse_stream,
    call_client,
    client_error,
    iter_events,
    parse_chat,
    sse_stream,
)
from indox_integrations.openai import OpenAIChat

SLOW = Script(texts=tuple(f"tok{i} " for i in range(200)), delay=0.05)

USAGE = {
    "prompt_tokens": 4,
    "completion_tokens": 3,
    "total_tokens": 7,
    "model": "gpt-test",
    "finish_reason": "stop",
}


@pytest.fixture
def server() -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as fake:
        yield fake


@pytest.fixture
def client(server: FakeOpenAI) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(api_key="test", base_url=server.url + "/v1", max_retries=0) as real:
        yield real


def async_client(server: FakeOpenAI, **options: Any) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(api_key="test", base_url=server.url + "/v1", max_retries=0, **options)


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


def chat(model: str | None = "gpt-test", text: str = "Say hello, dear world") -> ChatRequest:
    return parse_chat({"messages": [{"role": "user", "content": text}], "model": model}, Limits())


def usage_event(events: list[tuple[str, str]]) -> dict[str, Any]:
    (usage,) = [json.loads(data) for name, data in events if name == "usage"]
    return usage  # type: ignore[no-any-return]


def test_sync_stream_asks_for_usage_and_normalizes_it(
    server: FakeOpenAI, client: openai.OpenAI
) -> None:
    events = events_of(b"".join(sse_stream(call_client(client, chat()), usage="attach")))
    assert events[:3] == [("message", "Hello"), ("message", ", world"), ("message", "!")]
    assert usage_event(events) == USAGE
    assert events[-1] == ("done", "[DONE]")
    (record,) = server.wait_ended()
    assert record.outcome == "completed"
    assert record.body["stream"] is True
    assert record.body["stream_options"] == {"include_usage": True}
    assert server.requests[0].headers["authorization"] == "Bearer test"


def test_real_chunk_objects_normalize_to_text_and_usage(client: openai.OpenAI) -> None:
    stream = call_client(client, CompletionRequest("Tell me a tale", model="gpt-test"))
    events = list(iter_events(stream))
    assert events == [
        TextEvent("Hello"),
        TextEvent(", world"),
        TextEvent("!"),
        FinishEvent("stop"),
        UsageEvent(USAGE),
    ]


def test_the_completion_route_sends_the_prompt_as_a_user_message(
    server: FakeOpenAI, client: openai.OpenAI
) -> None:
    request = CompletionRequest("Tell me a tale", model="gpt-test", temperature=0.2, max_tokens=9)
    list(iter_events(call_client(client, request)))
    body = server.requests[-1].body
    assert body["messages"] == [{"role": "user", "content": "Tell me a tale"}]
    assert (body["temperature"], body["max_tokens"]) == (0.2, 9)


def test_async_stream_runs_as_a_task_without_a_thread(server: FakeOpenAI) -> None:
    async def run() -> tuple[list[tuple[str, str]], set[str]]:
        async with async_client(server) as llm:
            stream = async_sse_stream(await call_client(llm, chat()), usage="attach")
            wire = b""
            names: set[str] = set()
            async for data in stream:
                wire += data
                names |= {thread.name for thread in threading.enumerate()}
            return events_of(wire), names

    events, thread_names = asyncio.run(run())
    assert [data for name, data in events if name == "message"] == ["Hello", ", world", "!"]
    assert usage_event(events) == USAGE
    assert "indox-upstream" not in thread_names


def test_mid_stream_error_becomes_the_error_event(
    server: FakeOpenAI, client: openai.OpenAI
) -> None:
    server.scripts["bad"] = Script(error_after=1, error_message="the model is overloaded")
    reports: list[Any] = []
    stream = sse_stream(
        call_client(client, chat("bad")), usage="attach", on_complete=reports.append
    )
    events = events_of(b"".join(stream))
    assert events == [
        ("message", "Hello"),
        ("error", '{"type": "upstream_error", "message": "the model stream failed (APIError)"}'),
        ("done", "[DONE]"),
    ]
    assert isinstance(reports[0].error, openai.APIError)
    assert str(reports[0].error) == "the model is overloaded"


def test_async_mid_stream_error_becomes_the_error_event(server: FakeOpenAI) -> None:
    server.scripts["bad"] = Script(error_after=2)

    async def run() -> bytes:
        async with async_client(server) as llm:
            stream = async_sse_stream(await call_client(llm, chat("bad")), expose_errors=True)
            return b"".join([data async for data in stream])

    events = events_of(asyncio.run(run()))
    assert [name for name, _ in events] == ["message", "message", "error", "done"]
    assert json.loads(events[2][1]) == {
        "type": "upstream_error",
        "message": "APIError: provider overloaded",
    }


def test_a_wrong_key_is_a_502_naming_the_problem(server: FakeOpenAI) -> None:
    bad = openai.OpenAI(api_key="sk-wrong", base_url=server.url + "/v1", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as info:
        call_client(bad, chat())
    status, body = client_error(info.value)
    assert status == 502
    assert body["error"]["message"].startswith("AuthenticationError: Error code: 401")
    assert "sk-wrong" not in json.dumps(body)


@pytest.mark.parametrize(("status", "expected"), [(404, 404), (429, 429), (500, 502)])
def test_http_errors_before_streaming_keep_a_fitting_status(
    server: FakeOpenAI, client: openai.OpenAI, status: int, expected: int
) -> None:
    server.scripts["m"] = Script(status=status, error_message="nope")
    with pytest.raises(openai.APIStatusError) as info:
        call_client(client, chat("m"))
    assert client_error(info.value)[0] == expected


def test_a_request_without_a_model_is_refused_before_calling(
    server: FakeOpenAI, client: openai.OpenAI
) -> None:
    with pytest.raises(RequestError) as info:
        call_client(client, chat(None))
    assert info.value.field == "model"
    assert server.requests == []


def test_closing_the_sync_stream_closes_the_connection(
    server: FakeOpenAI, client: openai.OpenAI
) -> None:
    server.scripts["slow"] = SLOW
    stream = sse_stream(call_client(client, chat("slow")))
    assert [next(stream) for _ in range(3)][1:] == [b"data: tok0 \n\n", b"data: tok1 \n\n"]
    closed_at = time.monotonic()
    stream.close()
    (record,) = server.wait_ended(timeout=5)
    assert record.ended_early
    assert record.ended is not None and record.ended - closed_at < 1.0


def test_closing_the_async_stream_closes_the_connection(server: FakeOpenAI) -> None:
    server.scripts["slow"] = SLOW

    async def run() -> float:
        async with async_client(server) as llm:
            stream = async_sse_stream(await call_client(llm, chat("slow")))
            for _ in range(3):
                await stream.__anext__()
            closed_at = time.monotonic()
            await stream.aclose()
            return closed_at

    closed_at = asyncio.run(run())
    (record,) = server.wait_ended(timeout=5)
    assert record.ended_early
    assert record.ended is not None and record.ended - closed_at < 1.0


def test_a_silent_async_stream_is_released_at_once(server: FakeOpenAI) -> None:
    # No keep-alives needed: cancelling the task interrupts the pending read.
    server.scripts["silent"] = Script(first_delay=30)

    async def run() -> float:
        async with async_client(server) as llm:
            stream = async_sse_stream(await call_client(llm, chat("silent")), heartbeat=0.1)
            assert await stream.__anext__() == b": stream open\n\n"
            assert await stream.__anext__() == b": ping\n\n"
            closed_at = time.monotonic()
            stream.close()  # the sync close() Django's response closers call
            await asyncio.sleep(0.3)
            return closed_at

    closed_at = asyncio.run(run())
    (record,) = server.wait_ended(timeout=5)
    assert record.ended_early and record.sent == 0
    assert record.ended is not None and record.ended - closed_at < 1.0


# -- the OpenAIChat adapter ---------------------------------------------------------------


def test_adapter_fills_in_the_model_and_the_system_prompt(
    server: FakeOpenAI, client: openai.OpenAI
) -> None:
    llm = OpenAIChat(client, model="gpt-default", system="Be brief.", user="u-1")
    events = list(iter_events(call_client(llm, chat(None))))
    assert "".join(e.text for e in events if isinstance(e, TextEvent)) == "Hello, world!"
    assert [e.usage["model"] for e in events if isinstance(e, UsageEvent)] == ["gpt-default"]
    body = server.requests[-1].body
    assert body["model"] == "gpt-default"
    assert body["user"] == "u-1"
    assert body["stream_options"] == {"include_usage": True}
    assert body["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Say hello, dear world"},
    ]


def test_adapter_keeps_the_requests_own_model_and_system_message(
    server: FakeOpenAI, client: openai.OpenAI
) -> None:
    request = parse_chat(
        {
            "messages": [
                {"role": "system", "content": "Answer in French."},
                {"role": "user", "content": "Hi"},
            ],
            "model": "gpt-asked",
        },
        Limits(),
    )
    list(iter_events(call_client(OpenAIChat(client, model="gpt-default", system="x"), request)))
    body = server.requests[-1].body
    assert body["model"] == "gpt-asked"
    assert [m["content"] for m in body["messages"]] == ["Answer in French.", "Hi"]


def test_adapter_without_any_model_says_where_to_name_one(client: openai.OpenAI) -> None:
    with pytest.raises(RequestError, match="OpenAIChat"):
        OpenAIChat(client)(chat(None))


def test_adapter_refuses_what_is_not_an_openai_client() -> None:
    with pytest.raises(TypeError, match="expected an OpenAI client .* got dict"):
        OpenAIChat({})


def test_adapter_without_streaming_answers_as_one_text_event_plus_usage(
    server: FakeOpenAI, client: openai.OpenAI
) -> None:
    llm = OpenAIChat(client, model="gpt-test", stream=False)
    events = events_of(b"".join(sse_stream(call_client(llm, chat()), usage="attach")))
    assert events == [
        ("message", "Hello, world!"),
        ("finish", '{"reason": "stop"}'),
        ("usage", json.dumps(USAGE)),
        ("done", "[DONE]"),
    ]
    assert server.streams == []
    assert "stream" not in server.requests[-1].body


def test_async_adapter_without_streaming(server: FakeOpenAI) -> None:
    async def run() -> bytes:
        async with async_client(server) as llm:
            response = await call_client(OpenAIChat(llm, model="gpt-test", stream=False), chat())
            stream = async_sse_stream(response, usage="attach")
            return b"".join([data async for data in stream])

    events = events_of(asyncio.run(run()))
    assert events == [
        ("message", "Hello, world!"),
        ("finish", '{"reason": "stop"}'),
        ("usage", json.dumps(USAGE)),
        ("done", "[DONE]"),
    ]
