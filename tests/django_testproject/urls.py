from __future__ import annotations

from django.urls import include, path

from django_testproject import views
from indox_integrations.django.views import ChatView, CompletionView

limits = {"models": views.MODELS}

urlpatterns = [
    path("stream", CompletionView.as_view(**limits)),
    path("chat", ChatView.as_view(**limits)),
    path("skip/stream", CompletionView.as_view(usage="skip", **limits)),
    path(
        "cb/stream",
        CompletionView.as_view(
            usage="skip",
            on_usage="django_testproject.views.record_usage",
            on_complete=views.record_complete,
            **limits,
        ),
    ),
    path("async-client/stream", CompletionView.as_view(client=views.AsyncClient(), **limits)),
    path("llm/", include("indox_integrations.django.urls")),
    path("fn/sync", views.sync_view),
    path("fn/async", views.async_view),
    path("_wrong_kind", views.wrong_kind),
    path("health", views.health),
    path("page", views.page),
    path("_tracker", views.tracker),
    path("_reset", views.reset),
]
