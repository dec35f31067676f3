"""Plain Django, as the guide's pattern is usually ported: ``StreamingHttpResponse``
over a sync generator, served under ASGI by uvicorn.  Django consumes a sync
iterator into a list before sending anything (``sync_to_async(list)``), in its
one thread-sensitive executor thread.

With ``BENCH_DJANGO=floor`` the view is instead Django's own floor under ASGI: an
``async def`` view whose ``StreamingHttpResponse`` iterates the floor's async
generator of pre-encoded bytes, the least any Django streaming view can do per chunk."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator

import django
from django.conf import settings

settings.configure(
    DEBUG=False,
    SECRET_KEY="bench-only",
    ALLOWED_HOSTS=["127.0.0.1", "localhost"],
    ROOT_URLCONF=__name__,
    MIDDLEWARE=[],
    INSTALLED_APPS=[],
    LOGGING_CONFIG=None,
)
django.setup()

from django.core.asgi import get_asgi_application  # noqa: E402
from django.http import HttpRequest, HttpResponse, JsonResponse, StreamingHttpResponse  # noqa: E402
from django.urls import path  # noqa: E402

from bench.upstream import TRACKER, Params, encoded_chunks, sync_chunks  # noqa: E402


def _params(request: HttpRequest) -> Params:
    return Params.parse(request.GET.dict(), json.loads(request.body or b"{}"))


def stream_response(request: HttpRequest) -> HttpResponse | StreamingHttpResponse:
    if request.method != "POST":
        return JsonResponse({"error": "POST only"}, status=405)
    params = _params(request)

    def generate() -> Iterator[str]:
        generator = sync_chunks(params)
        for chunk in generator:
            if isinstance(chunk, dict) and chunk.get("is_usage_info"):
                continue
            yield f"data: {chunk}\n\n"
        yield "data: [DONE]\n\n"

    return StreamingHttpResponse(generate(), content_type="text/event-stream")


async def floor_response(request: HttpRequest) -> HttpResponse | StreamingHttpResponse:
    if request.method != "POST":
        return JsonResponse({"error": "POST only"}, status=405)
    return StreamingHttpResponse(encoded_chunks(_params(request)), content_type="text/event-stream")


def stats(request: HttpRequest) -> HttpResponse:
    if request.method == "POST":
        TRACKER.reset()
        return JsonResponse({"ok": True})
    return JsonResponse(TRACKER.snapshot())


FLOOR = os.environ.get("BENCH_DJANGO") == "floor"
urlpatterns = [
    path("stream", floor_response if FLOOR else stream_response),
    path("stats", stats),
    path("reset", stats),
]
app = get_asgi_application()
