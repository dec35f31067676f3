"""sse-starlette's ``EventSourceResponse`` (library defaults) over the sync or the
async upstream; a sync iterator runs in anyio's thread pool.  A request's
``heartbeat`` becomes its ``ping`` interval (default 15 s)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

from sse_starlette import EventSourceResponse
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from bench.apps.common import STATS_ROUTES, read_params
from bench.upstream import async_chunks, sync_chunks


async def stream(request: Request) -> Response:
    params = await read_params(request)
    if params.mode == "async":

        async def agenerate() -> AsyncIterator[str]:
            async for chunk in async_chunks(params):
                yield chunk
            yield "[DONE]"

        return EventSourceResponse(agenerate(), ping=params.heartbeat)

    def generate() -> Iterator[str]:
        yield from sync_chunks(params)
        yield "[DONE]"

    return EventSourceResponse(generate(), ping=params.heartbeat)


app = Starlette(routes=[Route("/stream", stream, methods=["POST"]), *STATS_ROUTES])
