"""The real ``ai`` npm package against every framework's ``protocol="ai-sdk"`` routes.

``tests/node/ai-sdk-chat.mjs`` makes one chat turn the way ``useChat`` does:
``DefaultChatTransport`` POSTs the UI messages, ``readUIMessageStream`` builds the
answer.  It runs twice: ``ai5`` is ``ai@5.0.0``, whose strict schemas reject any
field they do not know, and ``ai-latest`` the newest release (both pinned in
``tests/node/package.json``).  The apps mount the routes at ``/api`` (so the
transport's default ``/api/chat``): FastAPI under uvicorn, Flask under Werkzeug,
Django under gunicorn (WSGI) and uvicorn (ASGI), with CSRF on; ``GET /_tracker``
reports the upstreams and client calls.
"""

from __future__ import annotations

import json
import subprocess
import threading
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from servers import (
    NODE,
    django_server,
    django_site,
    uvicorn_thread,
    wait_closed,
    werkzeug_thread,
)
from upstreams import Tracker, async_upstream, sync_upstream

from indox_integrations import DemoClient, Limits, call_client
from indox_integrations.clients import LLMRequest

SCRIPT = NODE / "ai-sdk-chat.mjs"
PACKAGES = {
    alias: spec.rpartition("@")[2]
    for alias, spec in json.loads((NODE / "package.json").read_text())["dependencies"].items()
    if spec.startswith("npm:ai@")
}
"""``{"ai5": "5.0.0", "ai-latest": ...}``: the exact versions each run must report."""

pytestmark = pytest.mark.usefixtures("npm_clients")

ASGI = ("fastapi", "django-asgi")
WSGI = ("flask", "django-wsgi")
FRAMEWORKS = ASGI + WSGI

TEXTS = [
    "Hello",
    ", wörld 🙂👩‍👩‍👧",
    "\nline two\r\nline three\r",
    "data: [DONE]",
    "",
    ' "quoted" \\ back\\slash ',
    "漢字\u2028\x00end",
]
"""Chunks whose text must arrive exactly: JSON carries even CR and NUL."""

SLOW_CHUNKS = 400
"""Twenty seconds of tokens: far longer than any test waits."""

MODELS = ("text", "slow", "slow-async", "refuse", *DemoClient.models)
OPTIONS: dict[str, Any] = {"usage": "attach", "heartbeat": 0.3}

TRACKER = Tracker()
_lock = threading.Lock()
_calls: list[str] = []
_demo = DemoClient(delay=0.0)


class RateLimitError(Exception):
    pass


def client(request: LLMRequest) -> Any:
    """A plain callable client: the model picks the upstream."""
    model = request.model or "demo/echo"
    with _lock:
        _calls.append(model)
    if model == "text":
        return sync_upstream(TRACKER, chunks=TEXTS, delay=0.0)
    if model == "slow":
        return sync_upstream(TRACKER, chunks=SLOW_CHUNKS, delay=0.05)
    if model == "slow-async":
        return async_upstream(TRACKER, chunks=SLOW_CHUNKS, delay=0.05)
    if model == "refuse":
        raise RateLimitError("slow down")
    return call_client(_demo, request)


def tracker_state() -> dict[str, Any]:
    with _lock:
        return {**TRACKER.snapshot(), "calls": list(_calls)}


def reset() -> None:
    TRACKER.reset()
    with _lock:
        _calls.clear()


STRICT_CHUNKS = [
    {"type": "start", "messageId": "m-1"},
    {"type": "start-step"},
    {"type": "finish-step"},
    {"type": "finish", "finishReason": "stop"},
]
"""A stream with a field ai@5.0.0 does not know (``finishReason`` came in ai 6)."""


