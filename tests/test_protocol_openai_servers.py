"""``protocol="openai"`` through real servers, read by the real clients.

Every framework's endpoint (FastAPI on uvicorn, Flask on Werkzeug and gunicorn,
Django under gunicorn and uvicorn) at ``base_url=http://127.0.0.1:PORT/v1``,
read by the openai SDK (sync and async, streamed, not streamed, and the
``chat.completions.stream()`` helper), LangChain's ``ChatOpenAI`` and the
openai npm package in Node: text, usage, reasoning, tool calls, a mid-stream
error and an abort that closes the upstream.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from langchain_core.messages import AIMessageChunk
from langchain_openai import ChatOpenAI
from openai_apps import KEY, KEYS, MODELS, fastapi_app, flask_app
from pydantic import BaseModel
from servers import (
    free_port,
    gunicorn_argv,
    process_server,
    remote_tracker,
    uvicorn_argv,
    uvicorn_thread,
    wait_closed,
    werkzeug_thread,
)

from indox_integrations.demo import _ANSWER, _THOUGHTS

SERVERS = (
    "fastapi-uvicorn",
    "flask-werkzeug",
    "flask-gunicorn",
    "django-gunicorn",
    "django-uvicorn",
)
ASGI = ("fastapi-uvicorn", "django-uvicorn")
PROMPT = 'héllo "wörld" 🙂\nline two\ttab [DONE] data: x'


@pytest.fixture(scope="module", params=SERVERS)
def served(request: pytest.FixtureRequest) -> Iterator[tuple[str, str]]:
    kind: str = request.param
    if kind == "fastapi-uvicorn":
        with uvicorn_thread(fastapi_app()) as url:
            yield kind, url
    elif kind == "flask-werkzeug":
        with werkzeug_thread(flask_app()) as url:
            yield kind, url
    else:
        port = free_port()
        argv = {
            "flask-gunicorn": gunicorn_argv("openai_apps:flask_app()", port),
            "django-gunicorn": gunicorn_argv("openai_django.wsgi", port),
            "django-uvicorn": uvicorn_argv("openai_django.asgi:application", port),
        }[kind]
        with process_server(argv, port) as url:
            yield kind, url


@pytest.fixture
def server(served: tuple[str, str]) -> str:
    url = served[1]
    # An upstream a previous test left must not count in this test's tracker.
    deadline = time.monotonic() + 10
    while remote_tracker(url)["active"] and time.monotonic() < deadline:
        time.sleep(0.05)
    httpx.post(f"{url}/_reset").raise_for_status()
    return url


@pytest.fixture
def kind(served: tuple[str, str]) -> str:
    return served[0]


_OPEN: list[Any] = []


@pytest.fixture(autouse=True)
def close_clients() -> Iterator[None]:
    yield
    while _OPEN:
        _OPEN.pop().close()


def sdk(server: str, api_key: str = KEY) -> openai.OpenAI:
    client = openai.OpenAI(base_url=f"{server}/v1", api_key=api_key, max_retries=0, timeout=30)
    _OPEN.append(client)
    return client


def async_sdk(server: str) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=f"{server}/v1", api_key=KEY, max_retries=0, timeout=30)


def user(content: str) -> list[Any]:
    return [{"role": "user", "content": content}]


def thoughts(prompt: str) -> str:
    return _THOUGHTS.format(prompt=prompt.strip())


def assert_closed_early(server: str, count: int = 1) -> None:
    snapshot = wait_closed(server, count)
    assert snapshot["closed"] == count, snapshot
    assert snapshot["completed"] == 0, snapshot
    assert snapshot["pulled"] < 400 * count, snapshot


class GetWeather(BaseModel):
    city: str
    unit: str


WEATHER_TOOL = openai.pydantic_function_tool(GetWeather, name="get_weather")


# --- the openai SDK, sync ---------------------------------------------------------


def test_models_lists_the_allowed_models(server: str) -> None:
    assert [model.id for model in sdk(server).models.list()] == sorted(MODELS)


def test_stream_text_then_finish_then_usage(server: str) -> None:
    stream = sdk(server).chat.completions.create(
        model="demo/echo",
        messages=user(PROMPT),
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    assert len({chunk.id for chunk in chunks}) == 1 and chunks[0].id.startswith("chatcmpl-")
    assert {chunk.model for chunk in chunks} == {"demo/echo"}
    pieces = [
        c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content
    ]
    assert "".join(pieces) == PROMPT
    assert chunks[-2].choices[0].finish_reason == "stop"
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.prompt_tokens == len(PROMPT.split())
    assert chunks[-1].usage.completion_tokens == len(pieces)
    assert chunks[-1].usage.total_tokens == len(PROMPT.split()) + len(pieces)


def test_without_include_usage_no_usage_chunk(server: str) -> None:
    chunks = list(
        sdk(server).chat.completions.create(model="demo/echo", messages=user("hi"), stream=True)
    )
    assert all(chunk.usage is None and chunk.choices for chunk in chunks)
    assert chunks[-1].choices[0].finish_reason == "stop"


def test_not_streamed(server: str) -> None:
    completion = sdk(server).chat.completions.create(model="demo/echo", messages=user(PROMPT))
    assert completion.object == "chat.completion"
    assert completion.choices[0].message.content == PROMPT
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage is not None
    assert completion.usage.prompt_tokens == len(PROMPT.split())


def test_reasoning_streamed_and_not(server: str) -> None:
    client = sdk(server)
    chunks = list(
        client.chat.completions.create(model="demo/think", messages=user(PROMPT), stream=True)
    )
    deltas = [chunk.choices[0].delta for chunk in chunks]
    reasoning = "".join(getattr(delta, "reasoning_content", None) or "" for delta in deltas)
    assert reasoning == thoughts(PROMPT)
    assert "".join(delta.content or "" for delta in deltas) == _ANSWER
    message = client.chat.completions.create(model="demo/think", messages=user(PROMPT))
    assert message.choices[0].message.content == _ANSWER
    assert getattr(message.choices[0].message, "reasoning_content", None) == thoughts(PROMPT)


def test_stream_helper_assembles_and_parses_tool_calls(server: str) -> None:
    with sdk(server).chat.completions.stream(
        model="demo/tools",
        messages=user("What is the weather in Oslo?"),
        tools=[WEATHER_TOOL],
        stream_options={"include_usage": True},
    ) as stream:
        done = [e for e in stream if e.type == "tool_calls.function.arguments.done"]
        final = stream.get_final_completion()
    assert [(e.name, e.parsed_arguments) for e in done] == [
        ("get_weather", GetWeather(city="Oslo", unit="celsius"))
    ]
    choice = final.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    assert choice.message.tool_calls is not None
    (call,) = choice.message.tool_calls
    assert (call.id, call.type, call.function.name) == ("call_demo_1", "function", "get_weather")
    assert call.function.parsed_arguments == GetWeather(city="Oslo", unit="celsius")
    assert final.usage is not None and final.usage.total_tokens > 0


def test_tool_calls_not_streamed(server: str) -> None:
    completion = sdk(server).chat.completions.create(
        model="demo/tools", messages=user("Weather in Rome?"), tools=[WEATHER_TOOL]
    )
    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.content is None
    assert choice.message.tool_calls is not None
    (call,) = choice.message.tool_calls
    assert call.function.name == "get_weather"  # type: ignore[union-attr]
    assert json.loads(call.function.arguments) == {"city": "Rome", "unit": "celsius"}  # type: ignore[union-attr]


def test_a_mid_stream_failure_raises_api_error_after_the_text(server: str) -> None:
    text = []
    stream = sdk(server).chat.completions.create(
        model="demo/fail", messages=user("hi"), stream=True
    )
    with pytest.raises(openai.APIError) as info:
        for chunk in stream:
            text.append(chunk.choices[0].delta.content or "")
    assert "".join(text) == "This answer starts "
    assert info.value.message == "the model stream failed (DemoProviderError)"
    assert (info.value.type, info.value.code) == ("server_error", "upstream_error")
    assert "secret" not in str(info.value.body)


def test_failures_before_the_answer_are_502(server: str) -> None:
    client = sdk(server)
    with pytest.raises(openai.InternalServerError) as info:
        client.chat.completions.create(model="demo/fail", messages=user("hi"))
    assert info.value.status_code == 502
    assert info.value.code == "upstream_error"
    with pytest.raises(openai.InternalServerError) as info:
        client.chat.completions.create(model="raise/now", messages=user("hi"), stream=True)
    assert info.value.status_code == 502
    assert info.value.body["message"] == "ProviderDown: the provider is unreachable"  # type: ignore[index]


def test_closing_the_stream_closes_the_upstream(server: str) -> None:
    stream = sdk(server).chat.completions.create(
        model="test/slow", messages=user("go"), stream=True
    )
    seen = []
    for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            seen.append(chunk.choices[0].delta.content)
        if len(seen) == 3:
            break
    stream.close()
    assert seen == ["tok0 ", "tok1 ", "tok2 "]
    assert_closed_early(server)


def test_heartbeats_are_comments_the_sdk_skips(server: str) -> None:
    body = {"model": "test/pause", "messages": user("go"), "stream": True}
    headers = {"Authorization": f"Bearer {KEY}", "Accept-Encoding": "gzip"}
    with httpx.stream("POST", f"{server}/v1/chat/completions", json=body, headers=headers) as r:
        raw = b"".join(r.iter_raw())
        assert r.headers["content-type"] == "text/event-stream; charset=utf-8"
        assert r.headers.get("content-encoding", "") == ""  # Django sends it empty: no GZip
        assert "content-length" not in r.headers
    assert b"\n\n: ping\n\n" in raw
    assert raw.endswith(b"\n\ndata: [DONE]\n\n")
    chunks = list(
        sdk(server).chat.completions.create(model="test/pause", messages=user("go"), stream=True)
    )
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == "tok0 tok1 tok2 "


# --- refused requests -----------------------------------------------------------------


def test_refused_requests_never_reach_the_client(server: str) -> None:
    client = sdk(server)
    with pytest.raises(openai.AuthenticationError) as auth:
        sdk(server, api_key="sk-wrong").chat.completions.create(
            model="demo/echo", messages=user("hi")
        )
    assert auth.value.code == "invalid_api_key"
    with pytest.raises(openai.AuthenticationError):
        sdk(server, api_key="sk-wrong").models.list()
    with pytest.raises(openai.BadRequestError) as bad:
        client.chat.completions.create(model="demo/echo", messages=user("hi"), n=2)
    assert bad.value.param == "n"  # type: ignore[attr-defined]
    with pytest.raises(openai.BadRequestError) as bad:
        client.chat.completions.create(
            model="demo/echo",
            messages=[
                {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}
            ],
        )
    assert bad.value.param == "messages[0].content[0]"  # type: ignore[attr-defined]
    with pytest.raises(openai.NotFoundError) as missing:
        client.chat.completions.create(model="gpt-none", messages=user("hi"), stream=True)
    assert missing.value.code == "model_not_found"
    with pytest.raises(openai.APIStatusError) as large:
        client.chat.completions.create(model="demo/echo", messages=user("x" * 9000))
    assert large.value.status_code == 413
    assert large.value.code == "request_too_large"
    response = httpx.post(
        f"{server}/v1/chat/completions",
        content=b"model=demo/echo",
        headers={
            "Authorization": f"Bearer {KEY}",
            "Content-Type": "application/x-www-form-urlencoded",
        },
    )
    assert response.status_code == 415
    assert response.json()["error"]["code"] == "unsupported_media_type"
    # The second key works too, and a bearer key is all a Django view needs: no CSRF token.
    assert sdk(server, api_key=KEYS[1]).models.list().data
    assert remote_tracker(server)["calls"] == []


def test_a_wrong_method_is_405_in_openais_error_shape(server: str) -> None:
    for method, path, allowed in (
        ("GET", "/v1/chat/completions", "POST"),
        ("DELETE", "/v1/chat/completions", "POST"),
        ("POST", "/v1/models", "GET"),
    ):
        response = httpx.request(
            method, f"{server}{path}", headers={"Authorization": f"Bearer {KEY}"}
        )
        assert response.status_code == 405, (method, path)
        assert response.json() == {
            "error": {
                "message": f"method: expected {allowed}, got {method}",
                "type": "invalid_request_error",
                "param": None,
                "code": "method_not_allowed",
            }
        }
        assert allowed in response.headers["allow"].split(", ")
    assert remote_tracker(server)["calls"] == []


# --- the openai SDK, async ----------------------------------------------------------


def test_async_stream_text_and_usage(server: str) -> None:
    async def run() -> list[Any]:
        async with async_sdk(server) as client:
            stream = await client.chat.completions.create(
                model="demo/echo",
                messages=user(PROMPT),
                stream=True,
                stream_options={"include_usage": True},
            )
            return [chunk async for chunk in stream]

    chunks = asyncio.run(run())
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == PROMPT
    assert chunks[-1].usage is not None and chunks[-1].usage.prompt_tokens == len(PROMPT.split())


def test_async_not_streamed_with_reasoning(server: str) -> None:
    async def run() -> Any:
        async with async_sdk(server) as client:
            return await client.chat.completions.create(model="demo/think", messages=user("why"))

    message = asyncio.run(run()).choices[0].message
    assert message.content == _ANSWER
    assert message.reasoning_content == thoughts("why")


def test_async_stream_helper_tool_calls(server: str) -> None:
    async def run() -> Any:
        async with (
            async_sdk(server) as client,
            client.chat.completions.stream(
                model="demo/tools", messages=user("weather in Lima"), tools=[WEATHER_TOOL]
            ) as stream,
        ):
            async for _ in stream:
                pass
            return await stream.get_final_completion()

    (call,) = asyncio.run(run()).choices[0].message.tool_calls
    assert call.function.parsed_arguments == GetWeather(city="Lima", unit="celsius")


def test_async_mid_stream_failure(server: str) -> None:
    async def run() -> str:
        text = ""
        async with async_sdk(server) as client:
            stream = await client.chat.completions.create(
                model="demo/fail", messages=user("hi"), stream=True
            )
            async for chunk in stream:
                text += chunk.choices[0].delta.content or ""
        return text

    with pytest.raises(openai.APIError, match="the model stream failed"):
        asyncio.run(run())


def test_async_close_closes_the_upstream(server: str, kind: str) -> None:
    models = ("test/slow", "atest/slow") if kind in ASGI else ("test/slow",)

    async def run(model: str) -> list[str]:
        seen = []
        async with async_sdk(server) as client:
            stream = await client.chat.completions.create(
                model=model, messages=user("go"), stream=True
            )
            async for chunk in stream:
                if chunk.choices and chunk.choices[0].delta.content:
                    seen.append(chunk.choices[0].delta.content)
                if len(seen) == 3:
                    break
            await stream.close()
        return seen

    for count, model in enumerate(models, 1):
        assert asyncio.run(run(model)) == ["tok0 ", "tok1 ", "tok2 "]
        assert_closed_early(server, count)


# --- LangChain's ChatOpenAI --------------------------------------------------------


def chat_openai(server: str, model: str, **options: Any) -> ChatOpenAI:
    """A ChatOpenAI with its own HTTP client (closed after the test), not LangChain's shared one."""
    http_client = httpx.Client(timeout=30)
    _OPEN.append(http_client)
    return ChatOpenAI(
        model=model,
        base_url=f"{server}/v1",
        api_key=KEY,
        max_retries=0,
        http_client=http_client,
        **options,
    )


