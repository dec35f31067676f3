"""The Flask example: the demo page and the kit's blueprint, served by gunicorn.

Run it with ``python -m example_apps flask --port 8000``, or under your own
gunicorn: ``gunicorn "example_apps.flask_app:create_app()" --worker-class gthread
--threads 64``.
"""

from __future__ import annotations

from typing import Any

from flask import Flask, Response

from indox_integrations import Limits
from indox_integrations.flask import create_blueprint

from .common import Upstream, pick_upstream, render_page, resumable_options, serve_gunicorn


def create_app(upstream: Upstream | None = None) -> Flask:
    """The page at ``/``, ``POST /stream`` and ``POST /chat``, the JS helper under ``/static``,
    ``/v1/chat/completions`` and ``/v1/models`` (OpenAI-compatible), ``/api/chat`` (AI SDK)."""
    upstream = upstream or pick_upstream()
    # No app static folder: the blueprint, mounted at the root, serves /static.
    app = Flask(__name__, static_folder=None)
    limits = Limits(models=upstream.models, default_model=upstream.default_model)
    resumable = resumable_options()
    app.register_blueprint(
        create_blueprint(upstream.client, usage="attach", limits=limits, **resumable)
    )
    openai = create_blueprint(upstream.client, "openai", protocol="openai", limits=limits)
    app.register_blueprint(openai, url_prefix="/v1")
    ai_sdk = create_blueprint(
        upstream.client, "ai_sdk", protocol="ai-sdk", limits=limits, **resumable
    )
    app.register_blueprint(ai_sdk, url_prefix="/api")

    @app.get("/")
    def index() -> Response:
        return Response(render_page(upstream, "/static/indox-stream.js"), mimetype="text/html")

    @app.get("/health")
    def health() -> dict[str, Any]:
        return {"ok": True}

    return app


def main(host: str = "127.0.0.1", port: int = 8000, wsgi: bool = True, workers: int = 1) -> None:
    """Serve with gunicorn's threaded workers: ``workers`` processes, up to 64 open streams each.

    Flask is always served over WSGI; ``wsgi`` exists for the shared command line.
    """
    try:
        import gunicorn  # type: ignore[import-untyped]  # noqa: F401
    except ImportError:  # gunicorn runs on POSIX only
        print("gunicorn is not available: serving with Werkzeug's threaded server")
        create_app().run(host=host, port=port, threaded=True)
        return
    print(f"indox-integrations Flask example on http://{host}:{port}")
    serve_gunicorn(create_app, host, port, workers)
