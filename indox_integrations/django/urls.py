"""``path("llm/", include("indox_integrations.django.urls"))``: the routes of ``PROTOCOL``.

With the default protocol, ``stream/`` and ``chat/``; with ``"openai"``,
``chat/completions`` and ``models`` (include it under ``v1/``); with
``"ai-sdk"``, ``chat``.  :func:`patterns` makes them for any protocol::

    path("v1/", include((patterns("openai", client=llm), "openai")))
"""

from __future__ import annotations

from typing import Any

from django.urls import URLPattern, path

from ..protocols import named_protocol
from . import conf
from .views import ChatView, CompletionView, ProtocolView

__all__ = ["app_name", "patterns", "urlpatterns"]

app_name = "indox_integrations"


def patterns(protocol: str | None = None, **view_options: Any) -> list[URLPattern]:
    """URL patterns for every route of ``protocol`` (default: the ``PROTOCOL`` setting)."""
    name = protocol or conf.options()["protocol"]
    if name == "indox":
        return [
            path("stream/", CompletionView.as_view(**view_options), name="stream"),
            path("chat/", ChatView.as_view(**view_options), name="chat"),
        ]
    options = {**view_options, "protocol": name}
    return [
        path(
            route.path.lstrip("/"),
            ProtocolView.as_view(route=route.name, **options),
            name=route.name,
        )
        for route in named_protocol(name).routes
    ]


urlpatterns = patterns()
