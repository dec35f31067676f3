"""The load generator's pieces: an async httpx client and a cheap event counter."""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import httpx

DONE_MARKERS = (b"[DONE]", b'"[DONE]"')


class EventCounter:
    """Counts complete ``data:`` events in a byte stream, fed piece by piece.

    Blocks end at a blank line (LF or CRLF: sse-starlette writes CRLF);
    comments (``: ping``) are not events and the end marker (``[DONE]``,
    JSON-quoted by FastAPI's own SSE) is noted but not counted.  With a
    ``marker``, only the blocks that hold it count (a protocol's token chunks,
    not its start and finish chunks).
    """

    def __init__(self, marker: bytes | None = None) -> None:
        self._marker = marker
        self._tail = b""
        self.events = 0
        self.done = False
        self.bytes = 0

    def feed(self, data: bytes) -> int:
        self.bytes += len(data)
        buf = self._tail + data
        hold = b""
        if b"\r" in buf:
            if buf.endswith(b"\r"):
                buf, hold = buf[:-1], b"\r"
            buf = buf.replace(b"\r\n", b"\n")
        blocks = buf.split(b"\n\n")
        self._tail = blocks.pop() + hold
        new = 0
        marker = self._marker
        for block in blocks:
            if block.startswith(b"data:") or b"\ndata:" in block:
                if block.endswith(DONE_MARKERS):
                    self.done = True
                elif marker is None or marker in block:
                    new += 1
        self.events += new
        return new


def body_for(params: dict[str, Any]) -> dict[str, Any]:
    """The JSON body: the parameters, plus the same as a prompt (for the kit's router,
    which validates ``{"prompt", ...}`` and hands only the prompt to the client)."""
    return {**params, "prompt": urlencode(params)}


def _openai_body(params: dict[str, Any]) -> dict[str, Any]:
    message = {"role": "user", "content": urlencode(params)}
    return {"model": "bench", "messages": [message], "stream": True}


def _ai_sdk_body(params: dict[str, Any]) -> dict[str, Any]:
    # What the AI SDK's DefaultChatTransport posts for a new user message.
    part = {"type": "text", "text": urlencode(params)}
    message = {"id": "bench-1", "role": "user", "parts": [part]}
    return {"id": "bench", "messages": [message], "trigger": "submit-message"}


@dataclass(frozen=True)
class Wire:
    """How a stream is asked for on one protocol, and which of its events are chunks."""

    path: str
    body: Callable[[dict[str, Any]], dict[str, Any]]
    """The JSON body for the upstream parameters (they travel as the prompt)."""
    marker: bytes | None
    """What a ``data:`` block holds when it carries an upstream chunk; ``None``: every one."""

    def counter(self) -> EventCounter:
        return EventCounter(self.marker)

    def stream(
        self, client: httpx.AsyncClient, params: dict[str, Any]
    ) -> contextlib.AbstractAsyncContextManager[httpx.Response]:
        """The streamed response to one request for ``params``."""
        return client.stream("POST", self.path, json=self.body(params))


WIRES: dict[str, Wire] = {
    "indox": Wire("/stream", body_for, None),
    # The role chunk and the finish chunk have no "content"; a token's text is
    # JSON-escaped, so it cannot hold the marker's quotes.
    "openai": Wire("/v1/chat/completions", _openai_body, b'"content":'),
    "ai-sdk": Wire("/api/chat", _ai_sdk_body, b'"text-delta"'),
}


def make_client(
    base_url: str, connections: int = 100, rcvbuf: int | None = None
) -> httpx.AsyncClient:
    """An async client with room for ``connections`` streams at once.

    ``rcvbuf`` pins the socket receive buffer, which also turns off the
    kernel's autotuning (up to 32 MiB here): a slow reader then stops taking
    data after that many bytes instead of after the kernel's maximum.
    """
    options: list[tuple[int, int, int]] = []
    if rcvbuf is not None:
        options.append((socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf))
    transport = httpx.AsyncHTTPTransport(
        limits=httpx.Limits(max_connections=connections + 10, max_keepalive_connections=10),
        socket_options=options or None,
    )
    return httpx.AsyncClient(
        base_url=base_url,
        transport=transport,
        timeout=httpx.Timeout(None, connect=60.0),
    )


async def stats(client: httpx.AsyncClient, url: str, timeout: float = 5.0) -> dict[str, Any] | None:
    """The upstream counters at ``url``, or None when they do not come in time."""
    try:
        response = await client.get(url, timeout=timeout)
        response.raise_for_status()
        data: dict[str, Any] = response.json()
        return data
    except (httpx.HTTPError, ValueError):
        return None


async def reset(client: httpx.AsyncClient) -> None:
    response = await client.post("/reset", timeout=10.0)
    response.raise_for_status()


async def read_stream(
    client: httpx.AsyncClient, wire: Wire, params: dict[str, Any], counter: EventCounter
) -> EventCounter:
    """Read one whole stream into ``counter`` (which keeps what came if this is cancelled)."""
    async with wire.stream(client, params) as response:
        check(response)
        async for piece in response.aiter_raw():
            counter.feed(piece)
    return counter


def check(response: httpx.Response) -> None:
    if response.status_code != 200:
        path = response.request.url.path
        raise RuntimeError(f"expected 200 from {path}, got {response.status_code}")


def now() -> float:
    return time.monotonic()
