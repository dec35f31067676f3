"""The FastAPI router and the example app through a real uvicorn on 127.0.0.1,
read by httpx / httpx-sse."""

from __future__ import annotations

import asyncio
import json
import logging
import shutil
import sys
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fastapi_apps import CLIENT, GZIP_DEFAULT, GZIP_EVERYTHING, create_app
from httpx_sse import ServerSentEvent, aconnect_sse, connect_sse
from servers import collect, free_port, process_server, text_of, uvicorn_argv, uvicorn_thread
from upstreams import TRICKY_TEXTS, Tracker

from indox_integrations import Limits


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    with uvicorn_thread(create_app()) as url:
        yield url


@pytest.fixture(scope="module")
def quick_server() -> Iterator[str]:
    """Heartbeats every 0.2 s, idle timeout after 1 s."""
    with uvicorn_thread(create_app(heartbeat=0.2, idle_timeout=1.0)) as url:
        yield url


@pytest.fixture(scope="module")
def heartbeat_server() -> Iterator[str]:
    """Heartbeats every 0.2 s, an idle timeout far beyond the test's silence."""
    with uvicorn_thread(create_app(heartbeat=0.2, idle_timeout=10.0)) as url:
        yield url


@pytest.fixture
def tracker() -> Tracker:
    return CLIENT.reset()


def body(path: str, model: str, **options: Any) -> dict[str, Any]:
    text = json.dumps(options)
    if path == "/chat":
        return {"messages": [{"role": "user", "content": text}], "model": model}
    return {"prompt": text, "model": model}


def timed_events(
    url: str, path: str, payload: dict[str, Any], tracker: Tracker
) -> list[tuple[float, dict[str, Any], ServerSentEvent]]:
    """Every event with its arrival time and what the upstream had done by then."""
    out = []
    with (
        httpx.Client(base_url=url, timeout=30) as client,
        connect_sse(client, "POST", path, json=payload) as source,
    ):
        assert source.response.status_code == 200
        for event in source.iter_sse():
            out.append((time.monotonic(), tracker.snapshot(), event))
    return out


@pytest.mark.parametrize("path", ["/stream", "/chat"])
@pytest.mark.parametrize("kind", ["sync", "async"])
def test_text_arrives_event_by_event(server: str, tracker: Tracker, path: str, kind: str) -> None:
    chunks, delay = 6, 0.15
    got = timed_events(server, path, body(path, kind, chunks=chunks, delay=delay), tracker)
    messages = [(at, seen, e) for at, seen, e in got if e.event == "message"]
    assert [e.data for _, _, e in messages] == [f"tok{i} " for i in range(chunks)]
    assert got[-1][2].event == "done" and got[-1][2].data == "[DONE]"
    first_at, first_seen, _ = messages[0]
    assert first_seen["completed"] == 0 and first_seen["pulled"] < chunks
    # Spread out as the upstream produced them, not delivered in one lump at the end.
    assert messages[-1][0] - first_at > 0.5 * (chunks - 1) * delay
    assert tracker.snapshot()["completed"] == 1


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_tricky_texts_survive_from_the_upstream(server: str, tracker: Tracker, kind: str) -> None:
    response, events = collect(server, "/stream", body("/stream", kind, tricky=True, delay=0))
    assert response.status_code == 200
    assert [e.data for e in events if e.event == "message"] == TRICKY_TEXTS


@pytest.mark.parametrize("path", ["/stream", "/chat"])
def test_tricky_texts_survive_the_request_and_demo_echo(server: str, path: str) -> None:
    # The 1 MB text is left to the test above: echoed in 1-8 character chunks it
    # would only time the client's parser.
    for text in TRICKY_TEXTS[:-1]:
        payload: dict[str, Any] = (
            {"messages": [{"role": "user", "content": text}], "model": "demo/echo"}
            if path == "/chat"
            else {"prompt": text, "model": "demo/echo"}
        )
        response, events = collect(server, path, payload)
        assert response.status_code == 200
        assert text_of(events) == text, text
        assert [e.event for e in events[-2:]] == ["usage", "done"]


async def _start_streams(
    url: str, count: int, payload: dict[str, Any]
) -> tuple[httpx.AsyncClient, list[asyncio.Task[list[str]]]]:
    client = httpx.AsyncClient(
        base_url=url, timeout=60, limits=httpx.Limits(max_connections=count + 10)
    )

    async def one() -> list[str]:
        async with aconnect_sse(client, "POST", "/stream", json=payload) as source:
            assert source.response.status_code == 200
            return [e.event async for e in source.aiter_sse()]

    return client, [asyncio.ensure_future(one()) for _ in range(count)]


