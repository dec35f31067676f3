"""The kit on Flask: ``indox_integrations.flask.sse_response`` over the sync upstream,
served by gunicorn gthread."""

from __future__ import annotations

from typing import Any

from flask import Flask, Response, jsonify, request

from bench.upstream import HEARTBEAT, TRACKER, Params, sync_chunks
from indox_integrations.flask import sse_response

app = Flask(__name__)


@app.post("/stream")
def stream() -> Response:
    params = Params.parse(request.args, request.get_json(silent=True) or {})
    return sse_response(sync_chunks(params), heartbeat=params.heartbeat or HEARTBEAT)


@app.get("/stats")
def stats() -> Any:
    return jsonify(TRACKER.snapshot())


@app.post("/reset")
def reset() -> Any:
    TRACKER.reset()
    return jsonify({"ok": True})
