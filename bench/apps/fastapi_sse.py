"""FastAPI's own server-sent events (``fastapi.sse.EventSourceResponse``, 0.135+): a
path operation that yields, sync (run in anyio's thread pool: ``sync_app``) or
async (``async_app``).  Plain items are JSON-encoded: a chunk travels as
``data: "tok "``.  It pings every ``BENCH_HEARTBEAT`` seconds (default 15)."""

from __future__ import annotations

from collections.abc import AsyncIterable, Iterable
from typing import Annotated, Any

import fastapi.routing
from fastapi import Body, FastAPI, Request
from fastapi.sse import EventSourceResponse

from bench.apps.common import STATS_ROUTES
from bench.upstream import HEARTBEAT, Params, async_chunks, sync_chunks

# Its keep-alive interval is a module constant (15 s), read at each ping.
fastapi.routing._PING_INTERVAL = HEARTBEAT  # type: ignore[attr-defined]

sync_app = FastAPI()
sync_app.router.routes.extend(STATS_ROUTES)
async_app = FastAPI()
async_app.router.routes.extend(STATS_ROUTES)


@sync_app.post("/stream", response_class=EventSourceResponse)
def stream_sync(request: Request, body: Annotated[dict[str, Any], Body()]) -> Iterable[str]:
    yield from sync_chunks(Params.parse(request.query_params, body))
    yield "[DONE]"


@async_app.post("/stream", response_class=EventSourceResponse)
async def stream_async(
    request: Request, body: Annotated[dict[str, Any], Body()]
) -> AsyncIterable[str]:
    async for chunk in async_chunks(Params.parse(request.query_params, body)):
        yield chunk
    yield "[DONE]"
