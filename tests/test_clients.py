"""Calling any client shape, and turning failures before the stream into HTTP errors."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import httpx2
import openai
import pytest
from indoxrouter import exceptions as router_errors  # type: ignore[import-untyped]

from indox_integrations import (
    AsyncDemoClient,
    ChatRequest,
    CompletionRequest,
    DemoClient,
    RequestError,
    async_sse_stream,
    call_client,
    client_error,
    iter_events,
    sse_stream,
)

COMPLETION = CompletionRequest(prompt="Hi", model="m/x", temperature=0.5, max_tokens=None)
CHAT = ChatRequest(messages=[{"role": "user", "content": "Hey"}], max_tokens=7)


class RouterFake:
    """Shaped like indoxrouter.Client: records every call."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any, dict[str, Any]]] = []

    def completion(self, prompt: str, **kwargs: Any) -> Iterator[str]:
        self.calls.append(("completion", prompt, kwargs))
        return iter(["a", "b"])

    def chat(self, messages: list[dict[str, str]], **kwargs: Any) -> Iterator[str]:
        self.calls.append(("chat", messages, kwargs))
        return iter(["c"])


class OpenAIFake:
    """Shaped like openai.OpenAI: ``chat.completions.create`` records its kwargs."""

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []
        self.chat = SimpleNamespace(completions=SimpleNamespace(create=self._create))

    def _create(self, **kwargs: Any) -> Iterator[str]:
        self.calls.append(kwargs)
        return iter(["o"])


# --- call_client -----------------------------------------------------------------


def test_indoxrouter_shaped_completion_call() -> None:
    client = RouterFake()
    assert list(call_client(client, COMPLETION)) == ["a", "b"]
    assert client.calls == [
        (
            "completion",
            "Hi",
            {"stream": True, "return_generator": True, "temperature": 0.5, "model": "m/x"},
        )
    ]


def test_indoxrouter_shaped_chat_call_omits_unset_options() -> None:
    client = RouterFake()
    assert list(call_client(client, CHAT)) == ["c"]
    [(method, messages, kwargs)] = client.calls
    assert method == "chat" and messages == [{"role": "user", "content": "Hey"}]
    assert kwargs == {"stream": True, "return_generator": True, "max_tokens": 7}
    assert "model" not in kwargs and "temperature" not in kwargs


def test_plain_callable_gets_the_request() -> None:
    seen: list[Any] = []

    def upstream(request: Any) -> list[str]:
        seen.append(request)
        return ["z"]

    assert call_client(upstream, CHAT) == ["z"]
    assert seen == [CHAT]


def test_openai_shaped_client_streams_with_usage() -> None:
    client = OpenAIFake()
    assert list(call_client(client, COMPLETION)) == ["o"]
    call_client(client, ChatRequest(messages=CHAT.messages, model="gpt", max_tokens=7))
    assert client.calls == [
        {
            "model": "m/x",
            "messages": [{"role": "user", "content": "Hi"}],
            "stream": True,
            "stream_options": {"include_usage": True},
            "temperature": 0.5,
        },
        {
            "model": "gpt",
            "messages": [{"role": "user", "content": "Hey"}],
            "stream": True,
            "stream_options": {"include_usage": True},
            "max_tokens": 7,
        },
    ]


def test_openai_shaped_client_needs_a_model() -> None:
    with pytest.raises(RequestError) as info:
        call_client(OpenAIFake(), CHAT)
    assert (info.value.field, info.value.status) == ("model", 400)


@pytest.mark.parametrize("client", [object(), 42, "client", SimpleNamespace(chat=None)])
def test_unsupported_client_is_a_type_error(client: Any) -> None:
    with pytest.raises(
        TypeError, match=f"expected an indoxRouter-style client.*got {type(client).__name__}"
    ):
        call_client(client, COMPLETION)


def test_async_client_returns_an_awaitable_of_a_stream() -> None:
    request = CompletionRequest(prompt="round trip", model="demo/echo")
    result = call_client(AsyncDemoClient(delay=0), request)

    async def main() -> bytes:
        return b"".join([data async for data in async_sse_stream(await result)])

    wire = asyncio.run(main())
    assert b"event: done" in wire
    text = "".join(
        line[6:] for line in wire.decode().split("\n") if line.startswith("data: ")
    ).removesuffix("[DONE]")
    assert text == "round trip"


def test_demo_client_through_call_client_and_the_sync_stream() -> None:
    request = ChatRequest(messages=[{"role": "user", "content": "a\nb"}], model="demo/echo")
    events = list(iter_events(call_client(DemoClient(delay=0), request)))
    assert "".join(getattr(e, "text", "") for e in events) == "a\nb"
    assert events[-1].usage["model"] == "demo/echo"  # type: ignore[union-attr]


# --- the real OpenAI SDK over a mocked transport ---------------------------------


def _sse_body() -> bytes:
    base = {"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "gpt-x"}
    chunks = [
        {**base, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]},
        {**base, "choices": [{"index": 0, "delta": {"content": "Hello"}}]},
        {**base, "choices": [{"index": 0, "delta": {"content": " SDK"}}]},
        {**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]},
        {
            **base,
            "choices": [],
            "usage": {"prompt_tokens": 4, "completion_tokens": 2, "total_tokens": 6},
        },
    ]
    body = "".join(f"data: {json.dumps(chunk)}\n\n" for chunk in chunks) + "data: [DONE]\n\n"
    return body.encode()