async def _wait(condition: Any, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.02)


def test_loop_never_blocked_by_50_slow_sync_streams(server: str, tracker: Tracker) -> None:
    async def run() -> None:
        payload = body("/stream", "sync", chunks=4, delay=0.7)
        client, streams = await _start_streams(server, 50, payload)
        async with client:
            await _wait(lambda: tracker.snapshot()["started"] == 50)
            started = time.monotonic()
            health = await client.get("/health")
            answered = time.monotonic() - started
            assert health.json() == {"ok": True}
            assert tracker.snapshot()["completed"] == 0
            assert answered < 1.0  # each stream runs for 2.1 s
            results = await asyncio.gather(*streams)
        assert all(events[-1] == "done" for events in results)

    asyncio.run(run())


def test_loop_never_blocked_by_a_slow_sync_client_call(server: str, tracker: Tracker) -> None:
    async def run() -> None:
        payload = body("/stream", "slow-call", call_delay=1.5, chunks=1, delay=0)
        client, streams = await _start_streams(server, 20, payload)
        async with client:
            await _wait(lambda: CLIENT.calls == 20)
            started = time.monotonic()
            assert (await client.get("/health")).status_code == 200
            assert time.monotonic() - started < 1.0  # each call takes 1.5 s
            assert tracker.snapshot()["started"] == 0  # all still inside the call
            results = await asyncio.gather(*streams)
        assert all(events[-1] == "done" for events in results)

    asyncio.run(run())


def test_100_sync_streams_are_active_at_once(server: str, tracker: Tracker) -> None:
    async def run() -> None:
        payload = body("/stream", "sync", chunks=2, first_delay=2.5, delay=0.1)
        client, streams = await _start_streams(server, 100, payload)
        async with client:
            results = await asyncio.gather(*streams)
        assert all(events.count("message") == 2 for events in results)

    asyncio.run(run())
    # anyio's thread pool would have run at most 40 of them at a time.
    assert tracker.max_active == 100
    assert tracker.completed == 100


def _read_then_leave(url: str, payload: dict[str, Any], tracker: Tracker) -> tuple[float, int]:
    with (
        httpx.Client(base_url=url, timeout=30) as client,
        connect_sse(client, "POST", "/stream", json=payload) as source,
    ):
        messages = 0
        for event in source.iter_sse():
            messages += event.event == "message"
            if messages == 3:
                break
        pulled = tracker.snapshot()["pulled"]
        left = time.monotonic()
    return left, pulled


def _wait_closed(tracker: Tracker, timeout: float = 5.0) -> float:
    deadline = time.monotonic() + timeout
    while not tracker.snapshot()["closed"]:
        assert time.monotonic() < deadline, "the upstream was never closed"
        time.sleep(0.01)
    return tracker.closed[0]


