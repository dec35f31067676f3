from __future__ import annotations

from django.urls import include, path

from django_production import views
from indox_integrations.django.urls import patterns
from indox_integrations.django.views import CompletionView

urlpatterns = [
    path("limited/stream", CompletionView.as_view()),
    path(
        "perkey/stream",
        CompletionView.as_view(
            max_streams=None, max_streams_per_key=1, limit_key=views.header_user
        ),
    ),
    path("v1/", include((patterns("openai"), "openai"))),
    path(
        "auth/stream",
        views.UserCompletionView.as_view(
            max_streams=None, on_complete="production_client.record_complete"
        ),
    ),
    path("_login", views.login_view),
    path("_state", views.state),
    path("_gate/<str:stream_id>", views.gate),
    path("_reset", views.reset),
]
