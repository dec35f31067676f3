"""Async class-based views: ``POST`` a completion or a chat, get server-sent events.

They serve under ASGI with no thread per stream for async clients, and under
WSGI (Django runs async views through ``async_to_sync``) with a sync client.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Mapping
from typing import Any, cast

from asgiref.sync import iscoroutinefunction, sync_to_async
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured, RequestDataTooBig
from django.http import HttpRequest, HttpResponse, HttpResponseBase, JsonResponse
from django.http.request import RawPostDataException
from django.views import View
from django.views.decorators.csrf import csrf_exempt

from ..clients import LLMRequest, acall_client, call_client, client_error
from ..concurrency import close_async
from ..overload import Refusal
from ..protocols import Reply, Route, StreamProtocol, aserve, get_protocol, named_protocol, serve
from ..requests import (
    Limits,
    RequestError,
    check_content_type,
    parse_chat,
    parse_completion,
    read_json_body,
)
from ..resumable import chat_id_of
from ..stream import StreamOptions
from ..wsgi import discard_body
from . import conf
from .responses import serves_async, sse_response

__all__ = ["ChatView", "CompletionView", "ProtocolView", "StreamView"]

logger = logging.getLogger("indox_integrations")


class _Unset:
    def __repr__(self) -> str:
        return "<from settings>"


FROM_SETTINGS: Any = _Unset()
"""A view attribute left at this value takes the ``INDOX_INTEGRATIONS`` setting."""


class StreamView(View):
    """Validate the JSON body, call the LLM client, stream its answer.

    Every key of ``INDOX_INTEGRATIONS`` is also a view argument in lower case,
    which wins over the setting; ``client`` is the client itself, where the
    setting's ``CLIENT`` names a factory.

        path("ask", CompletionView.as_view(client=my_client, usage="attach"))

    ``context`` and ``limit_key`` are functions of the ``HttpRequest`` (or
    dotted paths to one); a sync one runs through ``sync_to_async``, so it may
    read ``request.user``.  ``context``'s value goes to the stream's
    ``context`` (``StreamReport.context``, the log record); ``max_streams``
    answers 503 while the process holds that many streams,
    ``max_streams_per_key`` answers 429 while ``limit_key(request)`` holds
    that many (see :mod:`indox_integrations.overload`).

    ``resumable=True`` (``RESUMABLE``, with ``STORE``, ``DETACH_TIMEOUT`` and
    ``OWNER``, a function of the ``HttpRequest``) runs each generation apart
    from its connection; serve :class:`~indox_integrations.django.resume.ResumeView`
    at ``streams/<stream_id>`` next to the view (``urls.patterns`` does).
    """

    client: Any = FROM_SETTINGS
    usage: Any = FROM_SETTINGS
    heartbeat: Any = FROM_SETTINGS
    idle_timeout: Any = FROM_SETTINGS
    expose_errors: Any = FROM_SETTINGS
    on_usage: Any = FROM_SETTINGS
    on_complete: Any = FROM_SETTINGS
    max_body_bytes: Any = FROM_SETTINGS
    max_tokens: Any = FROM_SETTINGS
    max_messages: Any = FROM_SETTINGS
    models: Any = FROM_SETTINGS
    default_model: Any = FROM_SETTINGS
    protocol: Any = FROM_SETTINGS
    api_keys: Any = FROM_SETTINGS
    max_streams: Any = FROM_SETTINGS
    max_streams_per_key: Any = FROM_SETTINGS
    limit_key: Any = FROM_SETTINGS
    context: Any = FROM_SETTINGS
    resumable: Any = FROM_SETTINGS
    store: Any = FROM_SETTINGS
    detach_timeout: Any = FROM_SETTINGS
    owner: Any = FROM_SETTINGS

    def parse(self, data: Mapping[str, Any], limits: Limits) -> LLMRequest:
        """The validated request; raises ``RequestError``."""
        raise NotImplementedError("subclasses of StreamView must define parse()")

    @classmethod
    def as_view(cls, **initkwargs: Any) -> Any:
        # Wrong options fail when the URLconf loads, not at the first request.
        defined = {name: _raw(cls, name) for name in conf.options()}
        values = {**conf.options(), **_set(defined), **initkwargs}
        where = f"{cls.__name__}.as_view"
        conf.stream_options(values, where=where)
        conf.overload(values, where=where)
        conf.context(values, where=where)
        conf.resumable(values, where=where)
        conf.limits(values)
        return super().as_view(**initkwargs)

    def stream_settings(self) -> dict[str, Any]:
        """The setting, overridden by the view's arguments (``client`` aside)."""
        values = dict(conf.options())
        values.update(_set({name: _raw(self, name) for name in values if name != "client"}))
        return values

    def get_client(self) -> Any:
        """The view's client, or the one the setting's factory makes."""
        client = _raw(self, "client")
        return conf.client() if client is FROM_SETTINGS else client

    def call_client(self, request: LLMRequest) -> Any:
        """Start the upstream call (runs in a thread: sync clients block)."""
        return call_client(self.get_client(), request)

    async def post(self, request: HttpRequest) -> HttpResponseBase:
        values = self.stream_settings()
        where = type(self).__name__
        options = conf.stream_options(values, where=where)
        limits = conf.limits(values)
        try:
            body = _read_body(request, limits.max_body_bytes)
            data = read_json_body(body, request.META.get("CONTENT_TYPE"), limits)
            llm_request = self.parse(data, limits)
        except RequestError as exc:
            return JsonResponse(exc.as_json(), status=exc.status)
        overload = conf.overload(values, where=where)
        admitted = overload.admit(await _of_request(overload.limit_key, request))
        if isinstance(admitted, Refusal):
            return _refused(
                JsonResponse(admitted.as_json(), status=admitted.status, headers=admitted.headers)
            )
        with admitted as slot:  # given back at once unless the stream takes it over
            context = conf.context(values, where=where)
            if context is not None:
                options["context"] = await _of_request(context, request)
            asgi = serves_async(request)

            async def start() -> Any:
                try:
                    if asgi and type(self).call_client is StreamView.call_client:
                        # Async clients (and adapters with an async entry) run on the loop.
                        source = await acall_client(self.get_client(), llm_request)
                    else:
                        source = await sync_to_async(self.call_client)(llm_request)
                    if not asgi and (inspect.isawaitable(source) or hasattr(source, "__aiter__")):
                        return await _async_client(source)
                    if inspect.isawaitable(source):
                        source = await source
                except ImproperlyConfigured:
                    raise
                except Exception as exc:
                    status, payload = client_error(exc)
                    return JsonResponse(payload, status=status)
                return source

            options["protocol"] = "indox"
            resumable = conf.resumable(values, where=where)
            if resumable is not None:
                from .resume import resumable_response

                hand_over = lambda: slot.hand_over(cast(StreamOptions, options))  # noqa: E731
                return await resumable_response(resumable, request, start, hand_over)
            source = await start()
            if isinstance(source, HttpResponseBase):
                return source
            return sse_response(source, request, **slot.hand_over(cast(StreamOptions, options)))

    def http_method_not_allowed(self, request: HttpRequest, *args: Any, **kwargs: Any) -> Any:
        allowed = [m.upper() for m in self.http_method_names if hasattr(self, m)]
        expected = " or ".join(m for m in allowed if m not in ("HEAD", "OPTIONS"))
        error = RequestError("method", f"expected {expected}, got {request.method}", 405)
        protocol = self.stream_settings()["protocol"]
        if not isinstance(self, ProtocolView):
            protocol = "indox"
        reply = named_protocol(protocol).request_error(error)
        response = JsonResponse(reply.body, status=405)
        response["Allow"] = ", ".join(allowed)
        if self.view_is_async:

            async def func() -> HttpResponse:
                return response

            return func()
        return response


