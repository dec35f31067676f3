"""The kit on Django: ``indox_integrations.django.sse_response(source, request)``.

``wsgi_app`` (gunicorn gthread) serves a sync view over the sync upstream;
``asgi_app`` (uvicorn) serves an ``async def`` view over the sync or the async
upstream.  The server command picks one; ``BENCH_DJANGO`` (``wsgi`` or
``asgi``) picks the matching view, as a project has one or the other.
"""

from __future__ import annotations

import json
import os

import django
from django.conf import settings

settings.configure(
    DEBUG=False,
    SECRET_KEY="bench-only",
    ALLOWED_HOSTS=["127.0.0.1", "localhost"],
    ROOT_URLCONF=__name__,
    MIDDLEWARE=[],
    INSTALLED_APPS=["indox_integrations.django"],
    LOGGING_CONFIG=None,
)
django.setup()

from django.core.asgi import get_asgi_application  # noqa: E402
from django.core.wsgi import get_wsgi_application  # noqa: E402
from django.http import HttpRequest, HttpResponse, JsonResponse, StreamingHttpResponse  # noqa: E402
from django.urls import path  # noqa: E402

from bench.upstream import HEARTBEAT, TRACKER, Params, chunks_for, sync_chunks  # noqa: E402
from indox_integrations.django import sse_response  # noqa: E402


def _params(request: HttpRequest) -> Params:
    return Params.parse(request.GET.dict(), json.loads(request.body or b"{}"))


def stream_wsgi(request: HttpRequest) -> HttpResponse | StreamingHttpResponse:
    if request.method != "POST":
        return JsonResponse({"error": "POST only"}, status=405)
    params = _params(request)
    return sse_response(sync_chunks(params), request, heartbeat=params.heartbeat or HEARTBEAT)


async def stream_asgi(request: HttpRequest) -> HttpResponse | StreamingHttpResponse:
    if request.method != "POST":
        return JsonResponse({"error": "POST only"}, status=405)
    params = _params(request)
    return sse_response(chunks_for(params), request, heartbeat=params.heartbeat or HEARTBEAT)


def stats(request: HttpRequest) -> HttpResponse:
    if request.method == "POST":
        TRACKER.reset()
        return JsonResponse({"ok": True})
    return JsonResponse(TRACKER.snapshot())


SERVER = os.environ.get("BENCH_DJANGO", "asgi")
urlpatterns = [
    path("stream", stream_asgi if SERVER == "asgi" else stream_wsgi),
    path("stats", stats),
    path("reset", stats),
]
wsgi_app = get_wsgi_application()
asgi_app = get_asgi_application()
