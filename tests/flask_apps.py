"""A Flask app for the real-server tests, in-process (Werkzeug) or under gunicorn.

The model name picks the upstream: ``test/<scenario>`` is a recording fake
upstream from ``upstreams.py``, ``demo/*`` the demo client (instant) and
``slow/*`` the demo client with a delay.  ``GET /_tracker`` reports what the
upstreams, the client and the callbacks saw; ``POST /_reset`` clears it.

    gunicorn "flask_apps:create_app()"
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Iterator
from typing import Any

from flask import Flask, current_app, g, request
from upstreams import TRICKY_TEXTS, Tracker, sync_upstream

from indox_integrations import DemoClient, Limits, StreamReport, call_client
from indox_integrations.clients import LLMRequest
from indox_integrations.flask import create_blueprint

HEARTBEAT = 0.3
IDLE_TIMEOUT = 1.0

SCENARIOS: dict[str, dict[str, Any]] = {
    "test/paced": {"chunks": 8, "delay": 0.15},
    "test/chatty": {"chunks": 2000, "delay": 0.01},
    "test/silent": {"chunks": 3, "first_delay": 5.0, "silent_step": 0.05},
    "test/stall": {"chunks": 3, "first_delay": 2.5},
    "test/fail": {"chunks": 10, "delay": 0.01, "fail_after": 3},
    "test/tricky": {"chunks": TRICKY_TEXTS, "delay": 0.0},
    "test/many": {"chunks": 20, "delay": 0.1},
}

TRACKER = Tracker()
_lock = threading.Lock()
_calls: list[str] = []
_records: list[dict[str, Any]] = []

_demo = DemoClient(delay=0.0)
_slow_demo = DemoClient(delay=0.05)


def client(request: LLMRequest) -> Iterator[Any]:
    """A plain callable client: dispatches on the model name."""
    model = request.model or "demo/echo"
    with _lock:
        _calls.append(model)
    if model in SCENARIOS:
        return sync_upstream(TRACKER, **SCENARIOS[model])
    family, _, name = model.partition("/")
    upstream = _slow_demo if family == "slow" else _demo
    return call_client(upstream, dataclasses.replace(request, model=f"demo/{name}"))  # type: ignore[no-any-return]


def _record(kind: str, value: Any) -> None:
    # Reads the request context, which only works if the stream runs inside it.
    entry = {"kind": kind, "path": request.path, "user": g.user, "app": current_app.name}
    if isinstance(value, StreamReport):
        entry["outcome"] = value.outcome
        entry["usage"] = value.usage
    else:
        entry["usage"] = value
    with _lock:
        _records.append(entry)


def create_app(heartbeat: float = HEARTBEAT, idle_timeout: float = IDLE_TIMEOUT) -> Flask:
    app = Flask("flask_test_app", static_folder=None)
    models = (*SCENARIOS, *DemoClient.models, "slow/story", "slow/echo")
    limits = Limits(max_body_bytes=4096, max_tokens=1000, models=models)
    common: dict[str, Any] = {
        "heartbeat": heartbeat,
        "idle_timeout": idle_timeout,
        "limits": limits,
    }
    app.register_blueprint(create_blueprint(client, usage="attach", **common))
    app.register_blueprint(
        create_blueprint(client, "skip", usage="skip", **common), url_prefix="/skip"
    )
    app.register_blueprint(
        create_blueprint(
            client,
            "cb",
            usage="skip",
            on_usage=lambda usage: _record("usage", usage),
            on_complete=lambda report: _record("complete", report),
            **common,
        ),
        url_prefix="/cb",
    )

    @app.before_request
    def who() -> None:
        g.user = request.headers.get("X-User", "anonymous")

    @app.get("/health")
    def health() -> dict[str, Any]:
        return {"ok": True}

    @app.get("/_tracker")
    def tracker() -> dict[str, Any]:
        with _lock:
            return {**TRACKER.snapshot(), "calls": list(_calls), "records": list(_records)}

    @app.post("/_reset")
    def reset() -> dict[str, Any]:
        TRACKER.reset()
        with _lock:
            _calls.clear()
            _records.clear()
        return {"ok": True}

    return app
