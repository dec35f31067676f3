"""The project's views: the kit's views with limits and a login, and the test hooks."""

from __future__ import annotations

import json
from typing import Any

import production_client as recorded
from django.contrib.auth import get_user_model, login
from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt

from indox_integrations.django.auth import LoginRequiredMixin
from indox_integrations.django.views import CompletionView

recorded.install_recorder()


def make_client() -> Any:
    """``INDOX_INTEGRATIONS["CLIENT"]``."""
    return recorded.client


def user_context(request: HttpRequest) -> dict[str, Any]:
    """``INDOX_INTEGRATIONS["CONTEXT"]``: runs in a thread, so it may read ``request.user``."""
    user = request.user
    return {"user": user.get_username() if user.is_authenticated else None}


def header_user(request: HttpRequest) -> str | None:
    return request.headers.get("X-User")


class UserCompletionView(LoginRequiredMixin, CompletionView):
    """``CompletionView`` for logged-in users only."""


@csrf_exempt
def login_view(request: HttpRequest) -> JsonResponse:
    username = json.loads(request.body)["username"]
    user, _ = get_user_model().objects.get_or_create(username=username)
    login(request, user, backend="django.contrib.auth.backends.ModelBackend")
    return JsonResponse({"ok": True})


def state(request: HttpRequest) -> JsonResponse:
    return JsonResponse(recorded.state())


@csrf_exempt
def gate(request: HttpRequest, stream_id: str) -> JsonResponse:
    recorded.open_gate(stream_id)
    return JsonResponse({"ok": True})


@csrf_exempt
def reset(request: HttpRequest) -> JsonResponse:
    recorded.reset()
    return JsonResponse({"ok": True})
