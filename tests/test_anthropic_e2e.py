"""The real ``anthropic`` SDK through every framework skin, served for real.

The upstream is ``fake_anthropic.py``'s Messages API.  The apps are FastAPI under
uvicorn, Flask under Werkzeug, Django under gunicorn (WSGI) and under uvicorn
(ASGI); each mounts ``AnthropicChat`` around ``anthropic.Anthropic`` at ``/an``
and, under ASGI, around ``anthropic.AsyncAnthropic`` at ``/aan``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import anthropic
import httpx
import pytest
from fake_anthropic import FakeAnthropic, Reply, text, thinking, tool_use
from httpx_sse import connect_sse
from servers import (
    collect,
    django_server,
    django_site,
    uvicorn_thread,
    werkzeug_thread,
)

from indox_integrations.anthropic import AnthropicChat

HEARTBEAT = 0.3
OPTIONS: dict[str, Any] = {"usage": "attach", "heartbeat": HEARTBEAT}

ASGI = ("fastapi", "django-asgi")
WSGI = ("flask", "django-wsgi")
CASES = [(fw, "an") for fw in ASGI + WSGI] + [(fw, "aan") for fw in ASGI]

WEATHER_TOOL = {
    "name": "get_weather",
    "description": "The weather in a city.",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
}
THINKING = {"type": "enabled", "budget_tokens": 1024}

SLOW = Reply(texts=tuple(f"tok{i} " for i in range(200)), delay=0.05)
"""Ten seconds of tokens: far longer than any test waits."""


def upstream_clients(url: str) -> dict[str, AnthropicChat]:
    """The adapters the apps serve, by URL prefix: tools and thinking set on the server."""
    sync = anthropic.Anthropic(api_key="test", base_url=url, max_retries=0)
    aio = anthropic.AsyncAnthropic(api_key="test", base_url=url, max_retries=0)
    options: dict[str, Any] = {"max_tokens": 2048, "tools": [WEATHER_TOOL], "thinking": THINKING}
    return {"an": AnthropicChat(sync, **options), "aan": AnthropicChat(aio, **options)}


DJANGO_SITE = '''\
"""Settings, URLs and both server entry points of the Anthropic end-to-end Django site."""

import os
import warnings

SECRET_KEY = "e2e"
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1"]
ROOT_URLCONF = __name__
INSTALLED_APPS = ["indox_integrations.django"]
MIDDLEWARE = []
DATABASES = {}
USE_TZ = True
LOGGING_CONFIG = None

WARNINGS = []
warnings.simplefilter("always")
warnings.showwarning = lambda message, category, *args, **kwargs: WARNINGS.append(
    f"{category.__name__}: {message}"
)

from django.core.asgi import get_asgi_application  # noqa: E402
from django.core.wsgi import get_wsgi_application  # noqa: E402
from django.http import JsonResponse  # noqa: E402
from django.urls import path  # noqa: E402

application = get_wsgi_application()
asgi_application = get_asgi_application()

from indox_integrations.django.views import ChatView, CompletionView  # noqa: E402
from test_anthropic_e2e import OPTIONS, upstream_clients  # noqa: E402


def state(request):
    return JsonResponse({"warnings": WARNINGS})


urlpatterns = [path("_state", state)]
for name, client in upstream_clients(os.environ["E2E_ANTHROPIC_URL"]).items():
    urlpatterns += [
        path(f"{name}/stream", CompletionView.as_view(client=client, **OPTIONS)),
        path(f"{name}/chat", ChatView.as_view(client=client, **OPTIONS)),
    ]
'''


@pytest.fixture(scope="module")
def upstream() -> Iterator[FakeAnthropic]:
    with FakeAnthropic() as server:
        yield server


@pytest.fixture(scope="module")
def fastapi_url(upstream: FakeAnthropic) -> Iterator[str]:
    from fastapi import FastAPI

    from indox_integrations.fastapi import create_router

    app = FastAPI()
    for name, client in upstream_clients(upstream.url).items():
        app.include_router(create_router(client, serve_static=False, **OPTIONS), prefix=f"/{name}")
    with uvicorn_thread(app) as url:
        yield url


@pytest.fixture(scope="module")
def flask_url(upstream: FakeAnthropic) -> Iterator[str]:
    from flask import Flask

    from indox_integrations.flask import create_blueprint

    app = Flask(__name__, static_folder=None)
    client = upstream_clients(upstream.url)["an"]
    app.register_blueprint(create_blueprint(client, "an", **OPTIONS), url_prefix="/an")
    with werkzeug_thread(app) as url:
        yield url


@pytest.fixture(scope="module")
def django_env(tmp_path_factory: pytest.TempPathFactory, upstream: FakeAnthropic) -> dict[str, str]:
    site = django_site(tmp_path_factory, "e2e_anthropic_site", DJANGO_SITE)
    return {**site, "E2E_ANTHROPIC_URL": upstream.url}


@pytest.fixture(scope="module")
def django_wsgi_url(django_env: dict[str, str]) -> Iterator[str]:
    with django_server("wsgi", django_env) as url:
        yield url


@pytest.fixture(scope="module")
def django_asgi_url(django_env: dict[str, str]) -> Iterator[str]:
    with django_server("asgi", django_env) as url:
        yield url


def chat_body(model: str) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": "Say hello, dear world"}], "model": model}


def events(app_url: str, client: str, body: dict[str, Any]) -> list[tuple[str, str]]:
    response, received = collect(app_url, f"/{client}/chat", body)
    assert response.status_code == 200, response.read()
    assert response.headers["content-type"] == "text/event-stream; charset=utf-8"
    return [(e.event, e.data) for e in received]


def no_warnings(framework: str, app_url: str) -> None:
    """Django warns (and buffers the stream) when handed the wrong kind of iterator."""
    if framework.startswith("django"):
        assert httpx.get(f"{app_url}/_state").json()["warnings"] == []


@pytest.mark.parametrize(("framework", "client"), CASES)
def test_thinking_arrives_as_reasoning_then_the_text_with_usage(
    app_url: str, framework: str, client: str, upstream: FakeAnthropic
) -> None:
    model = f"{framework}-{client}-think"
    upstream.scripts[model] = Reply(
        blocks=(thinking("The user ", "greets me.\n", "Answer warmly."), text("Hello", ", world!")),
        input_tokens=25,
    )
    received = events(app_url, client, chat_body(model))
    assert received == [
        ("reasoning", "The user "),
        ("reasoning", "greets me.\n"),
        ("reasoning", "Answer warmly."),
        ("message", "Hello"),
        ("message", ", world!"),
        ("finish", '{"reason": "stop"}'),
        ("usage", received[-2][1]),
        ("done", "[DONE]"),
    ]
    # input_tokens from message_start; output_tokens from message_delta, cumulative (5
    # deltas), not added to message_start's output_tokens of 1.
    assert json.loads(received[-2][1]) == {
        "prompt_tokens": 25,
        "completion_tokens": 5,
        "total_tokens": 30,
        "model": model,
        "finish_reason": "stop",
    }
    (record,) = upstream.wait_ended(model=model)
    assert record.outcome == "completed"
    assert record.body["thinking"] == THINKING
    no_warnings(framework, app_url)


@pytest.mark.parametrize(("framework", "client"), CASES)
def test_a_tool_call_arrives_as_deltas_then_with_parsed_arguments(
    app_url: str, framework: str, client: str, upstream: FakeAnthropic
) -> None:
    model = f"{framework}-{client}-tools"
    upstream.scripts[model] = Reply(
        blocks=(
            text("Checking."),
            tool_use("get_weather", '{"city"', ': "Paris", ', '"unit": "C"}', id="toolu_9"),
        ),
        stop_reason="tool_use",
    )
    # Tools come from the server's adapter; a browser cannot add its own.
    sneaky = [{"name": "run_shell", "input_schema": {"type": "object"}}]
    received = events(app_url, client, {**chat_body(model), "tools": sneaky})
    deltas = [json.loads(data) for name, data in received if name == "tool_call_delta"]
    assert deltas == [
        {"index": 0, "id": "toolu_9", "name": "get_weather", "arguments": ""},
        {"index": 0, "id": None, "name": None, "arguments": ""},
        {"index": 0, "id": None, "name": None, "arguments": '{"city"'},
        {"index": 0, "id": None, "name": None, "arguments": ': "Paris", '},
        {"index": 0, "id": None, "name": None, "arguments": '"unit": "C"}'},
    ]
    names = [name for name, _ in received]
    assert names == ["message"] + ["tool_call_delta"] * 5 + ["tool_call", "finish", "usage", "done"]
    assert json.loads(received[6][1]) == {
        "index": 0,
        "id": "toolu_9",
        "name": "get_weather",
        "arguments": {"city": "Paris", "unit": "C"},
    }
    assert json.loads(received[7][1]) == {"reason": "tool_calls"}
    (record,) = upstream.wait_ended(model=model)
    assert record.body["tools"] == [WEATHER_TOOL]
    no_warnings(framework, app_url)


@pytest.mark.parametrize(("framework", "client"), CASES)
def test_stop_reasons_become_finish_reasons(
    app_url: str, framework: str, client: str, upstream: FakeAnthropic
) -> None:
    expected = {
        "end_turn": "stop",
        "max_tokens": "length",
        "tool_use": "tool_calls",
        "refusal": "content_filter",
    }
    for stop_reason, reason in expected.items():
        model = f"{framework}-{client}-{stop_reason}"
        upstream.scripts[model] = Reply(stop_reason=stop_reason)
        received = events(app_url, client, chat_body(model))
        assert "".join(data for name, data in received if name == "message") == "Hello, world!"
        assert [name for name, _ in received][-3:] == ["finish", "usage", "done"]
        assert json.loads(received[-3][1]) == {"reason": reason}, stop_reason
        assert json.loads(received[-2][1])["finish_reason"] == reason


@pytest.mark.parametrize(("framework", "client"), CASES)
def test_a_mid_stream_error_event_becomes_the_error_event(
    app_url: str, framework: str, client: str, upstream: FakeAnthropic
) -> None:
    model = f"{framework}-{client}-error"
    upstream.scripts[model] = Reply(error_after=2)
    assert events(app_url, client, chat_body(model)) == [
        ("message", "Hello"),
        ("message", ", world"),
        (
            "error",
            '{"type": "upstream_error", "message": "the model stream failed (APIStatusError)"}',
        ),
        ("done", "[DONE]"),
    ]
    (record,) = upstream.wait_ended(model=model)
    assert record.outcome == "completed"  # the upstream sent its error event and ended


@pytest.mark.parametrize(("framework", "client"), CASES)
def test_leaving_closes_the_upstream_connection(
    app_url: str, framework: str, client: str, upstream: FakeAnthropic
) -> None:
    model = f"{framework}-{client}-leave"
    upstream.scripts[model] = SLOW
    with httpx.Client(base_url=app_url, timeout=20) as http:
        with connect_sse(http, "POST", f"/{client}/chat", json=chat_body(model)) as source:
            assert source.response.status_code == 200
            seen = 0
            for event in source.iter_sse():
                seen += event.event == "message"
                if seen == 3:
                    break
        left_at = time.monotonic()
    (record,) = upstream.wait_ended(model=model, timeout=10)
    assert record.ended_early, record
    assert record.ended is not None and record.ended - left_at < 1.0
    assert record.sent < len(SLOW.texts) / 4
    no_warnings(framework, app_url)


@pytest.mark.parametrize(("framework", "client"), CASES)
def test_leaving_a_silent_stream_closes_the_upstream_connection(
    app_url: str, framework: str, client: str, upstream: FakeAnthropic
) -> None:
    # Anthropic pings every 0.2 s while silent; the SDK swallows pings, so the kit
    # closes the SDK's stream itself. Under WSGI a failed heartbeat tells it the client left.
    model = f"{framework}-{client}-silent"
    upstream.scripts[model] = Reply(first_delay=30, keepalive=0.2)
    with httpx.Client(base_url=app_url, timeout=20) as http:
        with http.stream("POST", f"/{client}/chat", json=chat_body(model)) as response:
            assert response.status_code == 200
            received = b""
            for data in response.iter_raw():
                received += data
                if b": ping" in received:
                    break
            assert b"data:" not in received
        left_at = time.monotonic()
    (record,) = upstream.wait_ended(model=model, timeout=10)
    assert record.ended_early and record.sent == 0
    assert record.ended is not None
    bound = 1.0 if framework in ASGI else 3 * HEARTBEAT + 0.6
    assert record.ended - left_at < bound


@pytest.mark.parametrize("framework", ASGI + WSGI)
def test_the_completion_route_sends_the_prompt_as_a_user_message(
    app_url: str, framework: str, upstream: FakeAnthropic
) -> None:
    model = f"{framework}-prompt"
    response, received = collect(
        app_url, "/an/stream", {"prompt": "Tell me a tale", "model": model}
    )
    assert response.status_code == 200
    assert "".join(e.data for e in received if e.event == "message") == "Hello, world!"
    (record,) = upstream.wait_ended(model=model)
    assert record.body["messages"] == [{"role": "user", "content": "Tell me a tale"}]
    assert "system" not in record.body


@pytest.mark.parametrize("framework", ASGI + WSGI)
def test_an_upstream_refusal_before_streaming_keeps_its_status(
    app_url: str, framework: str, upstream: FakeAnthropic
) -> None:
    model = f"{framework}-missing"
    upstream.scripts[model] = Reply(status=404, error_message=f"model: {model}")
    response = httpx.post(f"{app_url}/an/chat", json=chat_body(model), timeout=20)
    assert response.status_code == 404
    # The SDK's own words, whichever version: "Error code: 404 - ..." or "404 model: ...".
    message = response.json()["error"]["message"]
    assert message.startswith("NotFoundError: ") and "404" in message, message
    assert f"model: {model}" in message, message
