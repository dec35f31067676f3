"""The kit on FastAPI as an app would mount it: ``create_router(client)``, with a
callable client.  The router validates ``{"prompt", ...}`` and passes only the
prompt on, so the harness sends the upstream parameters as the prompt, in query
string form (``chunks=20&delay=0.05&mode=sync``); on another protocol's wire
(``kit_protocols``) they are the last message's content.  The router's options are fixed
when it is made, so its heartbeat comes from ``BENCH_HEARTBEAT``.

The client is sync, as indoxRouter's and ``OpenAI``'s are (the router calls it in a
thread, since its call opens the HTTP request), unless ``BENCH_CLIENT=async``: then it
is ``async def``, as ``AsyncOpenAI``'s ``create`` is, and the router awaits it on the
loop.  The async-upstream contenders run with the async client."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from urllib.parse import parse_qsl

from fastapi import FastAPI

from bench.apps.common import STATS_ROUTES
from bench.upstream import HEARTBEAT, Params, chunks_for
from indox_integrations.clients import LLMRequest
from indox_integrations.fastapi import create_router
from indox_integrations.requests import ChatRequest


def sync_client(request: LLMRequest) -> Iterator[str] | AsyncIterator[str]:
    prompt = request.messages[-1]["content"] if isinstance(request, ChatRequest) else request.prompt
    return chunks_for(Params.parse(dict(parse_qsl(prompt))))


async def async_client(request: LLMRequest) -> Iterator[str] | AsyncIterator[str]:
    return sync_client(request)


client = async_client if os.environ.get("BENCH_CLIENT") == "async" else sync_client


app = FastAPI()
app.router.routes.extend(STATS_ROUTES)
app.include_router(create_router(client, usage="skip", serve_static=False, heartbeat=HEARTBEAT))
