"""A FastAPI router streaming any LLM client to the browser: :func:`create_router`."""

from __future__ import annotations

import inspect
import json
import sys
from collections.abc import Awaitable, Callable, Collection, Coroutine, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, cast

try:
    from fastapi import APIRouter
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import FileResponse, JSONResponse
    from fastapi.routing import APIRoute
    from pydantic import BaseModel, ConfigDict, Field, create_model
    from starlette.requests import ClientDisconnect, Request
    from starlette.responses import Response
except ImportError as err:  # pragma: no cover - depends on the environment
    raise ImportError(
        'indox_integrations.fastapi needs FastAPI: pip install "indox-integrations[fastapi]"'
    ) from err

from .assets import static_file
from .clients import LLMRequest, acall_client, client_error
from .overload import Overload, Refusal, Slot, request_function
from .protocols import Reply, Route, StreamProtocol, aserve, named_protocol
from .requests import Limits, RequestError, check_content_type, parse_chat, parse_completion
from .resumable import Resumable, ResumableOptions, chat_id_of, configure
from .starlette import SSEResponse, resumable_response, resume_endpoints, sse_response
from .stream import StreamOptions, check_options

if TYPE_CHECKING:
    if sys.version_info >= (3, 11):
        from typing import Unpack
    else:
        from typing_extensions import Unpack

__all__ = ["ChatMessage", "create_router"]

STATIC_FILES = {
    "indox-stream.js": "text/javascript; charset=utf-8",
    "indox-stream.global.js": "text/javascript; charset=utf-8",
    "indox-stream.d.ts": "text/plain; charset=utf-8",
}

_STRICT = ConfigDict(strict=True, extra="ignore")


class ChatMessage(BaseModel):
    """One chat message: ``{"role": "system" | "user" | "assistant", "content": str}``."""

    model_config = _STRICT

    role: Literal["system", "user", "assistant"]
    content: str