def _handler(sent: list[dict[str, Any]]) -> Any:
    def handle(request: httpx2.Request) -> httpx2.Response:
        sent.append(json.loads(request.content))
        return httpx2.Response(
            200, headers={"content-type": "text/event-stream"}, content=_sse_body()
        )

    return handle


def _expect_wire(wire: bytes) -> None:
    assert b"data: Hello\n\ndata:  SDK\n\n" in wire
    usage = wire.split(b"event: usage\ndata: ")[1].split(b"\n")[0]
    assert json.loads(usage) == {
        "prompt_tokens": 4,
        "completion_tokens": 2,
        "total_tokens": 6,
        "model": "gpt-x",
        "finish_reason": "stop",
    }
    assert wire.endswith(b"event: done\ndata: [DONE]\n\n")


def test_real_openai_client_streams_through_the_kit() -> None:
    sent: list[dict[str, Any]] = []
    http = httpx2.Client(transport=httpx2.MockTransport(_handler(sent)))
    client = openai.OpenAI(api_key="sk-test", base_url="http://llm.test/v1", http_client=http)
    request = ChatRequest(messages=[{"role": "user", "content": "Hi"}], model="gpt-x")
    wire = b"".join(sse_stream(call_client(client, request), usage="attach"))
    _expect_wire(wire)
    assert sent[0]["stream"] is True
    assert sent[0]["stream_options"] == {"include_usage": True}
    assert sent[0]["messages"] == [{"role": "user", "content": "Hi"}]
    client.close()


def test_real_async_openai_client_streams_through_the_kit() -> None:
    sent: list[dict[str, Any]] = []

    async def main() -> bytes:
        http = httpx2.AsyncClient(transport=httpx2.MockTransport(_handler(sent)))
        client = openai.AsyncOpenAI(
            api_key="sk-test", base_url="http://llm.test/v1", http_client=http
        )
        request = CompletionRequest(prompt="Hi", model="gpt-x", max_tokens=9)
        source = await call_client(client, request)
        wire = b"".join([data async for data in async_sse_stream(source, usage="attach")])
        await client.close()
        return wire

    _expect_wire(asyncio.run(main()))
    assert sent[0]["max_tokens"] == 9 and sent[0]["model"] == "gpt-x"


# --- client_error ----------------------------------------------------------------


def _raised(exc: BaseException) -> BaseException:
    """The exception as it arrives in an ``except`` block: with a traceback."""

    def deep() -> None:
        raise exc

    try:
        deep()
    except BaseException as caught:
        return caught
    raise AssertionError("unreachable")


def _openai_error(cls: type[openai.APIStatusError], status: int) -> openai.APIStatusError:
    response = httpx2.Response(status, request=httpx2.Request("POST", "http://llm.test/v1"))
    return cls(f"Error code: {status} - model gone", response=response, body=None)


@pytest.mark.parametrize(
    ("exc", "status"),
    [
        (ValueError("bad temperature"), 400),
        (KeyError("messages"), 400),
        (router_errors.InvalidParametersError("Invalid parameters: max_tokens"), 400),
        (router_errors.ValidationError("Request validation failed"), 400),
        (router_errors.RateLimitError("Rate limit exceeded"), 429),
        (router_errors.ModelNotFoundError("no such model"), 404),
        (router_errors.InsufficientCreditsError("Insufficient credits"), 402),
        (router_errors.AuthenticationError("Authentication failed: bad key"), 502),
        (router_errors.NetworkError("unreachable"), 502),
        (TimeoutError("slow"), 504),
        (ConnectionRefusedError("refused"), 502),
        (RuntimeError("anything else"), 502),
        (_openai_error(openai.NotFoundError, 404), 404),
        (_openai_error(openai.RateLimitError, 429), 429),
        (_openai_error(openai.AuthenticationError, 401), 502),
        (_openai_error(openai.UnprocessableEntityError, 422), 422),
        (_openai_error(openai.InternalServerError, 500), 502),
    ],
    ids=lambda value: type(value).__name__ if isinstance(value, BaseException) else str(value),
)
def test_client_error_status(exc: BaseException, status: int) -> None:
    got, body = client_error(_raised(exc))
    assert got == status
    assert body["error"]["type"] == "upstream_error"
    assert body["error"]["message"].startswith(type(exc).__name__)


def test_status_code_attribute_is_used_whatever_the_class_name() -> None:
    class APIStatusError(Exception):
        status_code = 404

    assert client_error(APIStatusError("gone"))[0] == 404
    APIStatusError.status_code = 500
    assert client_error(APIStatusError("boom"))[0] == 502


def test_request_error_keeps_its_status_and_body() -> None:
    error = RequestError("model", "is required by this client")
    assert client_error(error) == (400, error.as_json())
    too_big = RequestError("body", "too big", 413)
    assert client_error(too_big)[0] == 413


def test_client_error_message_is_one_line_and_the_log_has_the_traceback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.ERROR, logger="indox_integrations")
    message = 'first line\nTraceback (most recent call last):\n  File "x.py"\nsk-secret'
    status, body = client_error(_raised(RuntimeError(message)))
    assert body == {"error": {"type": "upstream_error", "message": "RuntimeError: first line"}}
    assert "Traceback" not in json.dumps(body) and "File" not in json.dumps(body)
    [record] = caplog.records
    assert record.exc_info is not None and record.exc_info[2] is not None


def test_client_error_message_is_bounded_and_names_a_blank_exception() -> None:
    assert client_error(RuntimeError())[1]["error"]["message"] == "RuntimeError"
    long = client_error(RuntimeError("x" * 1000))[1]["error"]["message"]
    assert long == "RuntimeError: " + "x" * 300