def gather(chunks: Iterator[Any]) -> AIMessageChunk:
    total: Any = None
    for chunk in chunks:
        total = chunk if total is None else total + chunk
    assert isinstance(total, AIMessageChunk)
    return total


def test_langchain_invoke_and_stream_with_usage(server: str) -> None:
    llm = chat_openai(server, "demo/echo", stream_usage=True)
    message = llm.invoke(PROMPT)
    assert message.content == PROMPT
    assert message.usage_metadata is not None
    assert message.usage_metadata["input_tokens"] == len(PROMPT.split())
    streamed = gather(llm.stream(PROMPT))
    assert streamed.content == PROMPT
    assert streamed.usage_metadata is not None
    assert streamed.usage_metadata["input_tokens"] == len(PROMPT.split())
    assert streamed.response_metadata["finish_reason"] == "stop"


def test_langchain_tool_calls(server: str) -> None:
    llm = chat_openai(server, "demo/tools").bind_tools([GetWeather])
    streamed = gather(llm.stream("weather in Oslo"))
    assert [(c["name"], c["args"], c["id"]) for c in streamed.tool_calls] == [
        ("get_weather", {"city": "Oslo", "unit": "celsius"}, "call_demo_1")
    ]
    assert streamed.response_metadata["finish_reason"] == "tool_calls"
    invoked = llm.invoke("weather in Rome")
    assert [c["args"] for c in invoked.tool_calls] == [{"city": "Rome", "unit": "celsius"}]  # type: ignore[attr-defined]