def create_router(
    client: Any,
    *,
    limits: Limits | None = None,
    api_keys: Collection[str] | None = None,
    serve_static: bool = True,
    max_streams: int | None = None,
    max_streams_per_key: int | None = None,
    limit_key: Callable[[Request], Any] | None = None,
    **stream_options: Unpack[ResumableOptions],
) -> APIRouter:
    """Routes that stream ``client``'s answers as server-sent events.

    ``protocol`` picks the routes and their wire: ``"indox"`` (below),
    ``"openai"`` (``POST /chat/completions``, ``GET /models``; mount it under
    ``/v1``) or ``"ai-sdk"`` (``POST /chat``, the Vercel AI SDK's UI message
    stream).  ``api_keys``, when given, is checked by the protocols that take
    keys (``Authorization: Bearer``).

    ``POST /stream`` takes ``{"prompt", "model"?, "temperature"?, "max_tokens"?}``,
    ``POST /chat`` takes ``{"messages": [{"role", "content"}, ...], ...}``.
    ``client`` is an indoxRouter-shaped client (sync or async), an OpenAI
    client, or a callable ``(CompletionRequest | ChatRequest) -> chunk stream``.
    Bodies are checked against ``limits`` (default :class:`Limits`) before the
    client is called: 422 naming the field, 413 when too large, 415 when not
    JSON. A client failing before its stream starts gets a JSON error with a
    fitting status. ``usage`` defaults to ``"attach"`` (a final ``event:
    usage``; ``"skip"`` sends exactly the wire of indoxRouter's guide); the
    other options are those of :func:`~indox_integrations.sse_stream`. With
    ``serve_static`` the browser helper is served at ``/static/indox-stream.js``
    (and ``indox-stream.global.js``, ``indox-stream.d.ts``).

    ``context`` is a function of the ``Request`` (it may be async) whose value
    goes to the stream's ``context``: on ``StreamReport.context`` and the log
    record, e.g. ``context=lambda request: {"user": request.state.user.id}``.
    ``max_streams`` answers 503 while the process holds that many streams,
    ``max_streams_per_key`` answers 429 while ``limit_key(request)`` holds
    that many (see :mod:`indox_integrations.overload`).

    ``resumable=True`` (with ``store``, ``detach_timeout``, ``owner``, a function of
    the ``Request``) runs each generation apart from its connection and adds
    ``GET``/``DELETE /streams/{stream_id}`` (and, for ``"ai-sdk"``, ``GET
    /chat/{chat_id}/stream``): see :mod:`indox_integrations.resumable`.

        app.include_router(create_router(Client(api_key=...)), prefix="/llm")
    """
    resume = configure(stream_options)
    options: StreamOptions = {"usage": "attach", **cast(StreamOptions, stream_options)}
    context = request_function("context", options.pop("context", None))
    check_options(options)  # bad options fail here, not on the first request
    overload = Overload(max_streams, max_streams_per_key, limit_key)
    limits = limits or Limits()
    protocol = options.pop("protocol", "indox")
    route = _Route(options, overload, context)
    if protocol != "indox":
        served = named_protocol(protocol)
        router = _protocol_router(served, client, limits, api_keys, route, resume)
        return _with_resume(router, resume, served.name, options)
    completion_body, chat_body = _request_models(limits)
    route_class = type("IndoxStreamRoute", (_BodyLimitRoute,), {"limit": limits.max_body_bytes})

    async def respond(
        parse: Callable[[Mapping[str, Any], Limits], LLMRequest],
        request: Request,
        body: BaseModel,
    ) -> Response:
        try:
            # The same rules as Flask and Django (model allow-list, blank prompts).
            llm_request = parse(body.model_dump(exclude_unset=True), limits)
        except RequestError as exc:
            return JSONResponse(exc.as_json(), exc.status)
        admitted = await route.admit(request)
        if isinstance(admitted, Refusal):
            return JSONResponse(admitted.as_json(), admitted.status, headers=admitted.headers)
        with admitted as slot:  # given back at once unless the stream takes it over
            stream_options = await route.stream_options(request)

            async def start() -> Any:
                try:
                    return await acall_client(client, llm_request)
                except Exception as exc:
                    status, content = client_error(exc)
                    return JSONResponse(content, status)

            if resume is not None:
                # The resume URL is {prefix}/streams/{id}, next to /stream and /chat.
                hand_over = lambda: slot.hand_over(stream_options)  # noqa: E731
                return await resumable_response(resume, request, start, hand_over)
            source = await start()
            if isinstance(source, Response):
                return source
            return sse_response(source, **slot.hand_over(stream_options))

    async def stream(request: Request, body: Any) -> Response:
        return await respond(parse_completion, request, body)

    async def chat(request: Request, body: Any) -> Response:
        return await respond(parse_chat, request, body)

    # The body models are built per router (they carry its limits), so they
    # cannot be named in the source annotations.
    stream.__annotations__["body"] = completion_body
    chat.__annotations__["body"] = chat_body

    router = APIRouter()
    for path, endpoint, summary in (
        ("/stream", stream, "Stream a completion as server-sent events"),
        ("/chat", chat, "Stream a chat answer as server-sent events"),
    ):
        router.add_api_route(
            path,
            endpoint,
            methods=["POST"],
            name=f"indox_{path[1:]}",
            summary=summary,
            response_class=SSEResponse,
            responses=_ERROR_RESPONSES,
            route_class_override=route_class,
        )
    if serve_static:
        for name, media_type in STATIC_FILES.items():
            router.add_api_route(
                f"/static/{name}",
                _static_endpoint(static_file(name), media_type),
                methods=["GET"],
                name=f"indox_static_{name.replace('-', '_').replace('.', '_')}",
                include_in_schema=False,
            )
    return _with_resume(router, resume, "indox", options)


def _with_resume(
    router: APIRouter, resume: Resumable | None, protocol: str, options: StreamOptions
) -> APIRouter:
    """The resume and cancel routes, when the router serves resumable streams."""
    if resume is not None:
        for path, methods, endpoint, name in resume_endpoints(resume, protocol, options):
            router.add_api_route(
                path, endpoint, methods=methods, name=name, include_in_schema=False
            )
    return router