class ProtocolView(StreamView):
    """One route of another protocol (``"openai"``, ``"ai-sdk"``): the body goes to it as it came.

        path("v1/chat/completions", ProtocolView.as_view(protocol="openai",
                                                         route="chat_completions"))

    :func:`indox_integrations.django.urls.patterns` makes every route of a protocol.
    """

    route: str = ""
    http_method_names = ["get", "post"]

    @classmethod
    def as_view(cls, **initkwargs: Any) -> Any:
        values = {**conf.options(), **initkwargs}
        route = _route(named_protocol(values["protocol"]), initkwargs.get("route", cls.route))
        view = super().as_view(http_method_names=[route.method.lower()], **initkwargs)
        if get_protocol(values["protocol"]).csrf_exempt:
            # API clients with bearer keys, not browsers with session cookies.
            view = csrf_exempt(view)
        return view

    async def get(self, request: HttpRequest) -> HttpResponseBase:
        return await self.serve(request)

    async def post(self, request: HttpRequest) -> HttpResponseBase:
        return await self.serve(request)

    async def serve(self, request: HttpRequest) -> HttpResponseBase:
        values = self.stream_settings()
        options = conf.stream_options(values, where=type(self).__name__)
        limits = conf.limits(values)
        protocol = named_protocol(options.pop("protocol"))
        route = _route(protocol, self.route)
        body = b""
        if route.method == "POST":
            try:
                body = _read_body(request, limits.max_body_bytes)
            except RequestError as exc:
                return _reply(protocol.request_error(exc))
        headers = {key.lower(): value for key, value in request.headers.items()}
        result = protocol.handle(route, body, headers, limits, api_keys=values["api_keys"])
        if isinstance(result, Reply):  # an error, or a listing: no client call, no slot
            return _reply(result)
        where = type(self).__name__
        overload = conf.overload(values, where=where)
        admitted = overload.admit(await _of_request(overload.limit_key, request))
        if isinstance(admitted, Refusal):
            return _refused(_reply(admitted.reply(protocol)))
        with admitted as slot:  # a non-streamed answer gives it back once collected
            context = conf.context(values, where=where)
            if context is not None:  # before the call, as on the indox routes
                options["context"] = await _of_request(context, request)
            client = await sync_to_async(self.get_client)()
            resumable = conf.resumable(values, where=where)
            if resumable is not None and result.encoder is not None:
                from .resume import resumable_response

                async def start() -> Any:
                    if serves_async(request):
                        answer = await aserve(protocol, result, client)
                    else:
                        answer = await sync_to_async(serve)(protocol, result, client)
                    if isinstance(answer, Reply):
                        return _reply(answer)
                    source = answer.source
                    if not serves_async(request) and (
                        inspect.isawaitable(source) or hasattr(source, "__aiter__")
                    ):
                        return await _async_client(source)
                    return answer

                hand_over = lambda: slot.hand_over(cast(StreamOptions, options))  # noqa: E731
                return await resumable_response(
                    resumable, request, start, hand_over, route=route.path,
                    chat_id=chat_id_of(body),
                )  # fmt: skip
            if serves_async(request):
                answer = await aserve(protocol, result, client)
            else:
                answer = await sync_to_async(serve)(protocol, result, client)
            if isinstance(answer, Reply):
                return _reply(answer)
            source = answer.source
            if not serves_async(request) and (
                inspect.isawaitable(source) or hasattr(source, "__aiter__")
            ):
                return await _async_client(source)
            options["protocol"] = answer.encoder
            return sse_response(source, request, **slot.hand_over(cast(StreamOptions, options)))