@pytest.mark.parametrize(
    ("kind", "swallow"),
    [("sync", False), ("async", False), ("async", True)],
    ids=["sync", "async", "async-swallowing-the-cancel"],
)
def test_client_leaving_closes_the_upstream(
    server: str, tracker: Tracker, kind: str, swallow: bool
) -> None:
    """An async upstream that drops the feed's cancel is closed too, at its next chunk."""
    options = {"swallow_cancel": True} if swallow else {}
    payload = body("/stream", kind, chunks=100, delay=0.05, **options)
    left, pulled = _read_then_leave(server, payload, tracker)
    closed = _wait_closed(tracker)
    at_close = tracker.snapshot()["pulled"]
    assert closed - left < 1.0  # the upstream had 4.8 s to go
    assert tracker.completed == 0
    time.sleep(0.3)
    # Nothing pulled once closed; up to the close, a second's worth at most.
    assert tracker.pulled == at_close <= pulled + 20


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_stalled_client_leaving_closes_a_fast_upstream(
    server: str, tracker: Tracker, kind: str
) -> None:
    """The client stops reading (the server's writes back up), then leaves: the
    upstream, which always has a chunk ready, is closed at once and not drained."""
    payload = body("/stream", kind, chunks=3000, chunk_size=65536, delay=0)
    with (
        httpx.Client(base_url=server, timeout=30) as client,
        client.stream("POST", "/stream", json=payload) as response,
    ):
        raw = response.iter_raw()
        next(raw)
        next(raw)
        time.sleep(0.5)
        pulled = tracker.snapshot()["pulled"]
        assert pulled < 3000
        left = time.monotonic()
    closed = _wait_closed(tracker)
    assert closed - left < 1.0
    assert tracker.completed == 0
    # Back-pressure holds it to the chunks already buffered (64 per feed).
    assert tracker.pulled - pulled <= 130


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_upstream_error_mid_stream(
    server: str, tracker: Tracker, kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "indox_integrations")
    payload = body("/stream", kind, chunks=10, delay=0.01, fail_after=3)
    with httpx.Client(base_url=server, timeout=30) as client:
        response = client.post("/stream", json=payload)
    assert response.status_code == 200
    wire = response.text
    assert "sk-test-123" not in wire and "Traceback" not in wire
    _, events = collect(server, "/stream", payload)
    assert [e.event for e in events] == ["message"] * 3 + ["error", "done"]
    error = json.loads(events[3].data)
    assert error["type"] == "upstream_error"
    assert "RuntimeError" in error["message"]
    logged = [r for r in caplog.records if r.exc_info and r.name == "indox_integrations"]
    assert logged and "sk-test-123" in str(logged[0].exc_info[1])  # type: ignore[index]
    with httpx.Client(base_url=server, timeout=30) as client:
        assert client.get("/health").json() == {"ok": True}
    _, events = collect(server, "/stream", body("/stream", kind, chunks=2, delay=0))
    assert text_of(events) == "tok0 tok1 "


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_heartbeats_while_the_upstream_is_silent(
    heartbeat_server: str, tracker: Tracker, kind: str
) -> None:
    payload = body("/stream", kind, chunks=2, first_delay=1.5, delay=0.1)
    arrivals: list[tuple[float, bytes]] = []
    started = time.monotonic()
    with (
        httpx.Client(base_url=heartbeat_server, timeout=30) as client,
        client.stream("POST", "/stream", json=payload) as response,
    ):
        for line in response.iter_lines():
            arrivals.append((time.monotonic() - started, line.encode()))
    lines = [line for _, line in arrivals]
    first_data = lines.index(b"data: tok0 ")
    pings = [at for at, line in arrivals[:first_data] if line == b": ping"]
    assert len(pings) >= 3
    assert pings[0] < 0.6  # the first one long before the first token at 1.5 s
    assert b"data: tok1 " in lines and b"data: [DONE]" in lines


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_idle_timeout_ends_a_stalled_upstream(
    quick_server: str, tracker: Tracker, kind: str
) -> None:
    started = time.monotonic()
    _, events = collect(quick_server, "/stream", body("/stream", kind, chunks=2, first_delay=4.0))
    assert time.monotonic() - started < 3.0
    assert [e.event for e in events] == ["error", "done"]
    assert json.loads(events[0].data) == {
        "type": "timeout",
        "message": "no data from the model for 1 s",
    }


@pytest.mark.parametrize(
    ("excluded", "encoding"), [(GZIP_DEFAULT, None), (GZIP_EVERYTHING, "gzip")]
)
def test_gzip_middleware_keeps_the_stream_incremental(
    tracker: Tracker, excluded: tuple[str, ...], encoding: str | None
) -> None:
    """Starlette's GZipMiddleware skips text/event-stream by default; forced to
    compress, it flushes every body message, so the stream stays incremental."""
    with uvicorn_thread(create_app(gzip=excluded)) as url:
        assert httpx.get(f"{url}/health").json() == {"ok": True}
        chunks, delay = 5, 0.3
        payload = body("/stream", "sync", chunks=chunks, delay=delay)
        out = []
        with (
            httpx.Client(base_url=url, timeout=30) as client,
            connect_sse(
                client, "POST", "/stream", json=payload, headers={"Accept-Encoding": "gzip"}
            ) as source,
        ):
            assert source.response.headers.get("content-encoding") == encoding
            for event in source.iter_sse():
                out.append((time.monotonic(), tracker.snapshot(), event))
    messages = [(at, seen) for at, seen, e in out if e.event == "message"]
    assert len(messages) == chunks
    assert messages[0][1]["completed"] == 0 and messages[0][1]["pulled"] <= 2
    assert messages[-1][0] - messages[0][0] > 0.5 * (chunks - 1) * delay


JSON = {"Content-Type": "application/json"}
TEXT = {"Content-Type": "text/plain"}
TOO_BIG = [b'{"prompt": "', b"x" * (1 << 20), b'"}']