# -- the apps ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def fastapi_url() -> Iterator[str]:
    from fastapi import FastAPI
    from fastapi.responses import StreamingResponse

    from indox_integrations.fastapi import create_router
    from indox_integrations.protocols.ai_sdk import AISDKProtocol

    app = FastAPI()
    limits = Limits(models=MODELS)
    app.include_router(
        create_router(client, protocol="ai-sdk", limits=limits, **OPTIONS), prefix="/api"
    )
    app.add_api_route("/_tracker", tracker_state)

    @app.post("/strict/chat")
    def strict() -> StreamingResponse:
        lines = [f"data: {json.dumps(chunk)}\n\n" for chunk in STRICT_CHUNKS] + ["data: [DONE]\n\n"]
        return StreamingResponse(iter(lines), headers=dict(AISDKProtocol.headers))

    with uvicorn_thread(app) as url:
        yield url


@pytest.fixture(scope="module")
def flask_url() -> Iterator[str]:
    from flask import Flask

    from indox_integrations.flask import create_blueprint

    app = Flask(__name__, static_folder=None)
    blueprint = create_blueprint(
        client, "aisdk", protocol="ai-sdk", limits=Limits(models=MODELS), **OPTIONS
    )
    app.register_blueprint(blueprint, url_prefix="/api")
    app.add_url_rule("/_tracker", "tracker", tracker_state)
    with werkzeug_thread(app) as url:
        yield url


DJANGO_SITE = '''\
"""Settings, URLs and both server entry points of the AI SDK end-to-end Django site."""

SECRET_KEY = "e2e-ai-sdk"
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1"]
ROOT_URLCONF = __name__
INSTALLED_APPS = ["indox_integrations.django"]
MIDDLEWARE = [
    "django.middleware.gzip.GZipMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
]
DATABASES = {}
USE_TZ = True
LOGGING_CONFIG = None

from django.core.asgi import get_asgi_application  # noqa: E402
from django.core.wsgi import get_wsgi_application  # noqa: E402

application = get_wsgi_application()
asgi_application = get_asgi_application()

from django.http import JsonResponse  # noqa: E402
from django.middleware.csrf import get_token  # noqa: E402
from django.urls import include, path  # noqa: E402
from django.views.decorators.csrf import csrf_exempt  # noqa: E402

from indox_integrations.django.urls import patterns  # noqa: E402
from test_protocol_ai_sdk_e2e import MODELS, OPTIONS, client, reset, tracker_state  # noqa: E402


def csrf(request):
    return JsonResponse({"token": get_token(request)})


@csrf_exempt
def tracker(request):
    if request.method == "POST":
        reset()
    return JsonResponse(tracker_state())


ai_sdk = patterns(protocol="ai-sdk", client=client, models=MODELS, **OPTIONS)
urlpatterns = [
    path("api/", include((ai_sdk, "aisdk"))),
    path("csrf", csrf),
    path("_tracker", tracker),
]
'''


@pytest.fixture(scope="module")
def django_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    return django_site(tmp_path_factory, "e2e_django_ai_sdk_site", DJANGO_SITE)


@pytest.fixture(scope="module")
def django_wsgi_url(django_env: dict[str, str]) -> Iterator[str]:
    with django_server("wsgi", django_env) as url:
        yield url


@pytest.fixture(scope="module")
def django_asgi_url(django_env: dict[str, str]) -> Iterator[str]:
    with django_server("asgi", django_env) as url:
        yield url


class App:
    """A served app: its URL, the headers its POSTs need, its upstreams' tracker."""

    def __init__(self, framework: str, url: str) -> None:
        self.framework = framework
        self.url = url
        self.headers: dict[str, str] = {}
        if framework.startswith("django"):
            self.headers = csrf_headers(url)
            httpx.post(f"{url}/_tracker", timeout=10).raise_for_status()
        else:
            reset()

    def tracker(self) -> dict[str, Any]:
        return httpx.get(f"{self.url}/_tracker", timeout=10).json()  # type: ignore[no-any-return]


def csrf_headers(url: str) -> dict[str, str]:
    """What a Django page's script sends: the token, and the cookie the browser would."""
    response = httpx.get(f"{url}/csrf", timeout=10)
    response.raise_for_status()
    cookie = response.cookies["csrftoken"]
    return {"X-CSRFToken": response.json()["token"], "Cookie": f"csrftoken={cookie}"}