def _route(protocol: type[StreamProtocol], name: str) -> Route:
    for route in protocol.routes:
        if route.name == name:
            return route
    names = ", ".join(route.name for route in protocol.routes)
    raise ImproperlyConfigured(
        f"ProtocolView: route must be one of {names} for protocol {protocol.name!r}, got {name!r}"
    )


async def _of_request(function: Any, request: HttpRequest) -> Any:
    """``function(request)``; a sync function runs in a thread, where the ORM is allowed."""
    if function is None:
        return None
    if iscoroutinefunction(function):
        return await function(request)
    return await sync_to_async(function)(request)


def _refused(response: HttpResponse) -> HttpResponse:
    if response.status_code >= 500:
        # Django logs every 5xx answer at ERROR (django.request); overload is a
        # state, not an error, and the kit has logged it as a warning already.
        response._has_been_logged = True  # type: ignore[attr-defined]
    return response


def _reply(reply: Reply) -> JsonResponse:
    return JsonResponse(reply.body, status=reply.status, headers=dict(reply.headers), safe=False)


class CompletionView(StreamView):
    """``POST {"prompt", "model"?, "temperature"?, "max_tokens"?}`` -> server-sent events."""

    def parse(self, data: Mapping[str, Any], limits: Limits) -> LLMRequest:
        return parse_completion(data, limits)


