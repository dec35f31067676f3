"""``path("llm/", include("indox_integrations.django.urls"))``: the routes of ``PROTOCOL``.

With the default protocol, ``stream/`` and ``chat/``; with ``"openai"``,
``chat/completions`` and ``models`` (include it under ``v1/``); with
``"ai-sdk"``, ``chat``.  :func:`patterns` makes them for any protocol::

    path("v1/", include((patterns("openai", client=llm), "openai")))

With ``RESUMABLE`` (or ``resumable=True``), also ``streams/<stream_id>`` (resume
and cancel) and, for ``"ai-sdk"``, ``chat/<chat_id>/stream``.
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
        found = [
            path("stream/", CompletionView.as_view(**view_options), name="stream"),
            path("chat/", ChatView.as_view(**view_options), name="chat"),
        ]
    else:
        found = [
            path(
                route.path.lstrip("/"),
                ProtocolView.as_view(route=route.name, **{**view_options, "protocol": name}),
                name=route.name,
            )
            for route in named_protocol(name).routes
        ]
    return found + _resume_patterns(name, view_options)


def _resume_patterns(protocol: str, view_options: dict[str, Any]) -> list[URLPattern]:
    """The resume and cancel routes, when the views serve resumable streams."""
    if not view_options.get("resumable", conf.options()["resumable"]):
        return []
    from .resume import ChatResumeView, ResumeView

    options = {**view_options, "protocol": protocol}
    found = [path("streams/<str:stream_id>", ResumeView.as_view(**options), name="resume")]
    if protocol == "ai-sdk":
        chat = ChatResumeView.as_view(**options)
        found.append(path("chat/<str:chat_id>/stream", chat, name="resume_chat"))
    return found


urlpatterns = patterns()
