"""Django: server-sent event responses and a reusable app, under WSGI and ASGI.

INSTALLED_APPS = [..., "indox_integrations.django"]
INDOX_INTEGRATIONS = {"CLIENT": "myproject.llm.get_client"}
urlpatterns = [path("llm/", include("indox_integrations.django.urls"))]
"""

from __future__ import annotations

try:
    import django  # noqa: F401
except ImportError as err:  # pragma: no cover - depends on the environment
    raise ImportError(
        'indox_integrations.django needs Django: pip install "indox-integrations[django]"'
    ) from err

from .responses import asse_response, serves_async, sse_response

__all__ = ["asse_response", "serves_async", "sse_response"]