class _Route:
    """What every route of one router does per request: its limits and its context."""

    def __init__(
        self,
        options: StreamOptions,
        overload: Overload,
        context: Callable[[Request], Any] | None,
    ) -> None:
        self.options = options
        self.overload = overload
        self.context = context

    async def admit(self, request: Request) -> Slot | Refusal:
        """A :class:`~indox_integrations.overload.Slot`, or the :class:`Refusal`."""
        return self.overload.admit(await _of_request(self.overload.limit_key, request))

    async def stream_options(self, request: Request) -> StreamOptions:
        options = self.options.copy()
        if self.context is not None:
            options["context"] = await _of_request(self.context, request)
        return options


async def _of_request(function: Callable[[Request], Any] | None, request: Request) -> Any:
    if function is None:
        return None
    value = function(request)
    return await value if inspect.isawaitable(value) else value


def _protocol_router(
    protocol: type[StreamProtocol],
    client: Any,
    limits: Limits,
    api_keys: Collection[str] | None,
    shared: _Route,
    resume: Resumable | None,
) -> APIRouter:
    """The routes of another protocol: the body goes to the protocol as it came."""
    router = APIRouter()
    allowed: dict[str, list[str]] = {}
    for route in protocol.routes:
        router.add_api_route(
            route.path,
            _protocol_endpoint(protocol, route, client, limits, api_keys, shared, resume),
            methods=[route.method],
            name=f"{protocol.name}_{route.name}",
        )
        allowed.setdefault(route.path, []).append(route.method)
    for path, methods in allowed.items():
        # FastAPI's own 405 is {"detail": ...}: the protocol's clients expect its error
        # shape, as the Flask and Django skins answer.
        router.add_api_route(
            path,
            _method_not_allowed(protocol, methods),
            methods=[m for m in _METHODS if m not in methods],
            name=f"{protocol.name}_{path.strip('/').replace('/', '_')}_method_not_allowed",
            include_in_schema=False,
        )
    return router


_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


def _method_not_allowed(
    protocol: type[StreamProtocol], allowed: list[str]
) -> Callable[[Request], Awaitable[Response]]:
    async def endpoint(request: Request) -> Response:
        expected = " or ".join(allowed)
        error = RequestError("method", f"expected {expected}, got {request.method}", 405)
        response = _reply(protocol.request_error(error))
        response.headers["Allow"] = ", ".join(allowed)
        return response

    return endpoint


def _protocol_endpoint(
    protocol: type[StreamProtocol],
    route: Route,
    client: Any,
    limits: Limits,
    api_keys: Collection[str] | None,
    shared: _Route,
    resume: Resumable | None,
) -> Callable[[Request], Awaitable[Response]]:
    async def endpoint(request: Request) -> Response:
        body = b""
        if route.method == "POST":
            error = await _read_body(request, limits.max_body_bytes, check_type=False)
            if error is not None:
                return _reply(protocol.request_error(error))
            body = request._body
        result = protocol.handle(route, body, request.headers, limits, api_keys=api_keys)
        if isinstance(result, Reply):  # an error, or a listing: no client call, no slot
            return _reply(result)
        admitted = await shared.admit(request)
        if isinstance(admitted, Refusal):
            return _reply(admitted.reply(protocol))
        with admitted as slot:  # a non-streamed answer gives it back once collected
            if resume is not None and result.encoder is not None:
                stream_options = await shared.stream_options(request)

                async def start() -> Any:
                    answer = await aserve(protocol, result, client)
                    return _reply(answer) if isinstance(answer, Reply) else answer

                return await resumable_response(
                    resume, request, start, lambda: slot.hand_over(stream_options),
                    route=route.path, chat_id=chat_id_of(body),
                )  # fmt: skip
            stream_options = await shared.stream_options(request)  # context: before the call
            answer = await aserve(protocol, result, client)
            if isinstance(answer, Reply):
                return _reply(answer)
            stream_options["protocol"] = answer.encoder
            return sse_response(answer.source, **slot.hand_over(stream_options))

    return endpoint


def _reply(reply: Reply) -> JSONResponse:
    return JSONResponse(reply.body, reply.status, headers=dict(reply.headers))


_ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {"description": "The request breaks a rule of the server's limits"},
    413: {"description": "The body is larger than the limit"},
    415: {"description": "The body is not JSON"},
    502: {"description": "The model provider failed before streaming"},
}


