"""Real clients (indoxRouter, OpenAI sync and async) through every framework skin, served for real.

The upstreams are the local servers of ``fake_indoxrouter.py`` and ``fake_openai.py``;
the apps are FastAPI under uvicorn, Flask under Werkzeug, Django under gunicorn
(WSGI) and under uvicorn (ASGI).  Each app mounts every client under its own
prefix: ``/ir`` indoxRouter, ``/oa`` OpenAI, ``/aoa`` AsyncOpenAI (ASGI only),
and ``/<name>-full`` the same clients answering without streaming.
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import json
import re
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import indoxrouter
import openai
import pytest
from fake_indoxrouter import FakeIndoxRouter, Script
from fake_openai import FakeOpenAI
from httpx_sse import connect_sse
from servers import (
    collect,
    django_server,
    django_site,
    free_port,
    process_server,
    text_of,
    uvicorn_thread,
    werkzeug_thread,
)

from indox_integrations import ChatRequest
from indox_integrations.clients import LLMRequest
from indox_integrations.openai import OpenAIChat

HEARTBEAT = 0.3
OPTIONS: dict[str, Any] = {"usage": "attach", "heartbeat": HEARTBEAT}

ASGI = ("fastapi", "django-asgi")
WSGI = ("flask", "django-wsgi")
SYNC_CLIENTS = ("ir", "oa")
CASES = [(fw, c) for fw in ASGI + WSGI for c in SYNC_CLIENTS] + [(fw, "aoa") for fw in ASGI]

UPSTREAM_PATHS = {
    ("ir", "stream"): "/api/v1/completions",
    ("ir", "chat"): "/api/v1/chat/completions",
}

SLOW = Script(texts=tuple(f"tok{i} " for i in range(200)), delay=0.05)
"""Ten seconds of tokens: far longer than any test waits."""


def upstream_clients(indoxrouter_url: str, openai_url: str) -> dict[str, Any]:
    """Every client the apps serve, by URL prefix."""
    ir = indoxrouter.Client(api_key="test", base_url=indoxrouter_url, timeout=30)
    oa = openai.OpenAI(api_key="test", base_url=openai_url + "/v1", max_retries=0)
    aoa = openai.AsyncOpenAI(api_key="test", base_url=openai_url + "/v1", max_retries=0)

    def ir_full(request: LLMRequest) -> Any:
        if isinstance(request, ChatRequest):
            return ir.chat(request.messages, model=request.model, stream=False)
        return ir.completion(request.prompt, model=request.model, stream=False)

    return {
        "ir": ir,
        "oa": oa,
        "aoa": aoa,
        "ir-full": ir_full,
        "oa-full": OpenAIChat(oa, stream=False),
        "aoa-full": OpenAIChat(aoa, stream=False),
    }


def thread_names() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name != "fake-upstream"]


# -- the apps ---------------------------------------------------------------------------

DJANGO_SITE = '''\
"""Settings, URLs and both server entry points of the end-to-end Django site."""

import os
import threading
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
from test_clients_e2e import OPTIONS, upstream_clients  # noqa: E402


def state(request):
    names = [t.name for t in threading.enumerate()]
    return JsonResponse({"threads": names, "warnings": WARNINGS})


urlpatterns = [path("_state", state)]
clients = upstream_clients(os.environ["E2E_INDOXROUTER_URL"], os.environ["E2E_OPENAI_URL"])
for name, client in clients.items():
    urlpatterns += [
        path(f"{name}/stream", CompletionView.as_view(client=client, **OPTIONS)),
        path(f"{name}/chat", ChatView.as_view(client=client, **OPTIONS)),
    ]
'''


@pytest.fixture(scope="module")
def ir_server() -> Iterator[FakeIndoxRouter]:
    with FakeIndoxRouter() as server:
        yield server


@pytest.fixture(scope="module")
def oa_server() -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as server:
        yield server


@pytest.fixture(scope="module")
def clients(ir_server: FakeIndoxRouter, oa_server: FakeOpenAI) -> dict[str, Any]:
    return upstream_clients(ir_server.url, oa_server.url)


@pytest.fixture(scope="module")
def fastapi_url(clients: dict[str, Any]) -> Iterator[str]:
    from fastapi import FastAPI

    from indox_integrations.fastapi import create_router

    app = FastAPI()
    for name, client in clients.items():
        app.include_router(create_router(client, serve_static=False, **OPTIONS), prefix=f"/{name}")

    @app.get("/_state")
    def state() -> dict[str, Any]:
        return {"threads": thread_names(), "warnings": []}

    with uvicorn_thread(app) as url:
        yield url


@pytest.fixture(scope="module")
def flask_url(clients: dict[str, Any]) -> Iterator[str]:
    from flask import Flask

    from indox_integrations.flask import create_blueprint

    app = Flask(__name__, static_folder=None)
    for name, client in clients.items():
        blueprint = create_blueprint(client, name.replace("-", "_"), **OPTIONS)
        app.register_blueprint(blueprint, url_prefix=f"/{name}")
    with werkzeug_thread(app) as url:
        yield url


@pytest.fixture(scope="module")
def django_env(
    tmp_path_factory: pytest.TempPathFactory, ir_server: FakeIndoxRouter, oa_server: FakeOpenAI
) -> dict[str, str]:
    site = django_site(tmp_path_factory, "e2e_django_site", DJANGO_SITE)
    return {**site, "E2E_INDOXROUTER_URL": ir_server.url, "E2E_OPENAI_URL": oa_server.url}


@pytest.fixture(scope="module")
def django_wsgi_url(django_env: dict[str, str]) -> Iterator[str]:
    with django_server("wsgi", django_env) as url:
        yield url


@pytest.fixture(scope="module")
def django_asgi_url(django_env: dict[str, str]) -> Iterator[str]:
    with django_server("asgi", django_env) as url:
        yield url


def server_for(client: str, ir: FakeIndoxRouter, oa: FakeOpenAI) -> FakeIndoxRouter | FakeOpenAI:
    return ir if client.startswith("ir") else oa


def expected_usage(client: str, model: str) -> dict[str, Any]:
    usage: dict[str, Any] = {"prompt_tokens": 4, "completion_tokens": 3, "total_tokens": 7}
    if client.startswith("ir"):
        usage |= {"cost": 1.4e-05, "model": model, "provider": "openai"}
    else:
        usage["model"] = model
    return usage | {"finish_reason": "stop"}


def body_for(route: str, model: str) -> dict[str, Any]:
    if route == "chat":
        return {"messages": [{"role": "user", "content": "Say hello, dear world"}], "model": model}
    return {"prompt": "Tell me a tale", "model": model}


def no_warnings(framework: str, app_url: str) -> None:
    """Django warns (and buffers the stream) when handed the wrong kind of iterator."""
    if framework.startswith("django"):
        assert httpx.get(f"{app_url}/_state").json()["warnings"] == []


def leave_after(app_url: str, path: str, body: dict[str, Any], events: int = 3) -> float:
    """Read ``events`` text events, then hang up; the time of hanging up."""
    with httpx.Client(base_url=app_url, timeout=20) as http:
        with connect_sse(http, "POST", path, json=body) as source:
            assert source.response.status_code == 200
            seen = 0
            for event in source.iter_sse():
                seen += event.event == "message"
                if seen == events:
                    break
        return time.monotonic()


def leave_after_ping(app_url: str, path: str, body: dict[str, Any]) -> float:
    """Wait for the first heartbeat (nothing else comes), then hang up."""
    with httpx.Client(base_url=app_url, timeout=20) as http:
        with http.stream("POST", path, json=body) as response:
            assert response.status_code == 200
            received = b""
            for data in response.iter_raw():
                received += data
                if b": ping" in received:
                    break
            assert b"data:" not in received
        return time.monotonic()


# -- the tests ------------------------------------------------------------------------------


@pytest.mark.parametrize("route", ["stream", "chat"])
@pytest.mark.parametrize(("framework", "client"), CASES)
def test_text_arrives_with_usage(
    app_url: str,
    framework: str,
    client: str,
    route: str,
    ir_server: FakeIndoxRouter,
    oa_server: FakeOpenAI,
) -> None:
    model = f"{framework}-{client}-{route}-usage"
    response, events = collect(app_url, f"/{client}/{route}", body_for(route, model), headers={})
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/event-stream; charset=utf-8"
    assert [e.data for e in events if e.event == "message"] == ["Hello", ", world", "!"]
    usage = [json.loads(e.data) for e in events if e.event == "usage"]
    assert usage == [expected_usage(client, model)]
    assert (events[-1].event, events[-1].data) == ("done", "[DONE]")
    (record,) = server_for(client, ir_server, oa_server).wait_ended(model=model)
    assert record.outcome == "completed"
    assert record.path == UPSTREAM_PATHS.get((client, route), "/v1/chat/completions")
    no_warnings(framework, app_url)


@pytest.mark.parametrize(("framework", "client"), CASES)
def test_mid_stream_error_becomes_the_error_event(
    app_url: str,
    framework: str,
    client: str,
    ir_server: FakeIndoxRouter,
    oa_server: FakeOpenAI,
) -> None:
    model = f"{framework}-{client}-error"
    server_for(client, ir_server, oa_server).scripts[model] = Script(error_after=2)
    response, events = collect(app_url, f"/{client}/chat", body_for("chat", model), headers={})
    assert response.status_code == 200
    assert [(e.event, e.data) for e in events] == [
        ("message", "Hello"),
        ("message", ", world"),
        ("error", '{"type": "upstream_error", "message": "the model stream failed (APIError)"}'),
        ("done", "[DONE]"),
    ]


@pytest.mark.parametrize(("framework", "client"), CASES)
def test_leaving_closes_the_upstream_connection(
    app_url: str,
    framework: str,
    client: str,
    ir_server: FakeIndoxRouter,
    oa_server: FakeOpenAI,
) -> None:
    model = f"{framework}-{client}-leave"
    server = server_for(client, ir_server, oa_server)
    server.scripts[model] = SLOW
    left_at = leave_after(app_url, f"/{client}/stream", body_for("stream", model))
    (record,) = server.wait_ended(model=model, timeout=10)
    assert record.ended_early, record
    assert record.ended is not None
    assert record.ended - left_at < 1.0
    assert record.sent < len(SLOW.texts) / 4
    no_warnings(framework, app_url)


@pytest.mark.parametrize("framework", ASGI + WSGI)
def test_leaving_a_silent_indoxrouter_stream_closes_its_connection(
    app_url: str, framework: str, ir_server: FakeIndoxRouter
) -> None:
    # The upstream says nothing but sends an empty chunk every 0.2 s: that is
    # what lets the kit close indoxRouter's generator, which blocks in a read.
    # Under WSGI the server learns the client left from a failed heartbeat.
    model = f"{framework}-ir-silent"
    ir_server.scripts[model] = Script(first_delay=30, keepalive=0.2)
    left_at = leave_after_ping(app_url, "/ir/stream", body_for("stream", model))
    (record,) = ir_server.wait_ended(model=model, timeout=10)
    assert record.ended_early and record.sent == 0
    assert record.ended is not None
    bound = 1.0 if framework in ASGI else 3 * HEARTBEAT + 0.6
    assert record.ended - left_at < bound


@pytest.mark.parametrize("framework", ASGI)
def test_leaving_a_silent_async_openai_stream_closes_its_connection_at_once(
    app_url: str, framework: str, oa_server: FakeOpenAI
) -> None:
    model = f"{framework}-aoa-silent"
    oa_server.scripts[model] = Script(first_delay=30)
    left_at = leave_after_ping(app_url, "/aoa/chat", body_for("chat", model))
    (record,) = oa_server.wait_ended(model=model, timeout=10)
    assert record.ended_early and record.sent == 0
    assert record.ended is not None and record.ended - left_at < 1.0


@pytest.mark.parametrize(
    ("framework", "client"),
    [(fw, c) for fw in ASGI + WSGI for c in ("ir-full", "oa-full")]
    + [(fw, "aoa-full") for fw in ASGI],
)
def test_a_full_response_answers_as_one_text_event_plus_usage(
    app_url: str,
    framework: str,
    client: str,
    ir_server: FakeIndoxRouter,
    oa_server: FakeOpenAI,
) -> None:
    model = f"{framework}-{client}"
    for route in ("stream", "chat"):
        response, events = collect(
            app_url, f"/{client}/{route}", body_for(route, model), headers={}
        )
        assert response.status_code == 200
        assert [(e.event, e.data) for e in events] == [
            ("message", "Hello, world!"),
            ("finish", '{"reason": "stop"}'),
            ("usage", json.dumps(expected_usage(client, model))),
            ("done", "[DONE]"),
        ]
    server = server_for(client, ir_server, oa_server)
    assert [s for s in server.streams if s.model == model] == []


async def _hold_streams(app_url: str, path: str, body: dict[str, Any], count: int) -> list[str]:
    """Open ``count`` streams, read a token from each, and report the app's threads."""
    limits = httpx.Limits(max_connections=count + 2)
    async with (
        httpx.AsyncClient(base_url=app_url, timeout=20, limits=limits) as http,
        contextlib.AsyncExitStack() as stack,
    ):
        responses = await asyncio.gather(
            *(stack.enter_async_context(http.stream("POST", path, json=body)) for _ in range(count))
        )
        # Keep each line iterator: one collected early would close its stream.
        lines = [response.aiter_lines() for response in responses]
        for response, iterator in zip(responses, lines, strict=True):
            assert response.status_code == 200
            while not (await iterator.__anext__()).startswith("data: tok"):
                pass
        state = (await http.get("/_state")).json()
    return list(state["threads"])


