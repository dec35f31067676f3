"""The kit on plain Starlette: ``indox_integrations.starlette.sse_response`` over the
sync or the async upstream (a sync one runs in a thread of its own)."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from bench.apps.common import STATS_ROUTES, read_params
from bench.upstream import HEARTBEAT, chunks_for
from indox_integrations.starlette import sse_response


async def stream(request: Request) -> Response:
    params = await read_params(request)
    return sse_response(chunks_for(params), heartbeat=params.heartbeat or HEARTBEAT)


app = Starlette(routes=[Route("/stream", stream, methods=["POST"]), *STATS_ROUTES])
