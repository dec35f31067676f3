"""The demo page, the health check, the JS helper at ``/static/`` and the client factory."""

from __future__ import annotations

import functools
from typing import Any

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import ensure_csrf_cookie
from django.views.decorators.http import require_GET

from indox_integrations import static_file

from ..common import Upstream, pick_upstream, render_page


@functools.cache
def upstream() -> Upstream:
    """indoxRouter with ``INDOX_ROUTER_API_KEY``, OpenAI with ``OPENAI_API_KEY``, else the demo."""
    return pick_upstream()


def make_client() -> Any:
    """The ``INDOX_INTEGRATIONS["CLIENT"]`` factory."""
    return upstream().client


@require_GET
@ensure_csrf_cookie  # the JS helper sends it back as X-CSRFToken
def page(request: HttpRequest) -> HttpResponse:
    return HttpResponse(render_page(upstream(), "/static/indox-stream.js"))


@require_GET
def health(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"ok": True})


@require_GET
def helper(request: HttpRequest, name: str) -> HttpResponse:
    """The JS helper at ``/static/indox-stream.js`` (and ``.global.js``), as in every example."""
    return HttpResponse(
        static_file(name).read_bytes(), content_type="text/javascript; charset=utf-8"
    )
