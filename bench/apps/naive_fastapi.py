"""The FastAPI code of indoxRouter's streaming guide, written afresh: a sync generator
looped inside an ``async def`` and ``f"data: {chunk}\\n\\n"``.  Every ``next()``
runs on the event loop, so one slow upstream stalls every other request."""

from __future__ import annotations

from collections.abc import AsyncIterator

from fastapi import FastAPI, Request
from fastapi.responses import StreamingResponse

from bench.apps.common import STATS_ROUTES
from bench.upstream import Params, sync_chunks

app = FastAPI()
app.router.routes.extend(STATS_ROUTES)


@app.post("/stream")
async def stream_response(request: Request) -> StreamingResponse:
    data = await request.json()
    params = Params.parse(request.query_params, data)

    async def generate() -> AsyncIterator[str]:
        generator = sync_chunks(params)
        for chunk in generator:
            if isinstance(chunk, dict) and chunk.get("is_usage_info"):
                continue
            yield f"data: {chunk}\n\n"
        yield "data: [DONE]\n\n"

    return StreamingResponse(generate(), media_type="text/event-stream")
