"""Resumable streams in Django: the first reader of a POST, and the resume and cancel views.

The policy is :mod:`indox_integrations.resumable`'s; this module only translates.
Under ASGI the generation is a task of the server's loop, under WSGI a thread.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from asgiref.sync import async_to_sync, iscoroutinefunction, sync_to_async
from django.core.exceptions import ImproperlyConfigured
from django.http import (
    HttpRequest,
    HttpResponse,
    HttpResponseBase,
    JsonResponse,
    StreamingHttpResponse,
)
from django.views.decorators.csrf import csrf_exempt

from ..concurrency import close_sync
from ..protocols import Reply, Stream, get_protocol
from ..requests import RequestError
from ..resumable import (
    Launch,
    Resumable,
    Served,
    abegin,
    acancel,
    aresume,
    aresume_chat,
    begin,
    cancel,
    resume,
    resume_chat,
    resume_url,
)
from ..wsgi import client_gone
from . import conf
from .responses import orm_safe, serves_async
from .views import StreamView

__all__ = ["ChatResumeView", "ResumeView", "resumable_response", "resumable_sse_response"]


def _answer(answer: Reply | Served) -> HttpResponseBase:
    if isinstance(answer, Served):
        response = StreamingHttpResponse(answer.body, headers=dict(answer.headers))
        # As in sse_response: GZipMiddleware leaves a response with a Content-Encoding alone.
        response.setdefault("Content-Encoding", "")
        return response
    if answer.status == 204:
        return HttpResponse(status=204, headers=dict(answer.headers))
    return JsonResponse(answer.body, status=answer.status, headers=dict(answer.headers))


def _on_loop(options: dict[str, Any]) -> dict[str, Any]:
    # Callbacks run where the generation ends: on the loop under ASGI, where Django
    # forbids the ORM; a sync one runs through sync_to_async there (as sse_response does).
    for name in ("on_usage", "on_complete"):
        callback = options.get(name)
        if callback is not None and not iscoroutinefunction(callback):
            options[name] = orm_safe(callback)
    return options


def _launched(
    launch: Launch, request: HttpRequest, source: Any, options: dict[str, Any], route: str | None
) -> Served | Reply:
    if isinstance(source, Stream):
        source, options["protocol"] = source.source, source.encoder
    url = resume_url(request.path, route, launch.stream_id)
    if serves_async(request):
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            # A sync view under ASGI runs in a thread: the generation is a task of
            # the server's loop all the same, which the reply's reader follows.
            return async_to_sync(_start_task)(launch, source, options, url)
        return launch.start_task(source, _on_loop(options), url)
    gone = client_gone(getattr(request, "environ", {}))
    return launch.start(source, options, url, client_gone=gone)


async def _start_task(launch: Launch, source: Any, options: dict[str, Any], url: str) -> Served:
    return launch.start_task(source, _on_loop(options), url)


async def _owner(resumable: Resumable, request: HttpRequest) -> str | None:
    owner = resumable.owner
    if callable(owner) and iscoroutinefunction(owner):
        return await resumable.aowner_of(request)
    # A sync function may read request.user (the ORM): it runs in a thread.
    return await sync_to_async(resumable.owner_of)(request)


async def resumable_response(
    resumable: Resumable,
    request: HttpRequest,
    start: Callable[[], Awaitable[Any]],
    options: Callable[[], Mapping[str, Any]],
    *,
    route: str | None = None,
    chat_id: str | None = None,
) -> HttpResponseBase:
    """Start a resumable stream from an async view and answer with its first reader.

    The stream is made in the store first (503 JSON when it cannot be reached, and
    ``start`` is never called); ``start()`` calls the client and returns its chunk
    stream, a protocol ``Stream``, or a response to send instead.
    """
    owner = await _owner(resumable, request)
    if serves_async(request):
        launch = await abegin(resumable, owner, chat_id=chat_id)
    else:
        launch = await sync_to_async(begin)(resumable, owner, chat_id=chat_id)
    if isinstance(launch, Reply):
        return _answer(launch)
    try:
        got = await start()
    except BaseException:
        await sync_to_async(launch.abandon)()
        raise
    if isinstance(got, HttpResponseBase):
        await sync_to_async(launch.abandon)()
        return got
    stream_options = dict(options())
    if serves_async(request):
        return _answer(_launched(launch, request, got, stream_options, route))
    served = await sync_to_async(_launched)(launch, request, got, stream_options, route)
    return _answer(served)


def resumable_sse_response(
    resumable: Resumable, source: Any, request: HttpRequest | None, options: Mapping[str, Any]
) -> HttpResponseBase:
    """``sse_response(..., resumable=True)``: the same, from a view that has its stream."""
    if request is None:
        raise TypeError("sse_response(resumable=True) needs the request")
    launch = begin(resumable, resumable.owner_of(request))
    if isinstance(launch, Reply):
        close_sync(source)  # the store is away: nobody will read it
        return _answer(launch)
    return _answer(_launched(launch, request, source, dict(options), None))


class ResumeView(StreamView):
    """``GET`` (resume after ``Last-Event-ID``) and ``DELETE`` (cancel) of
    ``{prefix}/streams/<stream_id>``, for the streams of views with ``resumable=True``.

        path("llm/streams/<str:stream_id>", ResumeView.as_view(resumable=True))

    Its settings and arguments are the streaming views' (``STORE``, ``OWNER``,
    ``PROTOCOL``, ``HEARTBEAT``...).  ``DELETE`` is checked for CSRF, as ``POST`` is.
    """

    http_method_names = ["get", "delete"]

    @classmethod
    def as_view(cls, **initkwargs: Any) -> Any:
        values = {**conf.options(), **initkwargs}
        if conf.resumable(values, where=f"{cls.__name__}.as_view") is None:
            raise ImproperlyConfigured(
                f"{cls.__name__} serves resumable streams: set RESUMABLE or pass resumable=True"
            )
        view = super().as_view(**initkwargs)
        if get_protocol(values["protocol"]).csrf_exempt:
            view = csrf_exempt(view)
        return view

    def _resumable(self) -> tuple[Resumable, dict[str, Any]]:
        values = self.stream_settings()
        resumable = conf.resumable(values, where=type(self).__name__)
        assert resumable is not None
        return resumable, values

    async def get(self, request: HttpRequest, stream_id: str) -> HttpResponseBase:
        resumable, values = self._resumable()
        owner = await _owner(resumable, request)
        last = request.headers.get("Last-Event-ID") or request.GET.get("last_event_id")
        options = {"heartbeat": values["heartbeat"]}
        if serves_async(request):
            answer = await aresume(
                resumable, stream_id, owner=owner, last_event_id=last,
                protocol=values["protocol"], options=options,
            )  # fmt: skip
        else:
            gone = client_gone(getattr(request, "environ", {}))
            answer = await sync_to_async(resume)(
                resumable, stream_id, owner=owner, last_event_id=last,
                protocol=values["protocol"], options=options, client_gone=gone,
            )  # fmt: skip
        return _answer(answer)

    async def delete(self, request: HttpRequest, stream_id: str) -> HttpResponseBase:
        resumable, _ = self._resumable()
        owner = await _owner(resumable, request)
        if serves_async(request):
            return _answer(await acancel(resumable, stream_id, owner=owner))
        return _answer(await sync_to_async(cancel)(resumable, stream_id, owner=owner))

    def http_method_not_allowed(self, request: HttpRequest, *args: Any, **kwargs: Any) -> Any:
        allowed = [m.upper() for m in self.http_method_names if hasattr(self, m)]
        expected = " or ".join(allowed)
        error = RequestError("method", f"expected {expected}, got {request.method}", 405)
        response = JsonResponse(error.as_json(), status=405, headers={"Allow": ", ".join(allowed)})

        async def func() -> HttpResponse:
            return response

        return func()


class ChatResumeView(ResumeView):
    """The AI SDK's ``GET {prefix}/chat/<chat_id>/stream``: the chat's running stream from
    its start, or 204 when none runs (``useChat({resume: true})``)."""

    http_method_names = ["get"]

    async def get(self, request: HttpRequest, chat_id: str) -> HttpResponseBase:
        resumable, values = self._resumable()
        owner = await _owner(resumable, request)
        options = {"heartbeat": values["heartbeat"]}
        if serves_async(request):
            answer = await aresume_chat(resumable, chat_id, owner=owner, options=options)
        else:
            gone = client_gone(getattr(request, "environ", {}))
            answer = await sync_to_async(resume_chat)(
                resumable, chat_id, owner=owner, options=options, client_gone=gone
            )
        return _answer(answer)
