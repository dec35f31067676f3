"""The Flask code of indoxRouter's streaming guide, written afresh:
``Response(generate())`` over the sync upstream, served by gunicorn gthread."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from flask import Flask, Response, jsonify, request

from bench.upstream import TRACKER, Params, sync_chunks

app = Flask(__name__)


@app.route("/stream", methods=["POST"])
def stream_response() -> Response:
    data = request.json
    params = Params.parse(request.args, data or {})

    def generate() -> Iterator[str]:
        generator = sync_chunks(params)
        for chunk in generator:
            if isinstance(chunk, dict) and chunk.get("is_usage_info"):
                continue
            yield f"data: {chunk}\n\n"
        yield "data: [DONE]\n\n"

    return Response(generate(), mimetype="text/event-stream")


@app.get("/stats")
def stats() -> Any:
    return jsonify(TRACKER.snapshot())


@app.post("/reset")
def reset() -> Any:
    TRACKER.reset()
    return jsonify({"ok": True})
