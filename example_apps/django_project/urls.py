"""``/`` the page, ``POST /stream`` and ``POST /chat``, the JS helper, ``/health``, ``/llm/``,
``/v1/chat/completions`` and ``/v1/models`` (OpenAI-compatible), ``/api/chat`` (AI SDK)."""

from __future__ import annotations

from django.urls import include, path

from indox_integrations.django.urls import patterns
from indox_integrations.django.views import ChatView, CompletionView

from ..common import store
from . import views

# Offer only the upstream's models; the client comes from INDOX_INTEGRATIONS["CLIENT"].
_models = {"models": views.upstream().models, "default_model": views.upstream().default_model}

urlpatterns = [
    path("", views.page, name="page"),
    path("stream", CompletionView.as_view(**_models), name="stream"),
    path("chat", ChatView.as_view(**_models), name="chat"),
    path("static/indox-stream.js", views.helper, {"name": "indox-stream.js"}),
    path("static/indox-stream.global.js", views.helper, {"name": "indox-stream.global.js"}),
    path("health", views.health, name="health"),
    # The reusable app's URLs, as a project would mount them: /llm/stream/, /llm/chat/.
    path("llm/", include("indox_integrations.django.urls")),
    path("v1/", include((patterns("openai", **_models), "openai"))),
    path("api/", include((patterns("ai-sdk", **_models), "ai_sdk"))),
]
if store() is not None:
    from indox_integrations.django.resume import ResumeView

    # Where /stream and /chat name their streams: /streams/<id> resumes and cancels.
    urlpatterns.append(path("streams/<str:stream_id>", ResumeView.as_view(), name="resume"))