def kit_threads(names: list[str]) -> list[str]:
    # Django's ASGI handler gives every request an executor thread of its own
    # (asgiref's ThreadSensitiveContext, started by Django's sync request_started
    # receivers), idle until the response ends: Django's cost, not the stream's.
    # The kit's reusable threads wait a while for the next job once theirs is
    # done (indox-idle), started by one thread per process (indox-spawner).
    own = ("indox-idle", "indox-spawner")
    return [n for n in names if not n.startswith("ThreadPoolExecutor-") and n not in own]


@pytest.mark.parametrize("framework", ASGI)
def test_the_async_client_needs_no_thread_per_stream(
    app_url: str, framework: str, oa_server: FakeOpenAI
) -> None:
    count = 20
    oa_server.scripts[f"{framework}-many"] = SLOW
    oa_server.scripts[f"{framework}-many-sync"] = SLOW
    idle = kit_threads(httpx.get(f"{app_url}/_state").json()["threads"])
    body = body_for("chat", f"{framework}-many")
    busy = kit_threads(asyncio.run(_hold_streams(app_url, "/aoa/chat", body, count)))
    assert busy.count("indox-upstream") == 0
    assert len(busy) - len(idle) < count / 2, (idle, busy)
    oa_server.wait_ended(count, model=f"{framework}-many")
    # The measure can tell: a sync client runs each stream in a thread of its own.
    body = body_for("chat", f"{framework}-many-sync")
    busy = kit_threads(asyncio.run(_hold_streams(app_url, "/oa/chat", body, count)))
    assert busy.count("indox-upstream") == count, busy
    oa_server.wait_ended(count, model=f"{framework}-many-sync")


