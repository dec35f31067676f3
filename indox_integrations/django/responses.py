"""``sse_response``: a ``StreamingHttpResponse`` that streams under WSGI and ASGI alike."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, cast

from asgiref.sync import iscoroutinefunction, sync_to_async
from django.core.handlers.asgi import ASGIRequest
from django.http import HttpRequest, HttpResponseBase, StreamingHttpResponse

from ..concurrency import close_async
from ..resumable import ResumableOptions, configure
from ..stream import StreamOptions, async_sse_stream, sse_stream
from ..wsgi import abort, client_gone

if TYPE_CHECKING:
    if sys.version_info >= (3, 11):
        from typing import Unpack
    else:
        from typing_extensions import Unpack

__all__ = ["asse_response", "orm_safe", "serves_async", "sse_response"]


def serves_async(request: HttpRequest | None = None) -> bool:
    """Whether the response will be sent by Django's ASGI handler.

    The request says so for sure; without one, a running event loop (an async
    view) is taken to mean ASGI.
    """
    if request is not None:
        return isinstance(request, ASGIRequest)
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def sse_response(
    source: Any,
    request: HttpRequest | None = None,
    *,
    status: int = 200,
    headers: Mapping[str, str] | None = None,
    **given: Unpack[ResumableOptions],
) -> HttpResponseBase:
    """Stream an LLM client's chunks as server-sent events from a Django view.

    Pass the ``request``: under ASGI the body is an async iterator (a sync
    upstream runs in a thread of its own), under WSGI a sync one, so Django
    never collects the stream into a list first.  Options are those of
    :func:`indox_integrations.sse_stream`; under ASGI a sync ``on_usage`` or
    ``on_complete`` runs through ``sync_to_async``, so it may use the ORM.
    The upstream is closed when the stream ends, fails, times out or the
    client leaves.

        def ask(request):
            chunks = client.completion("Hi", stream=True, return_generator=True)
            return sse_response(chunks, request, usage="attach")

    With ``resumable=True`` (and ``store``, ``detach_timeout``, ``owner``: see
    :func:`indox_integrations.resumable.configure`) the generation runs apart from
    this response, its first reader (a 503 JSON answer when the store is away);
    serve :class:`~indox_integrations.django.resume.ResumeView` at
    ``{prefix}/streams/<stream_id>`` for the resume URL it names.  That asks the
    store, and ``owner``, right away: in an ``async def`` view, use
    ``await`` :func:`asse_response` instead.
    """
    resumable = configure(given)
    if resumable is not None:
        from .resume import resumable_sse_response

        served = resumable_sse_response(resumable, source, request, given)
        return _given(served, status, headers)
    options = cast(StreamOptions, given)
    # Django's ASGI handler turns a sync iterator into a list before sending a
    # byte, and its WSGI handler does the same to an async one.
    if serves_async(request):
        # Callbacks run where the stream ends: on the event loop under ASGI, where
        # Django forbids the ORM, so a sync one runs through sync_to_async there.
        on_usage, on_complete = options.get("on_usage"), options.get("on_complete")
        if on_usage is not None and not iscoroutinefunction(on_usage):
            options["on_usage"] = orm_safe(on_usage)
        if on_complete is not None and not iscoroutinefunction(on_complete):
            options["on_complete"] = orm_safe(on_complete)
        stream: Any = async_sse_stream(source, **options)
    else:
        environ = getattr(request, "environ", {})
        stream = sse_stream(source, client_gone(environ), abort=abort(environ), **options)
    response = StreamingHttpResponse(
        stream, status=status, headers={**stream.headers, **(headers or {})}
    )
    # GZipMiddleware (Django <= 6.0) holds small writes back until its buffer
    # fills; it leaves a response alone that already has a Content-Encoding.
    # An empty one is an empty list of codings (RFC 9110, 5.6.1 and 8.4).
    response.setdefault("Content-Encoding", "")
    return response


async def asse_response(
    source: Any,
    request: HttpRequest,
    *,
    status: int = 200,
    headers: Mapping[str, str] | None = None,
    **given: Unpack[ResumableOptions],
) -> HttpResponseBase:
    """:func:`sse_response` for an ``async def`` view: the same options, awaited.

    With ``resumable=True`` the stream is made in the store without blocking the
    event loop, and a sync ``owner`` runs in a thread (so it may read
    ``request.user``, which Django forbids on the loop); without it, the
    response is :func:`sse_response`'s.

        async def ask(request):
            chunks = await openai.chat.completions.create(model=model, messages=messages,
                                                          stream=True)  # AsyncOpenAI
            return await asse_response(chunks, request, resumable=True, owner=user_of)
    """
    resumable = configure(given)
    if resumable is None:
        return sse_response(source, request, status=status, headers=headers, **given)
    from .resume import resumable_response

    async def start() -> Any:
        return source

    response = await resumable_response(resumable, request, start, lambda: given)
    if not isinstance(response, StreamingHttpResponse):
        await close_async(source)  # the store is away: nobody will read it
    return _given(response, status, headers)


def _given(
    response: HttpResponseBase, status: int, headers: Mapping[str, str] | None
) -> HttpResponseBase:
    """A resumable stream's reader with the view's status and headers (not an error answer)."""
    if isinstance(response, StreamingHttpResponse):
        response.status_code = status
        for name, value in (headers or {}).items():
            response[name] = value
    return response


def orm_safe(callback: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """``callback`` through ``sync_to_async`` on the event loop, and directly in a thread.

    A stream that Django leaves before its end (a disconnect landing in a
    write) first ends in ``response.close()``, which runs in the request's
    thread-sensitive executor: a ``sync_to_async`` call from there waits for
    that same executor, forever.
    """
    wrapped = sync_to_async(callback)

    def call(value: Any) -> Any:
        return wrapped(value) if serves_async() else callback(value)

    return call
