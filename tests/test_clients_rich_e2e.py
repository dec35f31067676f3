"""Rich answers from real clients through every framework skin, served for real.

The ``openai`` SDK (sync and async) streams reasoning, parallel tool calls,
refusals and finish reasons from ``fake_openai.py``'s server; LangChain streams
from langchain-core's fake chat models and from langchain-openai's ``ChatOpenAI``
pointed at the same server.  The apps are FastAPI under uvicorn, Flask under
Werkzeug, Django under gunicorn (WSGI) and under uvicorn (ASGI); each mounts
every client under its own prefix (see :func:`rich_clients`) and reports its
LangChain models' calls at ``GET /_lc``.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest
from fake_indoxrouter import Script
from fake_openai import FakeOpenAI
from httpx_sse import connect_sse
from langchain_core.language_models import FakeListChatModel
from langchain_openai import ChatOpenAI
from rich_streams import (
    LANGCHAIN_WIRE,
    PROMPT,
    TOOLS,
    ChunksChatModel,
    Recorder,
    chat_openai_wire,
    langchain_chunks,
    openai_scripts,
    openai_wire,
    wire,
)
from servers import (
    collect,
    django_server,
    django_site,
    text_of,
    uvicorn_thread,
    werkzeug_thread,
)

from indox_integrations import LangChainChat
from indox_integrations.openai import OpenAIChat

OPTIONS: dict[str, Any] = {"usage": "attach", "heartbeat": 0.3}

ASGI = ("fastapi", "django-asgi")
WSGI = ("flask", "django-wsgi")
FRAMEWORKS = ASGI + WSGI
OPENAI_CASES = [(fw, "oa") for fw in FRAMEWORKS] + [(fw, "aoa") for fw in ASGI]
TOOLS_CASES = [(fw, "oa-tools") for fw in FRAMEWORKS] + [(fw, "aoa-tools") for fw in ASGI]

TEXT = "Unit Seven had been built to weld car doors,\nand for eleven years 🙂 it did nothing else."
SLOW = Script(texts=tuple(f"tok{i} " for i in range(200)), delay=0.05)
"""Ten seconds of tokens: far longer than any test waits."""
SLOW_TEXT = "x" * 400
"""Twenty seconds of characters at ``FakeListChatModel(sleep=0.05)``."""

BROWSER_TOOLS = [{"type": "function", "function": {"name": "rm_rf", "parameters": {}}}]
"""Tools a browser tries to send: the routes ignore them."""


def rich_clients(openai_url: str, framework: str) -> tuple[dict[str, Any], Any]:
    """Every client an app serves, by URL prefix, and the function behind its ``/_lc``."""
    base = openai_url + "/v1"
    oa = openai.OpenAI(api_key="test", base_url=base, max_retries=0)
    aoa = openai.AsyncOpenAI(api_key="test", base_url=base, max_retries=0)
    chunks_model = ChunksChatModel(chunks=langchain_chunks())
    recorder = Recorder()

    def chat_openai(model: str) -> ChatOpenAI:
        return ChatOpenAI(model=model, api_key="test", base_url=base, max_retries=0)

    tools = {"tools": TOOLS, "tool_choice": "auto", "reasoning_effort": "low"}
    clients = {
        "oa": oa,
        "aoa": aoa,
        "oa-tools": OpenAIChat(oa, **tools),
        "aoa-tools": OpenAIChat(aoa, **tools),
        "lc-fake": LangChainChat(chunks_model),
        "lc-text": LangChainChat(FakeListChatModel(responses=[TEXT])),
        "lc-slow": LangChainChat(
            FakeListChatModel(responses=[SLOW_TEXT], sleep=0.05), config={"callbacks": [recorder]}
        ),
        "lc-oa": LangChainChat(chat_openai("lc-oa-rich"), tools=TOOLS),
        "lc-oa-slow": LangChainChat(chat_openai(f"lc-oa-slow-{framework}")),
    }

    def state() -> dict[str, Any]:
        return {"calls": [mode for mode, _ in chunks_model.calls], **recorder.state()}

    return clients, state


# -- the apps ---------------------------------------------------------------------------

DJANGO_SITE = '''\
"""Settings, URLs and both server entry points of the rich end-to-end Django site."""

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
from test_clients_rich_e2e import OPTIONS, rich_clients  # noqa: E402

clients, lc_state = rich_clients(os.environ["E2E_OPENAI_URL"], os.environ["E2E_FRAMEWORK"])


def state(request):
    return JsonResponse({**lc_state(), "warnings": WARNINGS})


urlpatterns = [path("_lc", state)]
for name, client in clients.items():
    urlpatterns += [
        path(f"{name}/stream", CompletionView.as_view(client=client, **OPTIONS)),
        path(f"{name}/chat", ChatView.as_view(client=client, **OPTIONS)),
    ]
'''


@pytest.fixture(scope="module")
def oa_server() -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as server:
        for name, (script, _) in openai_scripts().items():
            server.scripts[name] = script
        server.scripts["lc-oa-rich"] = openai_scripts()["parallel-tools"][0]
        for framework in FRAMEWORKS:
            server.scripts[f"lc-oa-slow-{framework}"] = SLOW
        yield server


@pytest.fixture(scope="module")
def fastapi_url(oa_server: FakeOpenAI) -> Iterator[str]:
    from fastapi import FastAPI

    from indox_integrations.fastapi import create_router

    clients, state = rich_clients(oa_server.url, "fastapi")
    app = FastAPI()
    for name, client in clients.items():
        app.include_router(create_router(client, serve_static=False, **OPTIONS), prefix=f"/{name}")

    @app.get("/_lc")
    def lc() -> dict[str, Any]:
        return {**state(), "warnings": []}

    with uvicorn_thread(app) as url:
        yield url


@pytest.fixture(scope="module")
def flask_url(oa_server: FakeOpenAI) -> Iterator[str]:
    from flask import Flask

    from indox_integrations.flask import create_blueprint

    clients, state = rich_clients(oa_server.url, "flask")
    app = Flask(__name__, static_folder=None)
    for name, client in clients.items():
        if not name.startswith("aoa"):
            blueprint = create_blueprint(client, name.replace("-", "_"), **OPTIONS)
            app.register_blueprint(blueprint, url_prefix=f"/{name}")
    app.add_url_rule("/_lc", "lc", lambda: {**state(), "warnings": []})
    with werkzeug_thread(app) as url:
        yield url


@pytest.fixture(scope="module")
def django_env(tmp_path_factory: pytest.TempPathFactory, oa_server: FakeOpenAI) -> dict[str, str]:
    site = django_site(tmp_path_factory, "e2e_django_rich_site", DJANGO_SITE)
    return {**site, "E2E_OPENAI_URL": oa_server.url}


@pytest.fixture(scope="module")
def django_wsgi_url(django_env: dict[str, str]) -> Iterator[str]:
    with django_server("wsgi", {**django_env, "E2E_FRAMEWORK": "django-wsgi"}) as url:
        yield url


@pytest.fixture(scope="module")
def django_asgi_url(django_env: dict[str, str]) -> Iterator[str]:
    with django_server("asgi", {**django_env, "E2E_FRAMEWORK": "django-asgi"}) as url:
        yield url


def chat_body(model: str | None = None, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"messages": [{"role": "user", "content": PROMPT}], **extra}
    if model is not None:
        body["model"] = model
    return body


def lc_state(app_url: str) -> dict[str, Any]:
    return httpx.get(f"{app_url}/_lc", timeout=10).json()  # type: ignore[no-any-return]


def stream_wire(app_url: str, path: str, body: dict[str, Any]) -> list[tuple[str, Any]]:
    response, events = collect(app_url, path, body, headers={})
    assert response.status_code == 200, response.read()
    assert response.headers["content-type"] == "text/event-stream; charset=utf-8"
    return wire(events)


def no_warnings(framework: str, app_url: str) -> None:
    """Django warns (and buffers the stream) when handed the wrong kind of iterator."""
    assert lc_state(app_url)["warnings"] == []


def leave_after(app_url: str, path: str, body: dict[str, Any], events: int = 3) -> None:
    """Read ``events`` text events, then hang up."""
    with (
        httpx.Client(base_url=app_url, timeout=20) as http,
        connect_sse(http, "POST", path, json=body) as source,
    ):
        assert source.response.status_code == 200
        seen = 0
        for event in source.iter_sse():
            seen += event.event == "message"
            if seen == events:
                break


# -- the OpenAI SDK --------------------------------------------------------------------------


@pytest.mark.parametrize("scenario", list(openai_scripts()))
@pytest.mark.parametrize(("framework", "client"), OPENAI_CASES)
def test_openai_rich_streams_reach_the_browser(
    app_url: str, framework: str, client: str, scenario: str
) -> None:
    events = stream_wire(app_url, f"/{client}/chat", chat_body(scenario))
    assert events == openai_wire(scenario, scenario)
    no_warnings(framework, app_url)


@pytest.mark.parametrize(("framework", "client"), TOOLS_CASES)
def test_openai_tools_are_the_servers_never_the_browsers(
    app_url: str, framework: str, client: str, oa_server: FakeOpenAI
) -> None:
    model = f"{framework}-{client}"
    oa_server.scripts[model] = openai_scripts()["parallel-tools"][0]
    body = chat_body(model, tools=BROWSER_TOOLS, tool_choice="required", reasoning_effort="high")
    assert stream_wire(app_url, f"/{client}/chat", body) == openai_wire("parallel-tools", model)
    (record,) = oa_server.wait_ended(model=model)
    assert record.body["tools"] == TOOLS
    assert (record.body["tool_choice"], record.body["reasoning_effort"]) == ("auto", "low")


# -- LangChain ---------------------------------------------------------------------------------


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_langchain_message_chunks_reach_the_browser(app_url: str, framework: str) -> None:
    assert stream_wire(app_url, "/lc-fake/chat", chat_body()) == LANGCHAIN_WIRE
    no_warnings(framework, app_url)


@pytest.mark.parametrize("framework", WSGI)
def test_wsgi_servers_iterate_the_models_stream(app_url: str, framework: str) -> None:
    stream_wire(app_url, "/lc-fake/stream", {"prompt": PROMPT})
    assert lc_state(app_url)["calls"][-1] == "stream"


@pytest.mark.parametrize(
    "framework",
    ["fastapi", "django-asgi"],
)
def test_asgi_servers_iterate_the_models_astream(app_url: str, framework: str) -> None:
    stream_wire(app_url, "/lc-fake/stream", {"prompt": PROMPT})
    assert lc_state(app_url)["calls"][-1] == "astream"


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_langchain_text_is_exact(app_url: str, framework: str) -> None:
    _, events = collect(app_url, "/lc-text/stream", {"prompt": "Tell me a tale"}, headers={})
    assert text_of(events) == TEXT
    assert [(e.event, e.data) for e in events][-2:] == [
        ("finish", '{"reason": "stop"}'),
        ("done", "[DONE]"),
    ]


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_chat_openai_tool_calls_finish_and_usage(
    app_url: str, framework: str, oa_server: FakeOpenAI
) -> None:
    body = chat_body("ignored", tools=BROWSER_TOOLS)
    assert stream_wire(app_url, "/lc-oa/chat", body) == chat_openai_wire("lc-oa-rich")
    request = [r for r in oa_server.requests if r.body.get("model") == "lc-oa-rich"][-1]
    assert request.body["tools"] == TOOLS
    assert request.body["messages"] == [{"role": "user", "content": PROMPT}]
    no_warnings(framework, app_url)


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_leaving_closes_chat_openais_connection(
    app_url: str, framework: str, oa_server: FakeOpenAI
) -> None:
    model = f"lc-oa-slow-{framework}"
    leave_after(app_url, "/lc-oa-slow/stream", {"prompt": PROMPT})
    (record,) = oa_server.wait_ended(model=model, timeout=10)
    assert record.ended_early, record
    assert record.sent < len(SLOW.texts) / 4
    no_warnings(framework, app_url)


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_leaving_stops_the_models_run(app_url: str, framework: str) -> None:
    leave_after(app_url, "/lc-slow/stream", {"prompt": PROMPT})
    deadline = time.monotonic() + 10
    while not (state := lc_state(app_url))["ends"] and time.monotonic() < deadline:
        time.sleep(0.05)
    # Not "end": LangChain saw its run stopped (GeneratorExit, or CancelledError for a task).
    assert state["ends"] in (["GeneratorExit"], ["CancelledError"]), state
    assert state["tokens"] < len(SLOW_TEXT) / 4