def _request_models(limits: Limits) -> tuple[type[BaseModel], type[BaseModel]]:
    """Pydantic bodies mirroring :mod:`indox_integrations.requests` for these limits."""
    model_field: Any
    if limits.models is None:
        model_field = (str | None, Field(limits.default_model, min_length=1, max_length=200))
    else:
        allowed = Literal[tuple(sorted(limits.models))]  # type: ignore[valid-type]
        model_field = (allowed | None, Field(limits.default_model))
    shared: dict[str, Any] = {
        "model": model_field,
        "temperature": (float | None, Field(None, ge=0, le=2, allow_inf_nan=False)),
        "max_tokens": (int | None, Field(None, ge=1, le=limits.max_tokens)),
    }
    completion = create_model(
        "CompletionBody",
        __config__=ConfigDict(
            **_STRICT, json_schema_extra={"examples": [{"prompt": "Write a haiku about rain"}]}
        ),
        prompt=(str, Field(min_length=1)),
        **shared,
    )
    chat = create_model(
        "ChatBody",
        __config__=ConfigDict(
            **_STRICT,
            json_schema_extra={
                "examples": [{"messages": [{"role": "user", "content": "Write a haiku"}]}]
            },
        ),
        messages=(list[ChatMessage], Field(min_length=1, max_length=limits.max_messages)),
        **shared,
    )
    return completion, chat


class _BodyLimitRoute(APIRoute):
    """Rejects oversized and non-JSON bodies before FastAPI reads or parses them."""

    limit = Limits().max_body_bytes

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        limit = self.limit

        async def checked(request: Request) -> Response:
            error = await _read_body(request, limit)
            if error is not None:
                return JSONResponse(error.as_json(), error.status)
            try:
                return await handler(request)
            except RequestValidationError as exc:
                raise _renderable(exc) from None

        return checked


async def _read_body(
    request: Request, limit: int, *, check_type: bool = True
) -> RequestError | None:
    """Read the body into the request, at most ``limit`` bytes; the error, if any."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        return _too_large(limit)
    if check_type:
        try:
            check_content_type(request.headers.get("content-type"))
        except RequestError as error:
            return error
    body = bytearray()
    try:
        async for chunk in request.stream():
            body += chunk
            if len(body) > limit:
                return _too_large(limit)
    except ClientDisconnect:
        return RequestError("body", "the client left before sending all of it")
    try:
        body.decode("utf-8")
    except UnicodeDecodeError:
        return RequestError("body", "is not valid UTF-8")
    if body.startswith(b"\xef\xbb\xbf") or b"\x00" in body[:4]:
        # FastAPI parses bytes, and json.loads() sniffs them for a BOM, UTF-16 and
        # UTF-32 (even when they are valid UTF-8, NULs and all); the kit reads
        # UTF-8 text, as Flask and Django do.
        return RequestError("body", "is not valid JSON")
    # Starlette's own cache: FastAPI's request.body() returns it without reading again.
    request._body = bytes(body)
    return None


def _too_large(limit: int) -> RequestError:
    return RequestError("body", f"must be at most {limit} bytes", 413)


def _renderable(exc: RequestValidationError) -> RequestValidationError:
    """``exc``, or a copy without the inputs when JSON cannot carry them.

    FastAPI's 422 echoes each input with ``allow_nan=False`` and UTF-8: a NaN,
    an Infinity (``1e999``) or a lone surrogate (``"\\ud800"``) would turn it into a 500.
    """
    errors = exc.errors()
    try:
        json.dumps(errors, allow_nan=False, ensure_ascii=False, default=str).encode("utf-8")
    except (ValueError, UnicodeEncodeError):
        errors = [{k: v for k, v in error.items() if k != "input"} for error in errors]
        return RequestValidationError(errors, body=None, endpoint_ctx=exc.endpoint_ctx)
    return exc


def _static_endpoint(path: Path, media_type: str) -> Callable[[], Awaitable[FileResponse]]:
    async def endpoint() -> FileResponse:
        return FileResponse(path, media_type=media_type)

    return endpoint
