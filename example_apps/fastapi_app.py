"""The FastAPI example: the demo page, ``POST /stream`` and ``POST /chat`` (usage attached),
``/v1/chat/completions`` and ``/v1/models`` (OpenAI-compatible), ``/api/chat`` (AI SDK).

Run it with ``python -m example_apps`` (http://127.0.0.1:8000) or
``uvicorn --factory example_apps.fastapi_app:create_app``.  With resumable streams
(``INDOX_REDIS_URL`` or ``--resumable``), ``/streams/{id}`` and ``/api/streams/{id}``
resume and cancel them, ``/api/chat/{id}/stream`` is the AI SDK's resume.
"""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.responses import HTMLResponse

from example_apps.common import Upstream, pick_upstream, render_page, resumable_options
from indox_integrations import Limits
from indox_integrations.fastapi import create_router


def create_app(upstream: Upstream | None = None) -> FastAPI:
    """The demo app on ``upstream`` (default: picked from the environment)."""
    upstream = upstream or pick_upstream()
    app = FastAPI(title="indox-integrations demo")
    limits = Limits(models=upstream.models, default_model=upstream.default_model)
    resumable = resumable_options()
    app.include_router(create_router(upstream.client, usage="attach", limits=limits, **resumable))
    app.include_router(
        create_router(upstream.client, protocol="openai", limits=limits), prefix="/v1"
    )
    app.include_router(
        create_router(upstream.client, protocol="ai-sdk", limits=limits, **resumable),
        prefix="/api",
    )
    page = render_page(upstream, app.url_path_for("indox_static_indox_stream_js"))

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def index() -> str:
        return page

    @app.get("/health")
    async def health() -> dict[str, bool]:
        return {"ok": True}

    return app


def main(host: str = "127.0.0.1", port: int = 8000, wsgi: bool = False, workers: int = 1) -> None:
    """Serve the demo with uvicorn (``workers`` processes)."""
    import uvicorn

    if wsgi:
        raise SystemExit("--wsgi is for the Django example; FastAPI runs on uvicorn (ASGI)")
    if workers > 1:
        # Each worker process imports the app itself.
        target = "example_apps.fastapi_app:create_app"
        uvicorn.run(target, host=host, port=port, workers=workers, factory=True)
        return
    uvicorn.run(create_app(), host=host, port=port)
