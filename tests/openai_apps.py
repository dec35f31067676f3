"""Apps serving ``protocol="openai"`` under ``/v1`` for the real-server tests.

One client for every framework, a plain callable that dispatches on the
model: ``demo/*`` is the demo client (instant), ``test/slow`` and
``atest/slow`` are long recording upstreams (sync and async) for the abort
tests, ``test/pause`` is silent for a few heartbeats first, ``raise/now``
fails before streaming.  Keys: ``KEY``.  ``GET
/_tracker`` reports the upstreams and the calls, ``POST /_reset`` clears them.

    uvicorn --factory openai_apps:fastapi_app
    gunicorn "openai_apps:flask_app()"
    gunicorn openai_django.wsgi / uvicorn openai_django.asgi:application
"""

from __future__ import annotations

import threading
from typing import Any

from upstreams import Tracker, async_upstream, sync_upstream

from indox_integrations import DemoClient, Limits, call_client
from indox_integrations.clients import LLMRequest

KEY = "sk-indox-test-1"
KEYS = (KEY, "sk-indox-test-2")
MODELS = (*DemoClient.models, "test/slow", "atest/slow", "test/pause", "raise/now")
LIMITS = Limits(max_body_bytes=8192, max_tokens=1000, models=MODELS)
HEARTBEAT = 0.3

TRACKER = Tracker()
_lock = threading.Lock()
_calls: list[str] = []
_demo = DemoClient(delay=0.0)


class ProviderDown(ConnectionError):
    """What ``raise/now`` raises before any chunk."""


def client(request: LLMRequest) -> Any:
    model = request.model or ""
    with _lock:
        _calls.append(model)
    if model == "test/slow":
        return sync_upstream(TRACKER, chunks=400, delay=0.02)
    if model == "atest/slow":
        return async_upstream(TRACKER, chunks=400, delay=0.02)
    if model == "test/pause":
        # Silent for a few heartbeats before its first chunk.
        return sync_upstream(TRACKER, chunks=3, first_delay=4 * HEARTBEAT, delay=0.0)
    if model == "raise/now":
        raise ProviderDown("the provider is unreachable")
    return call_client(_demo, request)


def make_client() -> Any:
    """The Django ``INDOX_INTEGRATIONS["CLIENT"]`` factory."""
    return client


def tracker() -> dict[str, Any]:
    with _lock:
        return {**TRACKER.snapshot(), "calls": list(_calls)}


def reset() -> dict[str, bool]:
    TRACKER.reset()
    with _lock:
        _calls.clear()
    return {"ok": True}


def fastapi_app() -> Any:
    from fastapi import FastAPI

    from indox_integrations.fastapi import create_router

    app = FastAPI()
    router = create_router(
        client, protocol="openai", api_keys=KEYS, limits=LIMITS, heartbeat=HEARTBEAT
    )
    app.include_router(router, prefix="/v1")
    app.get("/_tracker")(tracker)
    app.post("/_reset")(reset)
    return app


def flask_app() -> Any:
    from flask import Flask

    from indox_integrations.flask import create_blueprint

    app = Flask("openai_test_app")
    blueprint = create_blueprint(
        client, "openai", protocol="openai", api_keys=KEYS, limits=LIMITS, heartbeat=HEARTBEAT
    )
    app.register_blueprint(blueprint, url_prefix="/v1")
    app.get("/_tracker")(tracker)
    app.post("/_reset")(reset)
    return app
