"""What the Starlette-based apps (floor, kit, naive FastAPI, peers) share."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from bench.upstream import TRACKER, Params


async def read_params(request: Request) -> Params:
    """The upstream parameters from the query string and the JSON body."""
    body = await request.body()
    data = await request.json() if body else {}
    return Params.parse(request.query_params, data)


async def stats(request: Request) -> Response:
    return JSONResponse(TRACKER.snapshot())


async def reset(request: Request) -> Response:
    TRACKER.reset()
    return JSONResponse({"ok": True})


STATS_ROUTES = [Route("/stats", stats, methods=["GET"]), Route("/reset", reset, methods=["POST"])]
