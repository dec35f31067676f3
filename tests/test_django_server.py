"""Django streams through real servers: uvicorn (ASGI) and gunicorn gthread (WSGI).

Both serve ``tests/django_testproject`` in a subprocess, with CSRF and GZip
middleware on. Every test ends by checking that the server process raised no
warning: Django warns when it must buffer a stream handed the wrong iterator.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from django_testproject.settings import HEARTBEAT, IDLE_TIMEOUT
from httpx_sse import ServerSentEvent, aconnect_sse, connect_sse
from servers import (
    ROOT,
    collect,
    free_port,
    gunicorn_argv,
    process_server,
    remote_tracker,
    text_of,
    uvicorn_argv,
)
from servers import wait_closed as wait_for_closed
from upstreams import TRICKY_TEXTS

TOKEN = "abcdefghijklmnopqrstuvwxyz012345"  # a valid unmasked CSRF secret
CSRF = {"Cookie": f"csrftoken={TOKEN}", "X-CSRFToken": TOKEN}
PACED = {"chunks": 8, "delay": 0.15}  # test/paced in django_testproject.views
MANY = {"chunks": 20, "delay": 0.1}  # test/many
STALL_DELAY = 2.5  # test/stall's first_delay
SILENT_DELAY = 5.0  # test/silent's first_delay
SETTINGS_VARIABLE = "DJANGO_SETTINGS_MODULE"


@dataclass(frozen=True)
class Server:
    url: str
    kind: str  # "asgi" or "wsgi"


@pytest.fixture(scope="module", params=["asgi", "wsgi"])
def running(request: pytest.FixtureRequest) -> Iterator[Server]:
    port = free_port()
    if request.param == "asgi":
        argv = uvicorn_argv("django_testproject.asgi:application", port)
    else:
        argv = gunicorn_argv("django_testproject.wsgi:application", port)
    env = {SETTINGS_VARIABLE: "django_testproject.settings"}
    with process_server(argv, port, env) as url:
        yield Server(url, request.param)


@pytest.fixture
def server(running: Server) -> Iterator[Server]:
    # Upstreams a previous test left behind must not count in this test's tracker.
    deadline = time.monotonic() + 10
    while tracker(running)["active"] and time.monotonic() < deadline:
        time.sleep(0.05)
    httpx.post(f"{running.url}/_reset").raise_for_status()
    yield running
    assert tracker(running)["warnings"] == []


def tracker(server: Server) -> dict[str, Any]:
    return remote_tracker(server.url)


def sse(
    server: Server, path: str, body: dict[str, Any]
) -> tuple[httpx.Response, list[ServerSentEvent]]:
    return collect(server.url, path, body, headers=dict(CSRF))


def wait_closed(server: Server, count: int = 1, timeout: float = 10.0) -> dict[str, Any]:
    return wait_for_closed(server.url, count, timeout)


def assert_serving(server: Server) -> None:
    assert httpx.get(f"{server.url}/health").json() == {"ok": True}
    response, events = sse(server, "/stream", {"prompt": "still here", "model": "demo/echo"})
    assert response.status_code == 200
    assert text_of(events) == "still here"


def read_paced(server: Server, path: str, model: str) -> tuple[httpx.Response, list[float], dict]:
    arrivals: list[float] = []
    texts: list[str] = []
    at_first: dict[str, Any] = {}
    with (
        httpx.Client(base_url=server.url, timeout=30) as client,
        connect_sse(
            client, "POST", path, json={"prompt": "go", "model": model}, headers=dict(CSRF)
        ) as source,
    ):
        for event in source.iter_sse():
            if event.event == "message":
                at_first = at_first or tracker(server)
                arrivals.append(time.monotonic())
                texts.append(event.data)
    assert texts == [f"tok{i} " for i in range(PACED["chunks"])]
    return source.response, arrivals, at_first


def assert_paced(arrivals: list[float], at_first: dict[str, Any]) -> None:
    # The first event was on the wire while the upstream had most of its text to make.
    assert at_first["completed"] == 0 and at_first["pulled"] < PACED["chunks"]
    assert arrivals[-1] - arrivals[0] > 0.5 * (PACED["chunks"] - 1) * PACED["delay"]


def test_sync_upstream_text_arrives_event_by_event_past_gzip(server: Server) -> None:
    response, arrivals, at_first = read_paced(server, "/stream", "test/paced")
    assert response.status_code == 200
    assert "gzip" in response.request.headers["accept-encoding"]
    assert response.headers.get("content-encoding", "") == ""
    assert response.headers["content-type"] == "text/event-stream; charset=utf-8"
    assert response.headers["cache-control"] == "no-cache"
    assert response.headers["x-accel-buffering"] == "no"
    assert "content-length" not in response.headers
    assert_paced(arrivals, at_first)


@pytest.mark.parametrize("path", ["/stream", "/async-client/stream"])
def test_async_upstream_streams_under_asgi_and_is_refused_under_wsgi(
    server: Server, path: str
) -> None:
    if server.kind == "asgi":
        response, arrivals, at_first = read_paced(server, path, "atest/paced")
        assert response.status_code == 200
        assert_paced(arrivals, at_first)
        return
    response = httpx.post(
        f"{server.url}{path}", json={"prompt": "go", "model": "atest/paced"}, headers=CSRF
    )
    assert response.status_code == 500
    error = response.json()["error"]
    assert error["type"] == "server_error" and "needs an ASGI server" in error["message"]
    assert tracker(server)["started"] == 0


def test_sse_response_from_function_views(server: Server) -> None:
    with httpx.Client(base_url=server.url, timeout=30) as client:
        with connect_sse(client, "GET", "/fn/sync") as source:
            events = list(source.iter_sse())
        assert text_of(events) == "".join(f"tok{i} " for i in range(PACED["chunks"]))
        with connect_sse(client, "GET", "/fn/async") as source:
            events = list(source.iter_sse())
        assert text_of(events) == "async view"
        assert [e.event for e in events][-2:] == ["usage", "done"]


def test_tricky_texts_survive(server: Server) -> None:
    response, events = sse(server, "/stream", {"prompt": "x", "model": "test/tricky"})
    assert response.status_code == 200
    assert [e.data for e in events if e.event == "message"] == TRICKY_TEXTS
    assert events[-1].event == "done" and events[-1].data == "[DONE]"
    if server.kind == "asgi":
        _, events = sse(server, "/stream", {"prompt": "x", "model": "atest/tricky"})
        assert [e.data for e in events if e.event == "message"] == TRICKY_TEXTS


def test_chat_echoes_tricky_text_exactly(server: Server) -> None:
    prompt = "".join(TRICKY_TEXTS[:-1])
    body = {"messages": [{"role": "user", "content": prompt}], "model": "demo/echo"}
    response, events = sse(server, "/chat", body)
    assert response.status_code == 200
    assert text_of(events) == prompt


def test_usage_attached_skipped_and_called_back(server: Server) -> None:
    _, events = sse(server, "/stream", {"prompt": "one two three", "model": "demo/echo"})
    assert [e.event for e in events][-2:] == ["usage", "done"]
    usage = json.loads(events[-2].data)
    assert usage["prompt_tokens"] == 3
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]

    _, events = sse(server, "/skip/stream", {"prompt": "one two three", "model": "demo/echo"})
    assert "usage" not in [e.event for e in events]
    assert text_of(events) == "one two three"

    _, events = sse(server, "/cb/stream", {"prompt": "one two", "model": "demo/echo"})
    assert "usage" not in [e.event for e in events]
    deadline = time.monotonic() + 10
    while len(records := tracker(server)["records"]) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert [r["kind"] for r in records] == ["usage", "complete"]
    assert not any(r["in_loop"] for r in records)  # free to use the ORM
    assert records[0]["usage"]["prompt_tokens"] == 2
    assert records[1]["outcome"] == "completed"


@pytest.mark.parametrize("family", ["test", "atest"])
def test_client_disconnect_closes_a_chatty_upstream(server: Server, family: str) -> None:
    if family == "atest" and server.kind == "wsgi":
        pytest.skip("async upstreams need ASGI")
    with (
        httpx.Client(base_url=server.url, timeout=30) as client,
        connect_sse(
            client,
            "POST",
            "/stream",
            json={"prompt": "go", "model": f"{family}/chatty"},
            headers=dict(CSRF),
        ) as source,
    ):
        seen = 0
        for event in source.iter_sse():
            seen += event.event == "message"
            if seen == 5:
                break
        left = time.monotonic()
    snapshot = wait_closed(server)
    assert snapshot["closed"] == 1 and snapshot["completed"] == 0
    assert snapshot["last_closed"] - left < 1.0
    time.sleep(0.3)
    after = tracker(server)
    assert after["pulled"] == snapshot["pulled"] < 200


@pytest.mark.parametrize("family", ["test", "atest"])
def test_disconnect_while_the_upstream_is_silent(server: Server, family: str) -> None:
    """ASGI notices at once; WSGI at the first heartbeat."""
    if family == "atest" and server.kind == "wsgi":
        pytest.skip("async upstreams need ASGI")
    with (
        httpx.Client(base_url=server.url, timeout=30) as client,
        client.stream(
            "POST",
            "/stream",
            json={"prompt": "go", "model": f"{family}/silent"},
            headers=dict(CSRF),
        ) as response,
    ):
        received = b""
        for part in response.iter_raw():
            received += part
            if b": stream open\n\n" in received:
                break
        left = time.monotonic()
    snapshot = wait_closed(server)
    assert snapshot["closed"] == 1 and snapshot["completed"] == 0
    gone_after = snapshot["last_closed"] - left
    print(f"{server.kind}: upstream closed {gone_after:.3f} s after the client left")
    # WSGI: at the first heartbeat the kit asks gunicorn's socket whether the
    # client closed it, rather than waiting for a write to fail (which takes two).
    limit = 0.5 if server.kind == "asgi" else 3 * HEARTBEAT
    assert gone_after < limit < SILENT_DELAY / 3
    assert snapshot["pulled"] == 0


def test_upstream_error_mid_stream(server: Server) -> None:
    for family in ("test", "atest") if server.kind == "asgi" else ("test",):
        response, events = sse(server, "/stream", {"prompt": "go", "model": f"{family}/fail"})
        assert response.status_code == 200
        assert [e.event for e in events] == ["message"] * 3 + ["error", "done"]
        error = json.loads(events[-2].data)
        assert error["type"] == "upstream_error"
        assert "sk-test" not in events[-2].data
    assert_serving(server)


def test_idle_timeout_ends_the_stream(server: Server) -> None:
    started = time.monotonic()
    response, events = sse(server, "/stream", {"prompt": "go", "model": "test/stall"})
    elapsed = time.monotonic() - started
    assert response.status_code == 200
    assert [e.event for e in events] == ["error", "done"]
    assert json.loads(events[0].data)["type"] == "timeout"
    assert IDLE_TIMEOUT <= elapsed < STALL_DELAY
    assert_serving(server)


def test_client_failing_before_the_stream_is_a_json_status(server: Server) -> None:
    response = httpx.post(
        f"{server.url}/stream", json={"prompt": "go", "model": "raise/now"}, headers=CSRF
    )
    assert response.status_code == 502
    assert response.json()["error"]["message"] == "ClientFailed: the provider is unreachable"


def _chunked_body() -> Iterator[bytes]:
    yield b'{"prompt": "'
    for _ in range(10):
        yield b"x" * 1000
    yield b'"}'


JSON = {"Content-Type": "application/json"}
TEXT = {"Content-Type": "text/plain"}

BAD_INPUTS: list[tuple[str, str, dict[str, Any], int, str]] = [
    ("POST", "/stream", {"content": b"{not json", "headers": JSON}, 400, "body"),
    ("POST", "/stream", {"json": ["prompt"]}, 400, "body"),
    ("POST", "/stream", {"json": {}}, 400, "prompt"),
    ("POST", "/stream", {"json": {"prompt": "x", "temperature": 3}}, 400, "temperature"),
    ("POST", "/stream", {"json": {"prompt": "x", "max_tokens": 10**6}}, 400, "max_tokens"),
    ("POST", "/stream", {"json": {"prompt": "x", "model": "nope/x"}}, 400, "model"),
    ("POST", "/chat", {"json": {"messages": "hi"}}, 400, "messages"),
    ("POST", "/chat", {"json": {"messages": [{"role": "user"}]}}, 400, "messages[0].content"),
    ("POST", "/stream", {"json": {"prompt": "x" * 5000}}, 413, "body"),
    ("POST", "/stream", {"content": b"prompt=hi", "headers": TEXT}, 415, "body"),
    ("POST", "/stream", {"data": {"prompt": "hi"}, "files": {"f": b"x"}}, 415, "body"),
    ("GET", "/stream", {}, 405, "method"),
    ("PUT", "/chat", {"json": {"messages": []}}, 405, "method"),
]


def test_bad_inputs_get_json_errors_and_never_reach_the_client(server: Server) -> None:
    cases = list(BAD_INPUTS)
    if server.kind == "asgi":
        # Django's WSGI request reads no body without a Content-Length.
        cases.append(("POST", "/stream", {"content": _chunked_body, "headers": JSON}, 413, "body"))
    with httpx.Client(base_url=server.url, timeout=30) as client:
        for method, path, options, status, field in cases:
            options = dict(options)
            if callable(options.get("content")):
                options["content"] = options["content"]()
            headers = {**CSRF, **options.pop("headers", {})}
            response = client.request(method, path, headers=headers, **options)
            where = f"{method} {path} {options}"[:200]
            assert response.status_code == status, where
            assert response.headers["content-type"] == "application/json", where
            error = response.json()["error"]
            assert error["type"] == "invalid_request" and error["field"] == field, where
            assert field in error["message"], where
            if status == 405:
                assert response.headers["allow"] == "POST, OPTIONS"
    assert tracker(server)["calls"] == []
    assert_serving(server)


def test_csrf_refuses_a_post_without_the_token_and_streams_with_it(server: Server) -> None:
    body = {"prompt": "with token", "model": "demo/echo"}
    with httpx.Client(base_url=server.url, timeout=30) as client:
        assert client.post("/stream", json=body).status_code == 403
        # The cookie alone is not enough: the header must echo it.
        refused = client.post("/stream", json=body, headers={"Cookie": CSRF["Cookie"]})
        assert refused.status_code == 403
        assert tracker(server)["calls"] == []
        client.get("/page").raise_for_status()
        token = client.cookies["csrftoken"]
        with connect_sse(
            client, "POST", "/stream", json=body, headers={"X-CSRFToken": token}
        ) as source:
            events = list(source.iter_sse())
        assert source.response.status_code == 200
        assert text_of(events) == "with token"


def test_included_urls_stream(server: Server) -> None:
    _, events = sse(server, "/llm/stream/", {"prompt": "included", "model": "demo/echo"})
    assert text_of(events) == "included"
    body = {"messages": [{"role": "user", "content": "chat"}], "model": "demo/echo"}
    _, events = sse(server, "/llm/chat/", body)
    assert text_of(events) == "chat"


def test_fifty_streams_progress_at_once_and_a_plain_view_answers(server: Server) -> None:
    count = MANY["chunks"]

    async def one(client: httpx.AsyncClient) -> tuple[float, float, list[str]]:
        texts: list[str] = []
        first = 0.0
        async with aconnect_sse(
            client, "POST", "/stream", json={"prompt": "go", "model": "test/many"}, headers=CSRF
        ) as source:
            async for event in source.aiter_sse():
                if event.event == "message":
                    first = first or time.monotonic()
                    texts.append(event.data)
        return first, time.monotonic(), texts

    async def health(client: httpx.AsyncClient) -> tuple[float, int, dict[str, Any]]:
        deadline = time.monotonic() + 10
        while (await client.get("/_tracker")).json()["active"] < 50:
            assert time.monotonic() < deadline, "the fifty streams did not all start"
            await asyncio.sleep(0.05)
        response = await client.get("/health")
        return time.monotonic(), response.status_code, (await client.get("/_tracker")).json()

    async def all_of_them() -> tuple[list[Any], tuple[float, int, dict[str, Any]]]:
        limits = httpx.Limits(max_connections=60, max_keepalive_connections=60)
        async with httpx.AsyncClient(base_url=server.url, timeout=60, limits=limits) as client:
            streams = asyncio.gather(*(one(client) for _ in range(50)))
            answered = await health(client)
            return await streams, answered

    started = time.monotonic()
    results, (answered_at, status, during) = asyncio.run(all_of_them())
    elapsed = time.monotonic() - started
    assert all(texts == [f"tok{i} " for i in range(count)] for _, _, texts in results)
    # Every stream had text on the wire before any stream was finished.
    assert max(first for first, _, _ in results) < min(end for _, end, _ in results)
    one_stream = (count - 1) * MANY["delay"]
    assert elapsed < 5 * one_stream < 50 * one_stream
    # The plain view answered while all fifty streams were open.
    assert status == 200 and during["active"] == 50
    assert answered_at < min(end for _, end, _ in results)
    snapshot = tracker(server)
    assert snapshot["max_active"] == 50 and snapshot["completed"] == 50, snapshot


def test_the_warning_check_sees_a_buffered_stream(running: Server) -> None:
    """The control for every test's warning check: the wrong iterator makes Django warn."""
    httpx.post(f"{running.url}/_reset").raise_for_status()
    response = httpx.get(f"{running.url}/_wrong_kind")
    assert response.status_code == 200 and response.text == "data: wrong kind\n\n"
    kind = "synchronous" if running.kind == "asgi" else "asynchronous"
    warnings = tracker(running)["warnings"]
    assert len(warnings) == 1 and f"must consume {kind} iterators" in warnings[0]
    httpx.post(f"{running.url}/_reset").raise_for_status()


