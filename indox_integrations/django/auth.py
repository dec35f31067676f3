"""Require a logged-in user on the kit's views, with JSON answers a stream reader can show.

Django's own ``LoginRequiredMixin`` redirects to the login page and its
``PermissionDenied`` becomes an HTML 403; a ``fetch()`` reading a stream wants
neither.  These mixins check ``request.user`` in a thread (it may query the
session and the user table, which Django forbids on the event loop) and answer
401 (not logged in) or 403 (no permission) in JSON, before the body is read
and before the client is called::

    class UserChatView(LoginRequiredMixin, ChatView):
        pass

    path("llm/chat/", UserChatView.as_view(context=lambda request: {"user": request.user.id}))

Keep ``CsrfViewMiddleware`` on: with ``CSRF_FAILURE_VIEW =
"indox_integrations.django.auth.csrf_failure"`` a JSON request that fails the
CSRF check also gets a JSON 403 (other requests keep Django's page).
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import Any

from asgiref.sync import sync_to_async
from django.core.exceptions import ImproperlyConfigured
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.csrf import csrf_failure as django_csrf_failure

from ..protocols import named_protocol
from ..requests import RequestError
from .views import ProtocolView

__all__ = ["LoginRequiredMixin", "PermissionRequiredMixin", "csrf_failure"]


class LoginRequiredMixin:
    """Put before a kit view: a request without a logged-in user gets a 401 JSON error."""

    async def dispatch(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        denied = await sync_to_async(self._denied)(request)
        if denied is not None:
            return denied
        response = super().dispatch(request, *args, **kwargs)  # type: ignore[misc]
        return await response if inspect.isawaitable(response) else response  # type: ignore[no-any-return]

    def _denied(self, request: HttpRequest) -> HttpResponse | None:
        user = getattr(request, "user", None)
        if user is None:
            raise ImproperlyConfigured(
                f"{type(self).__name__} needs request.user: add "
                "'django.contrib.auth.middleware.AuthenticationMiddleware' to MIDDLEWARE"
            )
        if not user.is_authenticated:
            response = self.error(401, "unauthenticated", "log in to use this endpoint")
            # RFC 9110, 15.5.2: a 401 names how to authenticate; here, a session.
            response["WWW-Authenticate"] = "Session"
            return response
        return None

    def error(self, status: int, kind: str, message: str) -> HttpResponse:
        """The JSON error: the indox shape, or the protocol's for a :class:`ProtocolView`."""
        if isinstance(self, ProtocolView):
            protocol = named_protocol(self.stream_settings()["protocol"])
            reply = protocol.request_error(RequestError("user", message, status))
            return JsonResponse(reply.body, status=reply.status, headers=dict(reply.headers))
        return JsonResponse({"error": {"type": kind, "message": message}}, status=status)


class PermissionRequiredMixin(LoginRequiredMixin):
    """Like :class:`LoginRequiredMixin`; a user without ``permission_required`` gets a 403.

    class PaidChatView(PermissionRequiredMixin, ChatView):
        permission_required = "billing.use_llm"
    """

    permission_required: str | Sequence[str] = ()

    def has_permission(self, request: HttpRequest) -> bool:
        """Whether ``request.user`` has every permission (runs in a thread: it may query)."""
        wanted = self.permission_required
        permissions = (wanted,) if isinstance(wanted, str) else tuple(wanted)
        return bool(request.user.has_perms(permissions))  # type: ignore[union-attr]

    def _denied(self, request: HttpRequest) -> HttpResponse | None:
        denied = super()._denied(request)
        if denied is None and not self.has_permission(request):
            return self.error(403, "permission_denied", "you may not use this endpoint")
        return denied


def csrf_failure(request: HttpRequest, reason: str = "") -> HttpResponse:
    """``CSRF_FAILURE_VIEW``: a JSON 403 for JSON and event-stream requests, else Django's page."""
    content_type = request.META.get("CONTENT_TYPE", "").split(";")[0].strip().lower()
    accept = request.META.get("HTTP_ACCEPT", "")
    if content_type.endswith("json") or "text/event-stream" in accept:
        message = f"CSRF check failed: {reason}" if reason else "CSRF check failed"
        return JsonResponse({"error": {"type": "csrf_failed", "message": message}}, status=403)
    return django_csrf_failure(request, reason)
