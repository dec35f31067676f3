"""The published ``indoxrouter`` client against a local server speaking its API, via the core."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from typing import Any

import indoxrouter
import pytest
from fake_indoxrouter import FakeIndoxRouter, Script

from indox_integrations import (
    ChatRequest,
    CompletionRequest,
    ErrorEvent,
    Limits,
    TextEvent,
    UsageEvent,
    async_sse_stream,
    call_client,
    client_error,
    iter_events,
    parse_chat,
    sse_stream,
)

SLOW = Script(texts=tuple(f"tok{i} " for i in range(200)), delay=0.05)
"""Ten seconds of tokens: far longer than any test waits."""


@pytest.fixture
def server() -> Iterator[FakeIndoxRouter]:
    with FakeIndoxRouter() as fake:
        yield fake


@pytest.fixture
def client(server: FakeIndoxRouter) -> Iterator[indoxrouter.Client]:
    with indoxrouter.Client(api_key="test", base_url=server.url) as real:
        yield real


def events_of(wire: bytes) -> list[tuple[str, str]]:
    """(event, data) pairs of an SSE body; comments dropped."""
    events = []
    for block in wire.decode().split("\n\n"):
        lines = [line for line in block.split("\n") if line and not line.startswith(":")]
        if not lines:
            continue
        name = next((line[7:] for line in lines if line.startswith("event: ")), "message")
        data = "\n".join(line[6:] for line in lines if line.startswith("data: "))
        events.append((name, data))
    return events


def chat(model: str = "openai/gpt-4o-mini", text: str = "Say hello, dear world") -> ChatRequest:
    return parse_chat({"messages": [{"role": "user", "content": text}], "model": model}, Limits())


def test_construction_exchanges_the_key_for_a_token(
    server: FakeIndoxRouter, client: indoxrouter.Client
) -> None:
    assert server.paths() == ["/api/v1/auth/api-key"]
    assert server.requests[0].headers["x-api-key"] == "test"


def test_a_wrong_key_fails_at_construction_with_a_clear_502(server: FakeIndoxRouter) -> None:
    with pytest.raises(indoxrouter.AuthenticationError) as info:
        indoxrouter.Client(api_key="wrong", base_url=server.url)
    assert server.paths() == ["/api/v1/auth/api-key", "/api/v1/auth/token", "/api/v1/auth/token"]
    status, body = client_error(info.value)
    assert status == 502
    assert body["error"]["type"] == "upstream_error"
    assert body["error"]["message"].startswith("AuthenticationError: Authentication failed")


def test_chat_stream_text_usage_and_finish_reason(
    server: FakeIndoxRouter, client: indoxrouter.Client
) -> None:
    wire = b"".join(sse_stream(call_client(client, chat()), usage="attach"))
    events = events_of(wire)
    assert events[:3] == [("message", "Hello"), ("message", ", world"), ("message", "!")]
    assert events[-1] == ("done", "[DONE]")
    assert events[-2][0] == "usage"
    assert json.loads(events[-2][1]) == {
        "prompt_tokens": 4,
        "completion_tokens": 3,
        "total_tokens": 7,
        "cost": 1.4e-05,
        "model": "openai/gpt-4o-mini",
        "provider": "openai",
        "finish_reason": "stop",
    }
    (record,) = server.wait_ended()
    assert record.path == "/api/v1/chat/completions"
    assert record.outcome == "completed"
    assert record.body["stream"] is True
    assert record.body["messages"] == [{"role": "user", "content": "Say hello, dear world"}]


def test_completion_stream_with_the_guides_usage_record(
    server: FakeIndoxRouter, client: indoxrouter.Client
) -> None:
    server.usage_style = "is_usage_info"
    request = CompletionRequest("Tell me a tale", model="openai/gpt-4o-mini", max_tokens=50)
    events = list(iter_events(call_client(client, request)))
    assert [e.text for e in events if isinstance(e, TextEvent)] == ["Hello", ", world", "!"]
    usage = [e.usage for e in events if isinstance(e, UsageEvent)]
    assert usage == [
        {
            "prompt_tokens": 4,
            "completion_tokens": 3,
            "total_tokens": 7,
            "cost": 1.4e-05,
            "model": "openai/gpt-4o-mini",
            "provider": "openai",
            "finish_reason": "stop",
        }
    ]
    (record,) = server.wait_ended()
    assert record.path == "/api/v1/completions"
    assert record.body["prompt"] == "Tell me a tale"
    assert record.body["max_tokens"] == 50


def test_error_chunk_mid_stream_becomes_the_error_event(
    server: FakeIndoxRouter, client: indoxrouter.Client
) -> None:
    server.scripts["bad"] = Script(error_after=2, error_message="provider overloaded")
    reports: list[Any] = []
    stream = sse_stream(
        call_client(client, chat("bad")), usage="attach", on_complete=reports.append
    )
    events = events_of(b"".join(stream))
    assert events[:2] == [("message", "Hello"), ("message", ", world")]
    assert events[2][0] == "error"
    assert json.loads(events[2][1]) == {
        "type": "upstream_error",
        "message": "the model stream failed (APIError)",
    }
    assert events[3:] == [("done", "[DONE]")]
    assert reports[0].outcome == "upstream_error"
    assert isinstance(reports[0].error, indoxrouter.APIError)
    assert "provider overloaded" in str(reports[0].error)


def test_error_text_is_shown_only_when_exposed(
    client: indoxrouter.Client, server: FakeIndoxRouter
) -> None:
    server.scripts["bad"] = Script(error_after=0, error_message="quota gone")
    events = events_of(b"".join(sse_stream(call_client(client, chat("bad")), expose_errors=True)))
    assert json.loads(events[0][1])["message"] == (
        "APIError: API error during streaming: quota gone"
    )


@pytest.mark.parametrize(
    ("status", "message", "expected"),
    [
        (404, "model unknown/x not found", 404),
        (429, "slow down", 429),
        (402, "no credits left", 402),
    ],
)
def test_http_errors_before_streaming_keep_a_fitting_status(
    server: FakeIndoxRouter,
    client: indoxrouter.Client,
    status: int,
    message: str,
    expected: int,
) -> None:
    server.scripts["m"] = Script(status=status, error_message=message)
    with pytest.raises(indoxrouter.exceptions.IndoxRouterError) as info:
        call_client(client, chat("m"))
    code, body = client_error(info.value)
    assert code == expected
    assert message in body["error"]["message"]


def test_closing_the_stream_closes_the_generator_and_its_connection(
    server: FakeIndoxRouter, client: indoxrouter.Client
) -> None:
    server.scripts["slow"] = SLOW
    generator = call_client(client, chat("slow"))
    stream = sse_stream(generator)
    received = [next(stream) for _ in range(4)]
    assert received[0] == b": stream open\n\n"
    closed_at = time.monotonic()
    stream.close()
    (record,) = server.wait_ended(timeout=5)
    assert record.ended_early, record
    assert record.ended is not None and record.ended - closed_at < 1.0
    assert record.sent < len(SLOW.texts) / 2
    deadline = time.monotonic() + 2
    while generator.gi_frame is not None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert generator.gi_frame is None  # closed, from the thread that iterated it


def test_a_silent_upstream_is_released_at_its_next_keepalive(
    server: FakeIndoxRouter, client: indoxrouter.Client
) -> None:
    # indoxrouter's generator yields every ``data:`` chunk, an empty-content
    # one too, which hands control back to the kit; SSE comments it skips.
    server.scripts["silent"] = Script(first_delay=30, keepalive=0.2)
    stream = sse_stream(call_client(client, chat("silent")), heartbeat=0.1)
    assert next(stream) == b": stream open\n\n"
    assert next(stream) == b": ping\n\n"
    assert next(stream) == b": ping\n\n"
    closed_at = time.monotonic()
    stream.close()
    (record,) = server.wait_ended(timeout=5)
    assert record.ended_early and record.sent == 0
    assert record.ended is not None and record.ended - closed_at < 1.0


def test_comment_keepalives_do_not_wake_the_generator(
    server: FakeIndoxRouter, client: indoxrouter.Client
) -> None:
    # A generator blocked in a socket read cannot be closed from another
    # thread: the connection closes right after the next data chunk.
    server.scripts["quiet"] = Script(
        texts=("first", "second"), delay=1.5, keepalive=0.1, keepalive_comment=True
    )
    stream = sse_stream(call_client(client, chat("quiet")))
    assert next(stream) == b": stream open\n\n"
    assert next(stream) == b"data: first\n\n"
    closed_at = time.monotonic()
    stream.close()
    (record,) = server.wait_ended(timeout=5)
    assert record.ended is not None and record.ended - closed_at > 1.0
    assert record.sent == 2  # it had to send "second" before the client let go


def test_a_full_response_answers_as_one_text_event_plus_usage(
    server: FakeIndoxRouter, client: indoxrouter.Client
) -> None:
    def no_streaming(request: ChatRequest) -> Any:
        return client.chat(request.messages, model=request.model, stream=False)

    events = events_of(b"".join(sse_stream(call_client(no_streaming, chat()), usage="attach")))
    assert events[:2] == [("message", "Hello, world!"), ("finish", '{"reason": "stop"}')]
    assert events[2][0] == "usage"
    assert json.loads(events[2][1]) == {
        "prompt_tokens": 4,
        "completion_tokens": 3,
        "total_tokens": 7,
        "cost": 1.4e-05,
        "model": "openai/gpt-4o-mini",
        "provider": "openai",
        "finish_reason": "stop",
    }
    assert events[3:] == [("done", "[DONE]")]
    assert server.streams == []
    assert server.requests[-1].body["stream"] is False


def test_served_by_the_async_pipeline_from_a_thread_of_its_own(
    server: FakeIndoxRouter, client: indoxrouter.Client
) -> None:
    async def run() -> list[tuple[str, str]]:
        stream = async_sse_stream(call_client(client, chat()), usage="attach")
        return events_of(b"".join([data async for data in stream]))

    events = asyncio.run(run())
    assert [data for name, data in events if name == "message"] == ["Hello", ", world", "!"]
    assert [name for name, _ in events][-2:] == ["usage", "done"]


def test_error_events_come_from_error_chunks_of_any_client() -> None:
    # A client that yields the error record instead of raising it.
    events = list(iter_events(iter([{"data": "Hi"}, {"error": {"message": "bad gateway"}}])))
    assert events == [TextEvent("Hi"), ErrorEvent("upstream_error", "bad gateway")]