@pytest.fixture
def app(request: pytest.FixtureRequest) -> App:
    """The app of the test's ``framework`` parameter, its tracker reset."""
    framework = request.node.callspec.params["framework"]
    url = request.getfixturevalue(f"{framework.replace('-', '_')}_url")
    return App(framework, str(url))


# -- the client ------------------------------------------------------------------------------


def user(text: str, id: str = "u1") -> dict[str, Any]:
    return {"id": id, "role": "user", "parts": [{"type": "text", "text": text}]}


def chat(
    package: str,
    app: App,
    *,
    model: str | None = None,
    messages: list[dict[str, Any]] | None = None,
    headers: dict[str, str] | None = None,
    abort_after: int | None = None,
    path: str = "/api/chat",
) -> dict[str, Any]:
    """One chat turn by the ``ai`` package ``package``: what it parsed, built and raised."""
    request = {
        "api": app.url + path,
        "messages": messages or [user("weather in Oslo")],
        "headers": app.headers if headers is None else headers,
        "body": {} if model is None else {"model": model},
        "abortAfterDeltas": abort_after,
    }
    done = subprocess.run(
        ["node", str(SCRIPT), package, json.dumps(request)],
        cwd=NODE,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout)
    assert result["version"] == PACKAGES[package]
    return result


def kinds(result: dict[str, Any]) -> list[str]:
    """The chunk types, each run of deltas folded into one."""
    out: list[str] = []
    for chunk in result["chunks"]:
        kind = chunk["type"]
        if not (kind.endswith("-delta") and out and out[-1] == kind):
            out.append(kind)
    return out


def parts(result: dict[str, Any]) -> list[dict[str, Any]]:
    """The answer's parts, without the ids and metadata that differ between versions."""
    message = result["message"]
    assert message is not None, result
    assert message["id"] == result["chunks"][0]["messageId"]
    assert message["role"] == "assistant"
    keep = ("type", "text", "state", "toolCallId", "input")
    return [{k: part[k] for k in keep if k in part} for part in message["parts"]]


def clean(result: dict[str, Any]) -> None:
    """Nothing went wrong: no schema error, no in-band error, nothing thrown."""
    assert (result["errors"], result["thrown"], result.get("logError")) == ([], None, None)


# -- the tests -------------------------------------------------------------------------------

both = pytest.mark.parametrize("package", list(PACKAGES))
every = pytest.mark.parametrize("framework", FRAMEWORKS)


def test_both_majors_are_pinned() -> None:
    assert PACKAGES["ai5"] == "5.0.0"
    assert int(PACKAGES["ai-latest"].split(".")[0]) > 5


@both
@every
def test_text_arrives_exactly(app: App, framework: str, package: str) -> None:
    result = chat(package, app, model="text")
    clean(result)
    assert kinds(result) == [
        "start", "start-step", "text-start", "text-delta", "text-end", "finish-step", "finish",
    ]  # fmt: skip
    assert parts(result) == [
        {"type": "step-start"},
        {"type": "text", "text": "".join(TEXTS), "state": "done"},
    ]
    state = app.tracker()
    assert (state["calls"], state["completed"]) == (["text"], 1)


@both
@every
def test_reasoning_then_text(app: App, framework: str, package: str) -> None:
    result = chat(package, app, model="demo/think")
    clean(result)
    step, reasoning, text = parts(result)
    assert step == {"type": "step-start"}
    assert reasoning["type"] == "reasoning" and reasoning["state"] == "done"
    assert reasoning["text"].startswith("The user asked: weather in Oslo\n")
    assert text == {
        "type": "text",
        "text": "Here is my answer, after thinking it over: keep it short, and keep it kind.",
        "state": "done",
    }


@both
@every
def test_tool_call_part(app: App, framework: str, package: str) -> None:
    result = chat(package, app, model="demo/tools")
    clean(result)
    assert parts(result) == [
        {"type": "step-start"},
        {
            "type": "tool-get_weather",
            "toolCallId": "call_demo_1",
            "state": "input-available",
            "input": {"city": "Oslo", "unit": "celsius"},
        },
    ]
    deltas = [c["inputTextDelta"] for c in result["chunks"] if c["type"] == "tool-input-delta"]
    assert len(deltas) > 1
    assert json.loads("".join(deltas)) == {"city": "Oslo", "unit": "celsius"}


