"""``path("llm/", include("indox_integrations.django.urls"))``: ``stream/`` and ``chat/``."""

from __future__ import annotations

from django.urls import path

from .views import ChatView, CompletionView

app_name = "indox_integrations"

urlpatterns = [
    path("stream/", CompletionView.as_view(), name="stream"),
    path("chat/", ChatView.as_view(), name="chat"),
]