BAD_REQUESTS: list[tuple[str, str, dict[str, Any], int]] = [
    ("invalid JSON", "POST", {"content": b'{"prompt": "hi",', "headers": JSON}, 422),
    ("not an object", "POST", {"json": ["hi"]}, 422),
    ("wrong type", "POST", {"json": {"prompt": ["hi"]}}, 422),
    ("missing prompt", "POST", {"json": {"model": "sync"}}, 422),
    ("temperature out of range", "POST", {"json": {"prompt": "{}", "temperature": 7}}, 422),
    ("max_tokens out of range", "POST", {"json": {"prompt": "{}", "max_tokens": 10**9}}, 422),
    ("blank prompt", "POST", {"json": {"prompt": "  \n "}}, 400),
    ("oversized, declared", "POST", {"content": b"".join(TOO_BIG), "headers": JSON}, 413),
    ("oversized, chunked", "POST", {"content": TOO_BIG, "headers": JSON}, 413),
    ("form body", "POST", {"data": {"prompt": "hi"}}, 415),
    ("text body", "POST", {"content": b'{"prompt": "hi"}', "headers": TEXT}, 415),
    ("wrong method", "GET", {}, 405),
]  # fmt: skip


@pytest.mark.parametrize(
    ("method", "kwargs", "status"),
    [case[1:] for case in BAD_REQUESTS],
    ids=[case[0] for case in BAD_REQUESTS],
)
def test_bad_requests_get_a_json_4xx_and_never_reach_the_client(
    server: str, tracker: Tracker, method: str, kwargs: dict[str, Any], status: int
) -> None:
    with httpx.Client(base_url=server, timeout=30) as client:
        response = client.request(method, "/stream", **kwargs)
        assert response.status_code == status
        assert response.headers["content-type"] == "application/json"
        assert response.json()
        assert CLIENT.calls == 0
        assert client.get("/health").json() == {"ok": True}
    _, events = collect(server, "/stream", body("/stream", "sync", chunks=1, delay=0))
    assert [e.event for e in events] == ["message", "finish", "done"]
    assert CLIENT.calls == 1


@pytest.mark.parametrize(
    ("model", "status", "message"),
    [
        ("raise/ValueError", 400, "ValueError: the client refused"),
        ("raise/RateLimitError", 429, "RateLimitError: the client refused"),
        ("raise/AuthenticationError", 502, "AuthenticationError: the client refused"),
        ("demo/unknown", 400, "ValueError: unknown model 'demo/unknown'"),
    ],
)
def test_client_failing_before_the_stream(
    server: str, tracker: Tracker, model: str, status: int, message: str
) -> None:
    with httpx.Client(base_url=server, timeout=30) as client:
        response = client.post("/chat", json=body("/chat", model))
        assert response.status_code == status
        assert response.headers["content-type"] == "application/json"
        error = response.json()["error"]
        assert error["type"] == "upstream_error"
        assert error["message"].startswith(message)
        assert CLIENT.calls == 1 and tracker.started == 0
        assert client.get("/health").json() == {"ok": True}


def test_async_client_call(server: str, tracker: Tracker) -> None:
    _, events = collect(server, "/chat", body("/chat", "async-call", chunks=3, delay=0.01))
    assert text_of(events) == "tok0 tok1 tok2 "
    assert CLIENT.call_threads == ["indox-client-call"]


def test_static_helper_is_served(server: str) -> None:
    with httpx.Client(base_url=server, timeout=30) as client:
        for name in ("indox-stream.js", "indox-stream.global.js"):
            response = client.get(f"/static/{name}")
            assert response.status_code == 200
            assert response.headers["content-type"] == "text/javascript; charset=utf-8"
            assert b"streamCompletion" in response.content


