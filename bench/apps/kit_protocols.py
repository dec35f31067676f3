"""The kit's FastAPI router on another protocol's wire, mounted as the example apps mount it.

``BENCH_PROTOCOL`` picks the protocol: ``openai`` (``POST /v1/chat/completions``, a
``chat.completion.chunk`` per chunk) or ``ai-sdk`` (``POST /api/chat``, the AI SDK's UI
message stream, a ``text-delta`` per chunk).  Otherwise the same app as ``kit_fastapi``:
the harness sends the upstream parameters as the last message's text.
"""

from __future__ import annotations

import os

from fastapi import FastAPI

from bench.apps.common import STATS_ROUTES
from bench.apps.kit_fastapi import client
from bench.upstream import HEARTBEAT
from indox_integrations.fastapi import create_router

PREFIXES = {"openai": "/v1", "ai-sdk": "/api"}

protocol = os.environ.get("BENCH_PROTOCOL", "openai")
if protocol not in PREFIXES:
    raise RuntimeError(f"BENCH_PROTOCOL: expected one of {', '.join(PREFIXES)}, got {protocol!r}")

app = FastAPI()
app.router.routes.extend(STATS_ROUTES)
app.include_router(
    create_router(client, usage="skip", serve_static=False, heartbeat=HEARTBEAT, protocol=protocol),
    prefix=PREFIXES[protocol],
)
