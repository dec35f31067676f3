"""Django skin, in-process: the response per handler, the views, settings, CSRF, static files.

Streaming through real servers (gunicorn, uvicorn) is in ``test_django_server.py``.
"""

from __future__ import annotations

import asyncio
import gzip
import io
import json
import time
from collections.abc import Iterator
from contextlib import aclosing
from pathlib import Path
from typing import Any

import django_settings  # noqa: F401  (configures Django first)
import pytest
from asgiref.sync import sync_to_async
from django.contrib.staticfiles import finders
from django.core.exceptions import ImproperlyConfigured
from django.core.management import call_command
from django.http import HttpRequest, StreamingHttpResponse
from django.middleware.gzip import GZipMiddleware
from django.template import Context, Template
from django.test import AsyncClient, AsyncRequestFactory, Client, RequestFactory
from django.test.utils import override_settings
from django.urls import reverse
from django_testproject import views as project
from servers import ROOT
from upstreams import Tracker, async_upstream

from indox_integrations import DemoClient
from indox_integrations.django import conf, sse_response
from indox_integrations.django import finders as kit_finders
from indox_integrations.django.views import ChatView, CompletionView

TOKEN = "abcdefghijklmnopqrstuvwxyz012345"  # a valid unmasked CSRF secret
SETTINGS = {
    "CLIENT": "django_testproject.views.make_client",
    "USAGE": "attach",
    "HEARTBEAT": 0.3,
    "IDLE_TIMEOUT": 1.0,
    "MAX_BODY_BYTES": 4096,
    "MAX_TOKENS": 1000,
}


@pytest.fixture(autouse=True)
def fresh() -> Iterator[None]:
    project.reset(HttpRequest())
    yield


def events_of(raw: bytes) -> list[tuple[str, str]]:
    """``(event, data)`` pairs of a whole SSE body (no CR in these tests)."""
    found = []
    for block in raw.decode().split("\n\n"):
        lines = [line for line in block.split("\n") if line and not line.startswith(":")]
        if lines:
            event = next((ln[7:] for ln in lines if ln.startswith("event: ")), "message")
            data = "\n".join(ln[6:] for ln in lines if ln.startswith("data: "))
            found.append((event, data))
    return found


def text(pairs: list[tuple[str, str]]) -> str:
    return "".join(data for event, data in pairs if event == "message")


def post(client: Client, path: str, body: Any, **extra: Any) -> Any:
    return client.post(path, json.dumps(body), content_type="application/json", **extra)


# --- sse_response -----------------------------------------------------------------------


def test_wsgi_request_gets_a_sync_iterator_with_the_stream_headers() -> None:
    request = RequestFactory().get("/")
    response = sse_response(
        DemoClient(0).completion("a b", model="demo/echo", stream=True), request
    )
    assert isinstance(response, StreamingHttpResponse)
    assert not response.is_async
    assert response["Content-Type"] == "text/event-stream; charset=utf-8"
    assert response["Cache-Control"] == "no-cache"
    assert response["X-Accel-Buffering"] == "no"
    assert not response.has_header("Content-Length")
    assert text(events_of(b"".join(response))) == "a b"
    response.close()


def test_asgi_request_gets_an_async_iterator_even_for_a_sync_source() -> None:
    request = AsyncRequestFactory().get("/")
    source = DemoClient(0).completion("sync source", model="demo/echo", stream=True)
    response = sse_response(source, request, usage="attach")
    assert response.is_async

    async def read() -> bytes:
        return b"".join([part async for part in response])

    pairs = events_of(asyncio.run(read()))
    assert text(pairs) == "sync source"
    assert [event for event, _ in pairs][-2:] == ["usage", "done"]


