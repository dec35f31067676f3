"""Flask streams through real servers: Werkzeug's threaded server and gunicorn (gthread)."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from flask_apps import HEARTBEAT, IDLE_TIMEOUT, SCENARIOS, create_app
from httpx_sse import ServerSentEvent, aconnect_sse, connect_sse
from servers import (
    ROOT,
    collect,
    free_port,
    gunicorn_argv,
    process_server,
    text_of,
    wait_closed,
    werkzeug_thread,
)
from servers import remote_tracker as tracker
from upstreams import TRICKY_TEXTS


@pytest.fixture(scope="module", params=["werkzeug", "gunicorn"])
def base_url(request: pytest.FixtureRequest) -> Iterator[str]:
    if request.param == "werkzeug":
        with werkzeug_thread(create_app()) as url:
            yield url
    else:
        port = free_port()
        with process_server(gunicorn_argv("flask_apps:create_app()", port), port) as url:
            yield url


@pytest.fixture
def server(base_url: str) -> str:
    # Upstreams a previous test left behind (a stalled one closes when its sleep
    # ends) must not count in this test's tracker.
    deadline = time.monotonic() + 10
    while tracker(base_url)["active"] and time.monotonic() < deadline:
        time.sleep(0.05)
    httpx.post(f"{base_url}/_reset").raise_for_status()
    return base_url


def sse(
    base_url: str, path: str, body: dict[str, Any], headers: dict[str, str] | None = None
) -> tuple[httpx.Response, list[ServerSentEvent]]:
    # A fresh dict: httpx-sse adds its Accept header to the one it is given.
    return collect(base_url, path, body, headers=dict(headers or {}))


def assert_serving(base_url: str) -> None:
    assert httpx.get(f"{base_url}/health").json() == {"ok": True}
    response, events = sse(base_url, "/stream", {"prompt": "still here", "model": "demo/echo"})
    assert response.status_code == 200
    assert text_of(events) == "still here"


def test_text_arrives_event_by_event_as_produced(server: str) -> None:
    arrivals: list[float] = []
    texts: list[str] = []
    with (
        httpx.Client(base_url=server, timeout=30) as client,
        connect_sse(
            client, "POST", "/stream", json={"prompt": "go", "model": "test/paced"}
        ) as source,
    ):
        response = source.response
        for event in source.iter_sse():
            if event.event == "message":
                if not texts:
                    at_first = tracker(server)
                arrivals.append(time.monotonic())
                texts.append(event.data)
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/event-stream; charset=utf-8"
    assert response.headers["cache-control"] == "no-cache"
    assert response.headers["x-accel-buffering"] == "no"
    assert "content-length" not in response.headers
    assert texts == [f"tok{i} " for i in range(8)]
    # The first event was on the wire while the upstream still had most of its text to make.
    assert at_first["completed"] == 0 and at_first["pulled"] < 8
    delay = SCENARIOS["test/paced"]["delay"]
    assert arrivals[-1] - arrivals[0] > 0.5 * 7 * delay


def test_wire_starts_with_the_open_comment(server: str) -> None:
    with (
        httpx.Client(base_url=server, timeout=30) as client,
        client.stream("POST", "/stream", json={"prompt": "hi", "model": "demo/echo"}) as response,
    ):
        body = response.read()
    assert body.startswith(b": stream open\n\ndata: ")
    assert body.endswith(b"event: done\ndata: [DONE]\n\n")


def test_tricky_texts_survive(server: str) -> None:
    response, events = sse(server, "/stream", {"prompt": "x", "model": "test/tricky"})
    assert response.status_code == 200
    assert [e.data for e in events if e.event == "message"] == TRICKY_TEXTS
    assert events[-1].event == "done" and events[-1].data == "[DONE]"


def test_chat_echoes_tricky_text_exactly(server: str) -> None:
    prompt = "".join(TRICKY_TEXTS[:-1])
    body = {"messages": [{"role": "user", "content": prompt}], "model": "demo/echo"}
    response, events = sse(server, "/chat", body)
    assert response.status_code == 200
    assert text_of(events) == prompt


def test_usage_attached(server: str) -> None:
    _, events = sse(server, "/stream", {"prompt": "one two three", "model": "demo/echo"})
    kinds = [e.event for e in events]
    assert kinds[-2:] == ["usage", "done"]
    usage = json.loads(events[-2].data)
    assert usage["prompt_tokens"] == 3 and usage["total_tokens"] == 3 + usage["completion_tokens"]
    assert usage["completion_tokens"] > 0


def test_usage_skipped(server: str) -> None:
    _, events = sse(server, "/skip/stream", {"prompt": "one two three", "model": "demo/echo"})
    assert "usage" not in [e.event for e in events]
    assert text_of(events) == "one two three"
    assert events[-1].event == "done"


def test_callbacks_get_usage_and_the_request_context(server: str) -> None:
    _, events = sse(
        server, "/cb/stream", {"prompt": "one two", "model": "demo/echo"}, headers={"X-User": "ada"}
    )
    assert "usage" not in [e.event for e in events]
    records = tracker(server)["records"]
    assert [r["kind"] for r in records] == ["usage", "complete"]
    for record in records:
        assert record["path"] == "/cb/stream"
        assert record["user"] == "ada"
        assert record["app"] == "flask_test_app"
        assert record["usage"]["prompt_tokens"] == 2
    assert records[1]["outcome"] == "completed"


def test_callbacks_get_partial_usage_after_the_client_left(server: str) -> None:
    with (
        httpx.Client(base_url=server, timeout=30) as client,
        connect_sse(
            client,
            "POST",
            "/cb/stream",
            json={"prompt": "tell", "model": "slow/story"},
            headers={"X-User": "bob"},
        ) as source,
    ):
        seen = 0
        for event in source.iter_sse():
            seen += event.event == "message"
            if seen == 3:
                break
    deadline = time.monotonic() + 10
    while len(records := tracker(server)["records"]) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    complete = records[-1]
    assert complete["kind"] == "complete" and complete["user"] == "bob"
    assert complete["outcome"] == "client_disconnected"
    assert 3 <= complete["usage"]["completion_tokens"] < 100


def test_client_disconnect_closes_a_chatty_upstream(server: str) -> None:
    with (
        httpx.Client(base_url=server, timeout=30) as client,
        connect_sse(
            client, "POST", "/stream", json={"prompt": "go", "model": "test/chatty"}
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


def test_heartbeat_reveals_a_gone_client_while_the_upstream_is_silent(server: str) -> None:
    with (
        httpx.Client(base_url=server, timeout=30) as client,
        client.stream("POST", "/stream", json={"prompt": "go", "model": "test/silent"}) as response,
    ):
        received = b""
        for part in response.iter_raw():
            received += part
            if b": stream open\n\n" in received:
                break
        left = time.monotonic()
    snapshot = wait_closed(server)
    assert snapshot["closed"] == 1 and snapshot["completed"] == 0
    # At the first heartbeat the kit asks the server's socket whether the client
    # closed it, rather than waiting for a write to fail (which takes two).
    gone_after = snapshot["last_closed"] - left
    print(f"upstream closed {gone_after:.3f} s after the client left")
    assert gone_after < 3 * HEARTBEAT < SCENARIOS["test/silent"]["first_delay"] / 3
    assert snapshot["pulled"] == 0
    time.sleep(0.3)
    assert tracker(server)["pulled"] == 0


def test_upstream_error_mid_stream(server: str) -> None:
    response, events = sse(server, "/stream", {"prompt": "go", "model": "test/fail"})
    assert response.status_code == 200
    assert [e.event for e in events] == ["message"] * 3 + ["error", "done"]
    error = json.loads(events[-2].data)
    assert error["type"] == "upstream_error"
    assert "sk-test" not in events[-2].data
    assert events[-1].data == "[DONE]"
    assert wait_closed(server)["closed"] == 1
    assert_serving(server)


def test_idle_timeout_ends_the_stream(server: str) -> None:
    started = time.monotonic()
    response, events = sse(server, "/stream", {"prompt": "go", "model": "test/stall"})
    elapsed = time.monotonic() - started
    assert response.status_code == 200
    assert [e.event for e in events] == ["error", "done"]
    assert json.loads(events[0].data)["type"] == "timeout"
    assert IDLE_TIMEOUT <= elapsed < SCENARIOS["test/stall"]["first_delay"]
    assert_serving(server)


def _oversized_chunks() -> Iterator[bytes]:
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
    ("POST", "/stream", {"json": {"prompt": 5}}, 400, "prompt"),
    ("POST", "/stream", {"json": {"prompt": "x", "temperature": "hot"}}, 400, "temperature"),
    ("POST", "/stream", {"json": {"prompt": "x", "temperature": 3}}, 400, "temperature"),
    ("POST", "/stream", {"json": {"prompt": "x", "max_tokens": 0}}, 400, "max_tokens"),
    ("POST", "/stream", {"json": {"prompt": "x", "max_tokens": 10**6}}, 400, "max_tokens"),
    ("POST", "/stream", {"json": {"prompt": "x", "model": "nope/x"}}, 400, "model"),
    ("POST", "/chat", {"json": {}}, 400, "messages"),
    ("POST", "/chat", {"json": {"messages": "hi"}}, 400, "messages"),
    ("POST", "/chat", {"json": {"messages": [{"role": "user"}]}}, 400, "messages[0].content"),
    ("POST", "/chat", {"json": {"messages": [{"role": "bot"}]}}, 400, "messages[0].role"),
    ("POST", "/stream", {"json": {"prompt": "x" * 5000}}, 413, "body"),
    ("POST", "/stream", {"content": _oversized_chunks, "headers": JSON}, 413, "body"),
    ("POST", "/stream", {"content": b"prompt=hi", "headers": TEXT}, 415, "body"),
    ("POST", "/stream", {"content": b'{"prompt": "hi"}'}, 415, "body"),
    ("GET", "/stream", {}, 405, "method"),
    ("PUT", "/chat", {"json": {"messages": []}}, 405, "method"),
]


def test_bad_inputs_get_json_errors_and_never_reach_the_client(server: str) -> None:
    with httpx.Client(base_url=server, timeout=30) as client:
        for method, path, options, status, field in BAD_INPUTS:
            if callable(options.get("content")):
                options = {**options, "content": options["content"]()}
            response = client.request(method, path, **options)
            where = f"{method} {path} {options}"[:200]
            assert response.status_code == status, where
            assert response.headers["content-type"] == "application/json", where
            error = response.json()["error"]
            assert error["type"] == "invalid_request" and error["field"] == field, where
            assert field in error["message"], where
            if status == 405:
                assert "POST" in response.headers["allow"]
    assert tracker(server)["calls"] == []
    assert_serving(server)


def test_js_helper_is_served_under_each_blueprint_prefix(server: str) -> None:
    expected = (ROOT / "static" / "indox-stream.js").read_bytes()
    for prefix in ("", "/skip", "/cb"):
        response = httpx.get(f"{server}{prefix}/static/indox-stream.js")
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/javascript")
        assert response.content == expected
    assert httpx.get(f"{server}/static/indox-stream.global.js").status_code == 200


def test_fifty_streams_progress_at_once_in_one_process(server: str) -> None:
    count = SCENARIOS["test/many"]["chunks"]

    async def one(client: httpx.AsyncClient) -> tuple[float, float, list[str]]:
        texts: list[str] = []
        first = 0.0
        async with aconnect_sse(
            client, "POST", "/stream", json={"prompt": "go", "model": "test/many"}
        ) as source:
            async for event in source.aiter_sse():
                if event.event == "message":
                    first = first or time.monotonic()
                    texts.append(event.data)
        return first, time.monotonic(), texts

    async def all_of_them() -> list[tuple[float, float, list[str]]]:
        limits = httpx.Limits(max_connections=60, max_keepalive_connections=60)
        async with httpx.AsyncClient(base_url=server, timeout=60, limits=limits) as client:
            return await asyncio.gather(*(one(client) for _ in range(50)))

    started = time.monotonic()
    results = asyncio.run(all_of_them())
    elapsed = time.monotonic() - started
    assert all(texts == [f"tok{i} " for i in range(count)] for _, _, texts in results)
    # Every stream had text on the wire before any stream was finished.
    assert max(first for first, _, _ in results) < min(end for _, end, _ in results)
    one_stream = (count - 1) * SCENARIOS["test/many"]["delay"]
    assert elapsed < 5 * one_stream < 50 * one_stream
    snapshot = tracker(server)
    assert snapshot["max_active"] == 50 and snapshot["completed"] == 50, snapshot


def test_example_app_serves_page_static_and_streams() -> None:
    port = free_port()
    argv = [
        sys.executable, "-m", "example_apps", "flask", "--host", "127.0.0.1", "--port", str(port),
    ]  # fmt: skip
    env = {"INDOX_DEMO_DELAY": "0", "INDOX_ROUTER_API_KEY": "", "OPENAI_API_KEY": ""}
    with process_server(argv, port, env=env) as url:
        assert httpx.get(f"{url}/health").json() == {"ok": True}
        page = httpx.get(f"{url}/")
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        assert "/static/indox-stream.js" in page.text
        script = httpx.get(f"{url}/static/indox-stream.js")
        assert script.status_code == 200
        assert script.headers["content-type"].startswith("text/javascript")
        prompt = "Hello, Flask!\nSecond line."
        response, events = sse(url, "/stream", {"prompt": prompt, "model": "demo/echo"})
        assert response.status_code == 200 and text_of(events) == prompt
        assert [e.event for e in events][-2:] == ["usage", "done"]
        body = {"messages": [{"role": "user", "content": "chat me"}], "model": "demo/echo"}
        _, events = sse(url, "/chat", body)
        assert text_of(events) == "chat me"
