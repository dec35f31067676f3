"""The floor: a raw Starlette ``StreamingResponse`` over pre-encoded bytes from an
async generator.  No adapter can do less per chunk; every ratio is taken to it.

``threadpool_app`` is plain Starlette with a sync generator (``StreamingResponse``
iterates it in anyio's thread pool, 40 threads): what one writes without a kit.
``fastapi_app`` is the floor's route on FastAPI: FastAPI's own cost per stream.
"""

from __future__ import annotations

from collections.abc import Iterator

from fastapi import FastAPI
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from bench.apps.common import STATS_ROUTES, read_params
from bench.upstream import encoded_chunks, sync_chunks


async def stream(request: Request) -> Response:
    params = await read_params(request)
    return StreamingResponse(encoded_chunks(params), media_type="text/event-stream")


async def threadpool_stream(request: Request) -> Response:
    params = await read_params(request)

    def generate() -> Iterator[bytes]:
        for chunk in sync_chunks(params):
            yield b"data: " + chunk.encode() + b"\n\n"
        yield b"data: [DONE]\n\n"

    return StreamingResponse(generate(), media_type="text/event-stream")


app = Starlette(routes=[Route("/stream", stream, methods=["POST"]), *STATS_ROUTES])
threadpool_app = Starlette(
    routes=[Route("/stream", threadpool_stream, methods=["POST"]), *STATS_ROUTES]
)

fastapi_app = FastAPI()
fastapi_app.router.routes.extend(STATS_ROUTES)
fastapi_app.add_api_route("/stream", stream, methods=["POST"])