def test_langchain_reasoning_model(server: str) -> None:
    # ChatOpenAI reads only OpenAI's own fields and drops reasoning_content by
    # design; the answer must come through whole, with no reasoning mixed in.
    llm = chat_openai(server, "demo/think")
    assert llm.invoke("why").content == _ANSWER
    assert gather(llm.stream("why")).content == _ANSWER


def test_langchain_errors(server: str) -> None:
    with pytest.raises(openai.APIError, match="the model stream failed"):
        gather(chat_openai(server, "demo/fail").stream("hi"))
    with pytest.raises(openai.InternalServerError):
        chat_openai(server, "demo/fail").invoke("hi")


def test_langchain_stopping_closes_the_upstream(server: str) -> None:
    stream = chat_openai(server, "test/slow").stream("go")
    seen = [next(stream).content for _ in range(4)]
    stream.close()
    assert "".join(str(piece) for piece in seen).startswith("tok0 tok1 ")
    assert_closed_early(server)

    async def run() -> None:
        async with httpx.AsyncClient(timeout=30) as http:
            astream = chat_openai(server, "test/slow", http_async_client=http).astream("go")
            async for chunk in astream:
                if "tok2" in str(chunk.content):
                    break
            await astream.aclose()  # type: ignore[attr-defined]

    asyncio.run(run())
    assert_closed_early(server, 2)