def test_djangos_asgi_close_stops_an_async_upstream_left_at_a_yield() -> None:
    """What Django's ASGI handler does when a disconnect lands in ``send()``.

    ``aclosing(aiter(response))`` exits with the stream suspended at a yield,
    then ``sync_to_async(response.close)()`` calls ``close()`` from a thread.
    """
    tracker = Tracker()

    async def run() -> float:
        source = async_upstream(tracker, chunks=100, delay=0.25)
        response = sse_response(source, AsyncRequestFactory().get("/"))
        async with aclosing(aiter(response)) as content:
            assert await anext(content) == b": stream open\n\n"
            assert await anext(content) == b"data: tok0 \n\n"
        left = time.monotonic()
        await sync_to_async(response.close)()
        while not tracker.closed and time.monotonic() - left < 5:
            await asyncio.sleep(0.01)
        return tracker.closed[0] - left

    assert asyncio.run(run()) < 1.0
    assert tracker.snapshot()["completed"] == 0 and tracker.pulled < 5


def test_without_a_request_a_running_loop_means_asgi() -> None:
    outside = sse_response(iter(["x"]))
    assert not outside.is_async
    outside.close()

    async def inside() -> bool:
        response = sse_response(iter(["x"]))
        response.close()
        return response.is_async

    assert asyncio.run(inside())


def test_gzip_middleware_leaves_the_stream_alone() -> None:
    request = RequestFactory().get("/", HTTP_ACCEPT_ENCODING="gzip, deflate")

    def respond(streaming: StreamingHttpResponse) -> StreamingHttpResponse:
        result = GZipMiddleware(lambda r: streaming)(request)
        assert isinstance(result, StreamingHttpResponse)
        return result

    source = DemoClient(0).completion("one two three", model="demo/echo", stream=True)
    response = respond(sse_response(source, request))
    assert response["Content-Encoding"] == ""
    assert text(events_of(b"".join(response))) == "one two three"
    response.close()
    # The control: the same middleware compresses a plain streaming response.
    control = respond(StreamingHttpResponse(iter([b"data: x\n\n"])))
    assert control["Content-Encoding"] == "gzip"
    assert gzip.decompress(b"".join(control)) == b"data: x\n\n"


# --- the views, through Django's test clients -------------------------------------------


def test_completion_view_streams_under_the_wsgi_handler() -> None:
    response = post(Client(), "/stream", {"prompt": "hello, world", "model": "demo/echo"})
    assert response.status_code == 200
    assert not response.is_async
    pairs = events_of(b"".join(response.streaming_content))
    assert text(pairs) == "hello, world"
    usage = json.loads(next(data for event, data in pairs if event == "usage"))
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    assert pairs[-1] == ("done", "[DONE]")


def test_chat_view_streams_under_the_asgi_handler_from_an_async_client() -> None:
    async def run() -> tuple[Any, bytes]:
        response = await AsyncClient().post(
            "/async-client/stream",
            {"prompt": "from a coroutine", "model": "demo/echo"},
            content_type="application/json",
        )
        return response, b"".join([part async for part in response.streaming_content])

    response, raw = asyncio.run(run())
    assert response.status_code == 200 and response.is_async
    assert text(events_of(raw)) == "from a coroutine"

    async def chat() -> bytes:
        response = await AsyncClient().post(
            "/chat",
            {"messages": [{"role": "user", "content": "hi there"}], "model": "demo/echo"},
            content_type="application/json",
        )
        assert response.status_code == 200
        return b"".join([part async for part in response.streaming_content])

    assert text(events_of(asyncio.run(chat()))) == "hi there"


def test_async_client_under_wsgi_is_a_clear_json_error() -> None:
    response = post(Client(), "/async-client/stream", {"prompt": "x", "model": "demo/echo"})
    assert response.status_code == 500
    assert "needs an ASGI server" in response.json()["error"]["message"]