class ChatView(StreamView):
    """``POST {"messages": [{"role", "content"}, ...], ...}`` -> server-sent events."""

    def parse(self, data: Mapping[str, Any], limits: Limits) -> LLMRequest:
        return parse_chat(data, limits)


def _raw(view: Any, name: str) -> Any:
    # A function given as a class attribute (client, callbacks) must not become a method.
    return inspect.getattr_static(view, name)


def _set(values: dict[str, Any]) -> dict[str, Any]:
    return {name: value for name, value in values.items() if value is not FROM_SETTINGS}


def _read_body(request: HttpRequest, limit: int) -> bytes:
    """The raw body, refusing a declared size over ``limit`` before reading it."""
    try:
        return _read_at_most(request, limit)
    except RequestError:
        # Under WSGI, the rest of the body left unread would break the next
        # request on the connection (ASGI servers have read it already).
        discard_body(request.META)
        raise


def _read_at_most(request: HttpRequest, limit: int) -> bytes:
    try:
        length = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = 0
    if length > limit:
        raise RequestError("body", f"must be at most {limit} bytes, got {length}", 413)
    if "CONTENT_LENGTH" not in request.META and request.META.get("wsgi.input_terminated"):
        # A chunked body under WSGI (gunicorn): Django takes a missing Content-Length
        # for an empty body, so read it here, one byte past the limit at most.
        body = _read_to_end(request.META["wsgi.input"], limit + 1)
        if len(body) > limit:
            raise RequestError("body", f"must be at most {limit} bytes", 413)
        return body
    try:
        return request.body
    except RawPostDataException:
        # CsrfViewMiddleware has parsed a multipart form already (request.POST).
        check_content_type(request.META.get("CONTENT_TYPE"))
        raise
    except RequestDataTooBig:
        # A chunked body has no Content-Length; Django stops reading it here.
        raise RequestError(
            "body",
            f"must be at most {settings.DATA_UPLOAD_MAX_MEMORY_SIZE} bytes "
            "(DATA_UPLOAD_MAX_MEMORY_SIZE)",
            413,
        ) from None


def _read_to_end(stream: Any, most: int) -> bytes:
    parts: list[bytes] = []
    size = 0
    while size < most:
        part = stream.read(min(64 * 1024, most - size))
        if not part:
            break
        parts.append(part)
        size += len(part)
    return b"".join(parts)


async def _async_client(source: Any) -> JsonResponse:
    await close_async(source)  # an un-awaited coroutine would warn when collected
    message = (
        f"the LLM client returned {type(source).__name__}, an async result: an async client "
        "needs an ASGI server (uvicorn, daphne); use a sync client under WSGI"
    )
    logger.error(message)
    return JsonResponse({"error": {"type": "server_error", "message": message}}, status=500)