# --- the openai npm package in Node -------------------------------------------------


@pytest.fixture(scope="module")
def node_results(served: tuple[str, str], npm_clients: Path) -> dict[str, Any]:
    node = shutil.which("node")
    assert node is not None, "node is not installed"
    url = served[1]
    httpx.post(f"{url}/_reset").raise_for_status()
    done = subprocess.run(
        [node, str(npm_clients / "openai-client.mjs"), url, KEY, PROMPT],
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout)  # type: ignore[no-any-return]


def test_node_models(node_results: dict[str, Any]) -> None:
    assert node_results["models"] == sorted(MODELS)


def test_node_stream_text_and_usage(node_results: dict[str, Any]) -> None:
    text = node_results["text"]
    assert text["text"] == PROMPT
    assert text["roles"] == ["assistant"]
    assert len(text["ids"]) == 1 and text["ids"][0].startswith("chatcmpl-")
    assert text["finish"] == "stop"
    assert text["usage"]["prompt_tokens"] == len(PROMPT.split())
    assert text["usage"]["total_tokens"] == sum(
        text["usage"][k] for k in ("prompt_tokens", "completion_tokens")
    )
    assert "thrown" not in text


def test_node_reasoning(node_results: dict[str, Any]) -> None:
    assert node_results["reasoning"]["reasoning"] == thoughts(PROMPT)
    assert node_results["reasoning"]["text"] == _ANSWER
    complete = node_results["complete"]
    assert complete["object"] == "chat.completion"
    assert complete["choice"]["message"]["content"] == _ANSWER
    assert complete["choice"]["message"]["reasoning_content"] == thoughts(PROMPT)
    assert complete["usage"]["prompt_tokens"] == len(PROMPT.split())


