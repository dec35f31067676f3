"""Apps for the frozen-reader tests: ``GET /flood`` streams 64 KiB chunks as fast as the
connection takes them, with a short ``send_timeout``; ``GET /_flood`` reports what happened.

    uvicorn stall_apps:fastapi_app    gunicorn stall_apps:flask_app
    DJANGO_SETTINGS_MODULE=stall_apps: stall_apps:django_asgi / stall_apps:django_wsgi
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

SEND_TIMEOUT = 0.5
CHUNK = "x" * 65536
CHUNKS = 4000  # 256 MiB: far more than any socket buffer holds

_lock = threading.Lock()
STATE: dict[str, Any] = {"pulled": 0, "closed": 0, "outcomes": []}


def flood() -> Iterator[str]:
    try:
        for _ in range(CHUNKS):
            with _lock:
                STATE["pulled"] += 1
            yield CHUNK
    finally:
        with _lock:
            STATE["closed"] += 1


def record(report: Any) -> None:
    with _lock:
        STATE["outcomes"].append(report.outcome)


def state() -> dict[str, Any]:
    with _lock:
        return {**STATE, "outcomes": list(STATE["outcomes"])}


OPTIONS: dict[str, Any] = {"send_timeout": SEND_TIMEOUT, "on_complete": record, "heartbeat": None}


def _fastapi() -> Any:
    from fastapi import FastAPI

    from indox_integrations.starlette import sse_response

    app = FastAPI()
    app.get("/flood")(lambda: sse_response(flood(), **OPTIONS))
    app.get("/_flood")(state)
    return app


def _flask() -> Any:
    from flask import Flask

    from indox_integrations.flask import sse_response

    app = Flask(__name__)
    app.get("/flood")(lambda: sse_response(flood(), **OPTIONS))
    app.get("/_flood")(state)
    return app


# Django: this module is its own settings and URLconf.
SECRET_KEY = "stall"
ALLOWED_HOSTS = ["127.0.0.1"]
ROOT_URLCONF = __name__
INSTALLED_APPS = ["indox_integrations.django"]
DATABASES: dict[str, Any] = {}
LOGGING_CONFIG = None


def _flood_view(request: Any) -> Any:
    from indox_integrations.django import sse_response

    return sse_response(flood(), request, **OPTIONS)


def _state_view(request: Any) -> Any:
    from django.http import JsonResponse

    return JsonResponse(state())


def __getattr__(name: str) -> Any:
    if name == "fastapi_app":
        return _fastapi()
    if name == "flask_app":
        return _flask()
    if name == "urlpatterns":
        from django.urls import path

        return [path("flood", _flood_view), path("_flood", _state_view)]
    if name in ("django_asgi", "django_wsgi"):
        import os

        os.environ.setdefault("DJANGO_SETTINGS_MODULE", __name__)
        if name == "django_asgi":
            from django.core.asgi import get_asgi_application

            return get_asgi_application()
        from django.core.wsgi import get_wsgi_application

        return get_wsgi_application()
    raise AttributeError(name)