@pytest.mark.parametrize(
    ("path", "body", "status", "field"),
    [
        ("/stream", {"model": "demo/echo"}, 400, "prompt"),
        ("/stream", {"prompt": "x", "model": "gpt-5"}, 400, "model"),
        ("/stream", {"prompt": "x", "temperature": "hot"}, 400, "temperature"),
        ("/stream", {"prompt": "x", "max_tokens": 5000}, 400, "max_tokens"),
        ("/chat", {"messages": [{"role": "robot", "content": "x"}]}, 400, "messages[0].role"),
        ("/stream", {"prompt": "x" * 5000}, 413, "body"),
    ],
)
def test_bad_bodies_name_the_field_and_never_call_the_client(
    path: str, body: dict[str, Any], status: int, field: str
) -> None:
    response = post(Client(), path, body)
    assert response.status_code == status
    assert response["Content-Type"] == "application/json"
    assert response.json()["error"]["field"] == field
    assert project._calls == []


def test_wrong_content_type_method_and_json() -> None:
    client = Client()
    response = client.post("/stream", "prompt=x", content_type="application/x-www-form-urlencoded")
    assert response.status_code == 415
    response = client.post("/stream", "{not json", content_type="application/json")
    assert response.status_code == 400 and response.json()["error"]["field"] == "body"
    # CsrfViewMiddleware parses a multipart body before the view: still a JSON 415.
    response = client.post("/stream", {"prompt": "x", "file": io.BytesIO(b"data")})
    assert response.status_code == 415 and response.json()["error"]["field"] == "body"
    response = client.get("/stream")
    assert response.status_code == 405
    assert response["Allow"] == "POST, OPTIONS"
    assert response.json()["error"] == {
        "type": "invalid_request",
        "field": "method",
        "message": "method: expected POST, got GET",
    }
    assert project._calls == []


@override_settings(DATA_UPLOAD_MAX_MEMORY_SIZE=100)
def test_body_over_djangos_own_limit_is_413_json() -> None:
    response = post(Client(), "/stream", {"prompt": "x" * 200})
    assert response.status_code == 413
    assert "DATA_UPLOAD_MAX_MEMORY_SIZE" in response.json()["error"]["message"]
    assert project._calls == []


def test_client_failing_before_the_stream_is_a_json_error() -> None:
    response = post(Client(), "/stream", {"prompt": "x", "model": "raise/now"})
    assert response.status_code == 502
    assert response.json() == {
        "error": {"type": "upstream_error", "message": "ClientFailed: the provider is unreachable"}
    }


def test_csrf_stays_on() -> None:
    client = Client(enforce_csrf_checks=True)
    assert post(client, "/stream", {"prompt": "x", "model": "demo/echo"}).status_code == 403
    assert project._calls == []
    client.get("/page")
    token = client.cookies["csrftoken"].value
    response = post(
        client, "/stream", {"prompt": "ok", "model": "demo/echo"}, HTTP_X_CSRFTOKEN=token
    )
    assert response.status_code == 200
    assert text(events_of(b"".join(response.streaming_content))) == "ok"


def test_include_gives_namespaced_stream_and_chat() -> None:
    assert reverse("indox_integrations:stream") == "/llm/stream/"
    assert reverse("indox_integrations:chat") == "/llm/chat/"
    response = post(Client(), "/llm/stream/", {"prompt": "included", "model": "demo/echo"})
    assert text(events_of(b"".join(response.streaming_content))) == "included"


# --- settings ---------------------------------------------------------------------------


def test_missing_client_names_the_setting() -> None:
    with override_settings(INDOX_INTEGRATIONS={}), pytest.raises(ImproperlyConfigured) as info:
        post(Client(), "/stream", {"prompt": "x", "model": "demo/echo"})
    assert "INDOX_INTEGRATIONS['CLIENT'] is not set" in str(info.value)
    assert "as_view()" in str(info.value)


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ({**SETTINGS, "CLEINT": "x"}, "unknown keys CLEINT"),
        ({**SETTINGS, "USAGE": "always"}, "usage must be 'skip' or 'attach'"),
        ({**SETTINGS, "HEARTBEAT": 0}, "heartbeat must be a positive number"),
        ({**SETTINGS, "ON_USAGE": "no.such.callback"}, "cannot import 'no.such.callback'"),
        ({**SETTINGS, "CLIENT": "django_testproject.views.MODELS"}, "must name a callable"),
        ([1, 2], "must be a dict"),
    ],
)
def test_bad_settings_are_improperly_configured(setting: Any, message: str) -> None:
    with override_settings(INDOX_INTEGRATIONS=setting), pytest.raises(ImproperlyConfigured) as info:
        post(Client(), "/stream", {"prompt": "x", "model": "demo/echo"})
    assert message in str(info.value)