def test_real_indoxrouter_client_end_to_end(tracker: Tracker) -> None:
    """The real ``indoxrouter`` client against a local fake of its API: its
    blocking call runs off the loop, and leaving closes its HTTP stream."""
    indoxrouter = pytest.importorskip("indoxrouter")
    from fake_indoxrouter import FakeIndoxRouter, Script
    from fastapi import FastAPI

    from indox_integrations.fastapi import create_router

    with FakeIndoxRouter() as fake:
        fake.scripts["fake/slow"] = Script.words("one two three four five six seven", delay=0.2)
        fake.scripts["fake/fast"] = Script.words("Hello, real client!")
        client = indoxrouter.Client(api_key="test", base_url=fake.url)
        app = FastAPI()
        app.include_router(create_router(client, limits=Limits(default_model="fake/fast")))
        with uvicorn_thread(app) as url:
            _, events = collect(url, "/stream", {"prompt": "hi"})
            assert text_of(events) == "Hello, real client!"
            assert [e.event for e in events[-2:]] == ["usage", "done"]
            with httpx.Client(base_url=url, timeout=30) as http, connect_sse(
                http, "POST", "/chat",
                json={"messages": [{"role": "user", "content": "hi"}], "model": "fake/slow"},
            ) as source:  # fmt: skip
                messages = 0
                for event in source.iter_sse():
                    messages += event.event == "message"
                    if messages == 2:
                        break
            record = fake.wait_ended(2)[-1]
            assert record.outcome == "client_closed"
            assert record.sent < 7


def test_python_m_example_apps_serves_the_demo() -> None:
    port = free_port()
    env = {"INDOX_ROUTER_API_KEY": "", "OPENAI_API_KEY": "", "INDOX_DEMO_DELAY": "0.001"}
    argv = [sys.executable, "-m", "example_apps", "--port", str(port)]
    with process_server(argv, port, env=env) as url, httpx.Client(base_url=url, timeout=30) as http:
        page = http.get("/")
        assert page.status_code == 200
        assert page.headers["content-type"].startswith("text/html")
        for marker in ('id="output"', 'id="usage"', 'id="error"', 'id="status"', 'id="upstream"'):
            assert marker in page.text
        assert "demo (offline)" in page.text and "/static/indox-stream.js" in page.text
        assert "{{" not in page.text
        assert http.get("/health").json() == {"ok": True}
        js = http.get("/static/indox-stream.js")
        assert js.headers["content-type"] == "text/javascript; charset=utf-8"
        _, events = collect(url, "/stream", {"prompt": "ping pong", "model": "demo/echo"})
        assert text_of(events) == "ping pong"
        usage = json.loads(events[-2].data)
        assert events[-2].event == "usage" and usage["model"] == "demo/echo"
        chat = {"messages": [{"role": "user", "content": "hello"}], "model": "demo/echo"}
        assert text_of(collect(url, "/chat", chat)[1]) == "hello"
        refused = http.post("/stream", json={"prompt": "x", "model": "gpt-4"})
        assert refused.status_code == 422  # only the demo models are offered


def test_uvicorn_cli_factory() -> None:
    port = free_port()
    argv = uvicorn_argv("example_apps.fastapi_app:create_app", port, "--factory")
    env = {"INDOX_ROUTER_API_KEY": "", "OPENAI_API_KEY": "", "INDOX_DEMO_DELAY": "0"}
    with process_server(argv, port, env=env) as url:
        assert httpx.get(f"{url}/health").json() == {"ok": True}


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.browser
@pytest.mark.skipif(CHROMIUM is None, reason="needs Chromium")
def test_demo_page_in_a_browser() -> None:
    from playwright.sync_api import sync_playwright

    from example_apps.common import pick_upstream
    from example_apps.fastapi_app import create_app as create_demo

    demo = create_demo(pick_upstream({"INDOX_DEMO_DELAY": "0.02"}))
    text = "<b>not bold</b> & 🙂\n  indented"
    with uvicorn_thread(demo) as url, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 390, "height": 844})
        failures: list[str] = []
        page.on("pageerror", lambda error: failures.append(str(error)))
        page.goto(url)
        page.wait_for_selector("#send:not([disabled])")
        options = page.eval_on_selector_all("#model option", "els => els.map(e => e.value)")
        assert options == ["demo/story", "demo/echo", "demo/fail", "demo/think", "demo/tools"]
        page.select_option("#model", "demo/echo")
        page.fill("#prompt", text)
        page.click("#send")
        page.wait_for_function("document.querySelector('#status').textContent.startsWith('Done')")
        assert page.text_content("#output") == text
        assert page.locator("#output b").count() == 0
        assert "Total tokens" in page.inner_text("#usage")
        page.select_option("#model", "demo/story")
        page.click("#send")
        page.wait_for_function("document.querySelector('#output').textContent.length > 30")
        page.click("#stop")
        page.wait_for_function(
            "document.querySelector('#status').textContent.startsWith('Stopped')"
        )
        page.select_option("#model", "demo/fail")
        page.click("#send")
        page.wait_for_selector("#error:not([hidden])")
        assert "upstream_error" in page.text_content("#error")  # type: ignore[operator]
        browser.close()
        assert failures == []