# --- the example project ----------------------------------------------------------------


@pytest.mark.parametrize("wsgi", [False, True], ids=["asgi-uvicorn", "wsgi-gunicorn"])
def test_example_project_serves_page_static_and_streams(wsgi: bool) -> None:
    port = free_port()
    argv = [sys.executable, "-m", "example_apps", "django", "--port", str(port)]
    env = {"INDOX_DEMO_DELAY": "0", "INDOX_ROUTER_API_KEY": "", "OPENAI_API_KEY": ""}
    with (
        process_server([*argv, "--wsgi"] if wsgi else argv, port, env=env) as url,
        httpx.Client(base_url=url, timeout=30) as client,
    ):
        assert client.get("/health").json() == {"ok": True}
        page = client.get("/")
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        assert "/static/indox-stream.js" in page.text
        token = client.cookies["csrftoken"]  # the JS helper sends it back as X-CSRFToken
        for name in ("indox-stream.js", "indox-stream.global.js"):
            script = client.get(f"/static/{name}")
            assert script.status_code == 200
            assert script.headers["content-type"].startswith("text/javascript")
            assert script.content == (ROOT / "static" / name).read_bytes()
        body = {"prompt": "Hello, Django!\nSecond line.", "model": "demo/echo"}
        assert client.post("/stream", json=body).status_code == 403
        headers = {"X-CSRFToken": token}
        chat = {"messages": [{"role": "user", "content": body["prompt"]}], "model": "demo/echo"}
        for path, payload in [("/stream", body), ("/chat", chat), ("/llm/stream/", body)]:
            with connect_sse(client, "POST", path, json=payload, headers=headers) as source:
                events = list(source.iter_sse())
            assert source.response.status_code == 200, path
            assert text_of(events) == body["prompt"], path
            assert [e.event for e in events][-2:] == ["usage", "done"], path
        refused = client.post("/stream", json={"prompt": "x", "model": "gpt-4o"}, headers=headers)
        assert refused.status_code == 400 and refused.json()["error"]["field"] == "model"


def test_example_project_passes_djangos_checks() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "example_apps" / "manage.py"), "check"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd="/",
        env={
            k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "DJANGO_SETTINGS_MODULE")
        },
    )
    assert result.returncode == 0, result.stderr
    assert "no issues" in result.stdout