def test_bad_view_arguments_fail_when_the_urlconf_loads() -> None:
    with pytest.raises(ImproperlyConfigured, match="usage must be"):
        CompletionView.as_view(usage="sometimes")
    with pytest.raises(ImproperlyConfigured, match="on_complete"):
        ChatView.as_view(on_complete=42)


def test_client_factory_runs_once_and_again_after_the_setting_changes() -> None:
    built: list[int] = []

    def factory() -> Any:
        built.append(1)
        return project.client

    for _ in range(2):
        with override_settings(INDOX_INTEGRATIONS={**SETTINGS, "CLIENT": factory}):
            for _ in range(3):
                response = post(Client(), "/stream", {"prompt": "x", "model": "demo/echo"})
                assert response.status_code == 200
                b"".join(response.streaming_content)
            assert conf.client() is project.client
    assert built == [1, 1]


def test_settings_and_view_arguments_reach_the_stream() -> None:
    with override_settings(INDOX_INTEGRATIONS={**SETTINGS, "USAGE": "skip"}):
        response = post(Client(), "/stream", {"prompt": "x", "model": "demo/echo"})
        assert "usage" not in [e for e, _ in events_of(b"".join(response.streaming_content))]
    response = post(Client(), "/cb/stream", {"prompt": "callbacks", "model": "demo/echo"})
    pairs = events_of(b"".join(response.streaming_content))
    response.close()
    assert text(pairs) == "callbacks" and "usage" not in [e for e, _ in pairs]
    kinds = [record["kind"] for record in project._records]
    assert kinds == ["usage", "complete"]
    assert project._records[1]["outcome"] == "completed"


# --- static files -----------------------------------------------------------------------


def test_static_tag_and_finder_serve_the_helper_from_a_checkout() -> None:
    rendered = Template("{% load static %}{% static 'indox_integrations/indox-stream.js' %}")
    assert rendered.render(Context()) == "/static/indox_integrations/indox-stream.js"
    found = finders.find("indox_integrations/indox-stream.js")
    assert found is not None
    assert Path(found).read_bytes() == (ROOT / "static" / "indox-stream.js").read_bytes()
    assert finders.find("indox_integrations/package.json") is None


def test_collectstatic_collects_the_three_helper_files(tmp_path: Path) -> None:
    with override_settings(STATIC_ROOT=str(tmp_path)):
        call_command("collectstatic", interactive=False, verbosity=0)
    collected = sorted(p.name for p in (tmp_path / "indox_integrations").iterdir())
    assert collected == ["indox-stream.d.ts", "indox-stream.global.js", "indox-stream.js"]


def test_checkout_finder_steps_aside_when_the_wheel_ships_the_files(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(kit_finders, "STATIC_DIR", kit_finders.PACKAGED)
    finder = kit_finders.CheckoutFinder()
    assert finder.find("indox_integrations/indox-stream.js") == []
    assert list(finder.list(None)) == []


def test_functions_as_class_attributes_stay_functions() -> None:
    def echo_client(request: Any) -> Any:
        return iter([request.prompt.upper()])

    seen: list[Any] = []

    def remember(report: Any) -> None:
        seen.append(report.outcome)

    class Shout(CompletionView):
        client = echo_client
        on_complete = remember

    request = RequestFactory().post("/", b'{"prompt": "hey"}', content_type="application/json")
    response = asyncio.run(Shout.as_view()(request))
    assert text(events_of(b"".join(response))) == "HEY"
    response.close()
    assert seen == ["completed"]