@pytest.mark.parametrize("framework", WSGI)
def test_an_async_client_under_wsgi_is_a_clear_error(app_url: str, framework: str) -> None:
    response = httpx.post(f"{app_url}/aoa/chat", json=body_for("chat", "gpt-test"), timeout=20)
    assert response.status_code == 500
    assert "async client" in response.json()["error"]["message"]


@pytest.mark.parametrize("framework", ASGI + WSGI)
def test_an_unknown_model_before_streaming_is_a_json_404(
    app_url: str, framework: str, ir_server: FakeIndoxRouter
) -> None:
    model = f"{framework}-missing"
    ir_server.scripts[model] = Script(status=404, error_message=f"model {model} not found")
    response = httpx.post(f"{app_url}/ir/stream", json=body_for("stream", model), timeout=20)
    assert response.status_code == 404
    assert response.json()["error"]["message"].startswith("ModelNotFoundError: ")


def test_text_of_a_longer_answer_is_exact(fastapi_url: str, ir_server: FakeIndoxRouter) -> None:
    text = (
        "Unit Seven had been built to weld car doors,\nand for eleven years 🙂 it did nothing else."
    )
    ir_server.scripts["long"] = Script.words(text)
    _, events = collect(fastapi_url, "/ir/stream", body_for("stream", "long"), headers={})
    assert text_of(events) == text