@both
@every
def test_mid_stream_failure_is_an_error_chunk(app: App, framework: str, package: str) -> None:
    result = chat(package, app, model="demo/fail")
    assert result["thrown"] is None
    assert result["errors"] == ["Error: the model stream failed (DemoProviderError)"]
    assert kinds(result)[-2:] == ["text-end", "error"]
    assert parts(result) == [
        {"type": "step-start"},
        {"type": "text", "text": "This answer starts ", "state": "done"},
    ]


@both
@pytest.mark.parametrize(
    ("framework", "model"),
    [(framework, "slow") for framework in FRAMEWORKS]
    + [(framework, "slow-async") for framework in ASGI],
)
def test_stop_mid_stream_closes_the_upstream(
    app: App, framework: str, model: str, package: str
) -> None:
    result = chat(package, app, model=model, abort_after=3)
    assert [c["delta"] for c in result["chunks"] if c["type"] == "text-delta"][:3] == [
        "tok0 ",
        "tok1 ",
        "tok2 ",
    ]
    assert any("AbortError" in error for error in result["errors"]), result
    assert "finish" not in kinds(result)
    state = wait_closed(app.url)
    assert (state["started"], state["closed"], state["completed"]) == (1, 1, 0), state
    assert state["pulled"] < SLOW_CHUNKS / 4


@both
@every
def test_usage_and_finish_reason_as_message_metadata(
    app: App, framework: str, package: str
) -> None:
    result = chat(package, app, model="demo/tools")
    clean(result)
    metadata = result["message"].get("metadata")
    assert metadata is not None, result["chunks"][-1]
    assert metadata["finishReason"] == "tool-calls"
    assert metadata["usage"]["total_tokens"] > 0


@both
@every
def test_bad_bodies_are_4xx_and_never_reach_the_client(
    app: App, framework: str, package: str
) -> None:
    bad_part = [{"id": "u1", "role": "user", "parts": [{"type": "text", "text": 5}]}]
    result = chat(package, app, messages=bad_part)
    assert result["thrown"] is not None and result["chunks"] == []
    error = json.loads(result["thrown"].partition("Error: ")[2])
    assert error == {
        "error": {
            "type": "invalid_request",
            "field": "messages[0].parts[0].text",
            "message": "messages[0].parts[0].text: expected a string, got number",
        }
    }
    result = chat(package, app, model="gpt-4o")
    assert result["thrown"] is not None and "model: must be one of" in result["thrown"]
    assert app.tracker()["calls"] == []


@both
@every
def test_a_client_failing_before_the_stream_is_an_http_error(
    app: App, framework: str, package: str
) -> None:
    result = chat(package, app, model="refuse")
    assert result["chunks"] == []
    error = json.loads(result["thrown"].partition("Error: ")[2])
    assert error == {"error": {"type": "upstream_error", "message": "RateLimitError: slow down"}}
    assert app.tracker()["calls"] == ["refuse"]


@both
@pytest.mark.parametrize("framework", ["django-wsgi", "django-asgi"])
def test_django_keeps_csrf_on(app: App, framework: str, package: str) -> None:
    result = chat(package, app, model="demo/echo", headers={})
    assert result["thrown"] is not None and "CSRF verification failed" in result["thrown"]
    assert app.tracker()["calls"] == []
    clean(chat(package, app, model="demo/echo"))  # the token through the transport's headers
    assert app.tracker()["calls"] == ["demo/echo"]


@both
@pytest.mark.parametrize("framework", ["fastapi"])
def test_ai5_rejects_a_field_it_does_not_know(app: App, framework: str, package: str) -> None:
    """The check the other tests rely on: ai@5.0.0's schemas are strict, later ones loose."""
    result = chat(package, app, path="/strict/chat")
    if package == "ai5":
        assert any("finishReason" in error for error in result["errors"]), result
    else:
        clean(result)
