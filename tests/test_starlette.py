"""Unit tests for indox_integrations.starlette: headers, wire, closing on disconnect."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.testclient import TestClient
from starlette.types import Message
from upstreams import Tracker, async_upstream, sync_upstream

from indox_integrations import CompletionRequest, StreamReport
from indox_integrations.clients import acall_client
from indox_integrations.starlette import SSEResponse, sse_response


def app_for(response: Any) -> Starlette:
    async def endpoint(request: Request) -> Response:
        return response()  # type: ignore[no-any-return]

    return Starlette(routes=[Route("/", endpoint, methods=["GET", "POST"])])


def test_headers_and_wire() -> None:
    chunks = ["Hello", " world\nagain", {"is_usage_info": True, "usage": {"tokens_total": 3}}]
    app = app_for(lambda: sse_response(iter(chunks), usage="attach"))
    response = TestClient(app).get("/")
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/event-stream; charset=utf-8"
    assert response.headers["cache-control"] == "no-cache"
    assert response.headers["x-accel-buffering"] == "no"
    assert "content-length" not in response.headers
    assert "connection" not in response.headers
    assert response.text.startswith(": stream open\n\ndata: Hello\n\ndata:  world\ndata: again\n\n")
    assert "event: usage\ndata: {" in response.text
    assert response.text.endswith("event: done\ndata: [DONE]\n\n")


def test_extra_headers_and_status() -> None:
    app = app_for(lambda: SSEResponse(iter(["x"]), status_code=201, headers={"X-Trace": "7"}))
    response = TestClient(app).get("/")
    assert response.status_code == 201
    assert response.headers["x-trace"] == "7"
    assert response.headers["content-type"] == "text/event-stream; charset=utf-8"


def test_usage_skipped_by_default() -> None:
    chunks = ["a", {"is_usage_info": True, "usage": {"tokens_total": 3}}]
    text = TestClient(app_for(lambda: sse_response(iter(chunks)))).get("/").text
    assert "event: usage" not in text
    assert text.endswith("data: a\n\nevent: done\ndata: [DONE]\n\n")


def test_bad_options_raise_at_once() -> None:
    with pytest.raises(ValueError, match="usage must be 'skip' or 'attach'"):
        sse_response(iter([]), usage="sometimes")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="heartbeat"):
        sse_response(iter([]), heartbeat=0)


class StuckSend:
    """An ASGI ``send`` that hangs forever from the ``hang_at``-th body message on,
    as uvicorn's does while the socket is not writable; ``receive`` then reports
    the disconnect, so Starlette cancels the stream while it waits in ``send``."""

    def __init__(self, hang_at: int, raise_oserror: bool = False) -> None:
        self.hang_at = hang_at
        self.raise_oserror = raise_oserror
        self.bodies: list[bytes] = []
        self.stuck = asyncio.Event()

    async def send(self, message: Message) -> None:
        if message["type"] != "http.response.body":
            return
        if len(self.bodies) >= self.hang_at:
            self.stuck.set()
            if self.raise_oserror:
                raise OSError("connection lost")
            await asyncio.Event().wait()
        self.bodies.append(message["body"])

    async def receive(self) -> Message:
        await self.stuck.wait()
        return {"type": "http.disconnect"}


def scope(spec_version: str) -> dict[str, Any]:
    return {"type": "http", "asgi": {"version": "3.0", "spec_version": spec_version}}


async def closed_while_serving(tracker: Tracker, timeout: float = 2.0) -> bool:
    """Whether the upstream gets closed while the loop still runs (when the loop
    ends, asyncio closes every suspended async generator anyway)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if tracker.snapshot()["closed"]:
            return True
        await asyncio.sleep(0.01)
    return False


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_cancelled_in_send_closes_the_upstream(kind: str) -> None:
    tracker = Tracker()
    reports: list[StreamReport] = []
    upstream = sync_upstream if kind == "sync" else async_upstream
    response = SSEResponse(
        upstream(tracker, chunks=200, delay=0.01), heartbeat=None, on_complete=reports.append
    )
    fake = StuckSend(hang_at=3)

    async def run() -> bool:
        await asyncio.wait_for(response(scope("2.3"), fake.receive, fake.send), 5)
        return await closed_while_serving(tracker)

    started = time.monotonic()
    assert asyncio.run(run())
    assert tracker.closed[0] - started < 1.5  # the upstream would have run 2 s
    assert tracker.completed == 0
    assert [r.outcome for r in reports] == ["client_disconnected"]
    pulled = tracker.pulled
    time.sleep(0.1)
    assert tracker.pulled == pulled


def test_send_raising_closes_the_upstream_asgi_2_4() -> None:
    tracker = Tracker()
    response = SSEResponse(sync_upstream(tracker, chunks=200, delay=0.01), heartbeat=None)
    fake = StuckSend(hang_at=2, raise_oserror=True)

    async def run() -> bool:
        with pytest.raises(ClientDisconnect):
            await response(scope("2.4"), fake.receive, fake.send)
        return await closed_while_serving(tracker)

    assert asyncio.run(run())
    assert tracker.completed == 0


def test_acall_client_runs_a_sync_client_off_the_loop() -> None:
    seen: list[str] = []

    def client(request: CompletionRequest) -> Any:
        seen.append(threading.current_thread().name)
        time.sleep(0.3)
        return iter([request.prompt])

    async def run() -> tuple[Any, int]:
        ticks = 0

        async def tick() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0.01)
                ticks += 1

        ticker = asyncio.ensure_future(tick())
        source = await acall_client(client, CompletionRequest(prompt="hi"))
        ticker.cancel()
        return source, ticks

    source, ticks = asyncio.run(run())
    assert list(source) == ["hi"]
    assert seen == ["indox-client-call"]
    assert ticks >= 10  # the loop kept running during the 0.3 s call


def test_acall_client_awaits_async_clients_and_raises() -> None:
    class AsyncClient:
        async def completion(self, prompt: str, **options: Any) -> Any:
            assert options["stream"] is True and options["return_generator"] is True
            return async_upstream(Tracker(), chunks=[prompt], delay=0)

    class Broken:
        def completion(self, prompt: str, **options: Any) -> Any:
            raise LookupError("no such model")

    async def run() -> list[Any]:
        source = await acall_client(AsyncClient(), CompletionRequest(prompt="hey"))
        with pytest.raises(LookupError, match="no such model"):
            await acall_client(Broken(), CompletionRequest(prompt="x"))
        return [chunk async for chunk in source]

    assert asyncio.run(run()) == ["hey"]