# -- the example apps pick their upstream from the environment ---------------------------

EXAMPLES = {
    "fastapi": ["fastapi"],
    "flask": ["flask"],
    "django-asgi": ["django"],
    "django-wsgi": ["django", "--wsgi"],
}


@contextlib.contextmanager
def example_app(name: str, **env: str) -> Iterator[httpx.Client]:
    """``python -m example_apps ...`` with ``env`` (no other key), and a client for it."""
    port = free_port()
    keys = {"INDOX_ROUTER_API_KEY": "", "OPENAI_API_KEY": "", **env}
    argv = [sys.executable, "-m", "example_apps", *EXAMPLES[name], "--port", str(port)]
    with process_server(argv, port, keys) as url, httpx.Client(base_url=url, timeout=20) as http:
        yield http


def page_config(http: httpx.Client) -> tuple[str, dict[str, Any]]:
    """The page's upstream label and its config (upstream, models, problem)."""
    response = http.get("/")
    assert response.status_code == 200
    label = re.search(r'<strong id="upstream">([^<]*)</strong>', response.text)
    config = re.search(r'data-config="([^"]*)"', response.text)
    assert label and config, response.text[:500]
    return html.unescape(label.group(1)), json.loads(html.unescape(config.group(1)))


def csrf(http: httpx.Client) -> dict[str, str]:
    """Django's example checks CSRF: send back the cookie its page set."""
    token = http.cookies.get("csrftoken")
    return {"X-CSRFToken": token} if token else {}