def test_node_stream_helper_tool_calls(node_results: dict[str, Any]) -> None:
    tools = node_results["tools"]
    arguments = '{"city": "Oslo", "unit": "celsius"}'
    assert tools["done"] == [{"name": "get_weather", "arguments": arguments}]
    choice = tools["choice"]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["content"] is None
    assert choice["message"]["tool_calls"] == [
        {
            "id": "call_demo_1",
            "type": "function",
            "function": {"name": "get_weather", "arguments": arguments},
        }
    ]
    assert tools["usage"]["total_tokens"] > 0


def test_node_errors(node_results: dict[str, Any]) -> None:
    error = node_results["error"]
    assert error["text"] == "This answer starts "
    assert error["thrown"]["isAPIError"] is True
    assert error["thrown"]["message"] == "the model stream failed (DemoProviderError)"
    assert error["thrown"]["error"]["code"] == "upstream_error"
    late = node_results["errorNotStreamed"]["thrown"]
    assert (late["name"], late["status"]) == ("InternalServerError", 502)
    bad_key = node_results["badKey"]["thrown"]
    assert (bad_key["name"], bad_key["status"]) == ("AuthenticationError", 401)
    bad = node_results["badRequest"]["thrown"]
    assert (bad["name"], bad["status"], bad["error"]["param"]) == ("BadRequestError", 400, "n")


def test_node_abort_closes_the_upstream(node_results: dict[str, Any]) -> None:
    abort = node_results["abort"]
    assert abort["breakText"].startswith("tok0 tok1 tok2 ")
    assert abort["signalText"].startswith("tok0 tok1 tok2 ")
    tracker = abort["tracker"]
    assert (tracker["started"], tracker["closed"], tracker["completed"]) == (2, 2, 0), tracker
    assert tracker["pulled"] < 800