def stream_events(http: httpx.Client, path: str, body: dict[str, Any]) -> list[tuple[str, str]]:
    with connect_sse(http, "POST", path, json=body, headers=csrf(http)) as source:
        assert source.response.status_code == 200, source.response.read()
        return [(event.event, event.data) for event in source.iter_sse()]


@pytest.mark.parametrize("upstream", ["indoxRouter", "OpenAI"])
@pytest.mark.parametrize("name", list(EXAMPLES))
def test_example_app_streams_from_the_upstream_in_the_environment(
    name: str, upstream: str, ir_server: FakeIndoxRouter, oa_server: FakeOpenAI
) -> None:
    model = f"example-{name}-{upstream}"
    if upstream == "indoxRouter":
        server: FakeIndoxRouter | FakeOpenAI = ir_server
        env = {
            "INDOX_ROUTER_API_KEY": "test",
            "INDOX_ROUTER_BASE_URL": ir_server.url,
            "INDOX_ROUTER_MODEL": model,
        }
    else:
        server = oa_server
        env = {"OPENAI_API_KEY": "test", "OPENAI_BASE_URL": oa_server.url + "/v1"}
        env["OPENAI_MODEL"] = model
    server.scripts[model] = Script.words("Streamed by the local test server.")
    with example_app(name, **env) as http:
        label, config = page_config(http)
        assert label == upstream
        assert config["models"] == [model] and config["problem"] is None
        events = stream_events(http, "/stream", {"prompt": "Tell me a tale"})
        assert "".join(data for event, data in events if event == "message") == (
            "Streamed by the local test server."
        )
        assert [event for event, _ in events][-2:] == ["usage", "done"]
        events = stream_events(http, "/chat", body_for("chat", model))
        assert json.loads(dict(events)["usage"])["completion_tokens"] == 6
    assert [s.outcome for s in server.streams if s.model == model] == ["completed"] * 2


@pytest.mark.parametrize("name", ["fastapi", "flask", "django-asgi"])
def test_example_app_with_a_wrong_indoxrouter_key_says_so(
    name: str, ir_server: FakeIndoxRouter
) -> None:
    env = {"INDOX_ROUTER_API_KEY": "wrong", "INDOX_ROUTER_BASE_URL": ir_server.url}
    with example_app(name, **env) as http:
        label, config = page_config(http)
        assert label == "indoxRouter"
        assert config["problem"] == (
            "indoxRouter is not available: AuthenticationError: "
            "Authentication failed: Incorrect username or password"
        )
        response = http.post("/stream", json={"prompt": "Hi"}, headers=csrf(http))
        assert response.status_code == 502
        assert response.headers["content-type"].startswith("application/json")
        assert response.json()["error"]["message"] == f"UpstreamUnavailable: {config['problem']}"


def test_example_app_with_a_wrong_openai_key_answers_with_the_error(oa_server: FakeOpenAI) -> None:
    # The SDK checks nothing when built: the first request learns of the key.
    env = {"OPENAI_API_KEY": "sk-wrong", "OPENAI_BASE_URL": oa_server.url + "/v1"}
    with example_app("fastapi", **env) as http:
        assert page_config(http)[0] == "OpenAI"
        response = http.post("/stream", json={"prompt": "Hi"})
        assert response.status_code == 502
        message = response.json()["error"]["message"]
        assert message.startswith("AuthenticationError: Error code: 401")
        assert "sk-wrong" not in message


def test_example_app_without_keys_runs_the_demo() -> None:
    with example_app("fastapi", INDOX_DEMO_DELAY="0") as http:
        label, config = page_config(http)
        assert label == "demo (offline)"
        assert config["problem"] is None
        events = stream_events(http, "/stream", {"prompt": "Hi", "model": "demo/echo"})
        assert "".join(data for event, data in events if event == "message") == "Hi"
