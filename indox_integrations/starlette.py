"""Server-sent event responses for Starlette, and so for FastAPI."""

from __future__ import annotations

import sys
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any, cast

try:
    import anyio.lowlevel
    from starlette.background import BackgroundTask
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response, StreamingResponse
    from starlette.routing import Route
    from starlette.types import Receive, Scope, Send
except ImportError as err:  # pragma: no cover - depends on the environment
    raise ImportError(
        'indox_integrations.starlette needs Starlette: pip install "indox-integrations[starlette]"'
    ) from err

from .concurrency import close_async
from .protocols import Reply, Stream
from .resumable import (
    DETACH_TIMEOUT,
    Owner,
    Resumable,
    ResumableOptions,
    Served,
    abegin,
    acancel,
    aresume,
    aresume_chat,
    configure,
    resume_url,
    standalone,
)
from .stores import Store
from .stream import AsyncSSEStream, StreamOptions, async_sse_stream

if TYPE_CHECKING:
    if sys.version_info >= (3, 11):
        from typing import Unpack
    else:
        from typing_extensions import Unpack

__all__ = ["SSEResponse", "resumable_response", "resume_routes", "sse_response"]


class SSEResponse(StreamingResponse):
    """A ``StreamingResponse`` of an LLM chunk stream as server-sent events.

    The body is :func:`~indox_integrations.async_sse_stream` of ``source``;
    the upstream is closed as soon as the client goes away.
    """

    media_type = "text/event-stream"

    def __init__(
        self,
        source: Any,
        *,
        status_code: int = 200,
        headers: Mapping[str, str] | None = None,
        background: BackgroundTask | None = None,
        **options: Unpack[StreamOptions],
    ) -> None:
        self.stream: AsyncSSEStream = async_sse_stream(source, **options)
        super().__init__(
            self.stream,
            status_code=status_code,
            headers={**self.stream.headers, **(headers or {})},
            background=background,
        )

    async def stream_response(self, send: Send) -> None:
        try:
            await send(
                {
                    "type": "http.response.start",
                    "status": self.status_code,
                    "headers": self.raw_headers,
                }
            )
            async for chunk in self.body_iterator:
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
                # uvicorn's send() returns at once, even after a disconnect, and a
                # ready upstream never suspends: without a checkpoint the disconnect
                # listener would not run (and cancel us) until the upstream ran dry.
                if not self.stream.suspended():
                    await anyio.lowlevel.checkpoint()
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            # On disconnect Starlette cancels this coroutine (ASGI < 2.4) or send()
            # raises (2.4); when that lands in send(), the stream is left suspended
            # at a yield and nothing else would close the upstream. close() is
            # synchronous, so it also runs inside an already cancelled scope.
            self.stream.close()


def sse_response(
    source: Any,
    *,
    status_code: int = 200,
    headers: Mapping[str, str] | None = None,
    background: BackgroundTask | None = None,
    **options: Unpack[ResumableOptions],
) -> Response:
    """Stream ``source`` (a sync or async chunk stream) as server-sent events.

    Options are those of :func:`~indox_integrations.sse_stream`. A sync
    upstream runs in a thread of its own (no thread-pool limit); the upstream
    is closed when the stream ends, fails, times out or the client leaves.

    With ``resumable=True`` (and ``store``, ``detach_timeout``, ``owner``: see
    :func:`indox_integrations.resumable.configure`) the generation goes on apart
    from this response, which is its first reader; serve :func:`resume_routes`
    next to this route for the resume URL it names (``{prefix}/streams/{id}``).

        async def stream(request):
            body = await request.json()
            return sse_response(client.completion(body["prompt"], stream=True,
                                                  return_generator=True), usage="attach")
    """
    resumable = configure(options)
    if resumable is not None:
        return _Deferred(resumable, source, options, status_code, headers, background)
    stream_options = cast(StreamOptions, options)
    return SSEResponse(
        source, status_code=status_code, headers=headers, background=background, **stream_options
    )


# Resumable streams (see indox_integrations.resumable): the skin only translates.


class _Reader(StreamingResponse):
    """One reader of a resumable stream: every send is followed by a checkpoint."""

    async def stream_response(self, send: Send) -> None:
        start = {
            "type": "http.response.start",
            "status": self.status_code,
            "headers": self.raw_headers,
        }
        await send(start)
        async for chunk in self.body_iterator:
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
            # As in SSEResponse: let the disconnect listener run between ready pieces.
            await anyio.lowlevel.checkpoint()
        await send({"type": "http.response.body", "body": b"", "more_body": False})


def _answer(answer: Reply | Served) -> Response:
    if isinstance(answer, Served):
        return _Reader(answer.body, headers=dict(answer.headers))
    if answer.status == 204:
        return Response(status_code=204, headers=dict(answer.headers))
    return JSONResponse(answer.body, answer.status, headers=dict(answer.headers))


async def resumable_response(
    resumable: Resumable,
    request: Request,
    start: Callable[[], Awaitable[Any]],
    options: Callable[[], Mapping[str, Any]],
    *,
    route: str | None = None,
    chat_id: str | None = None,
) -> Response:
    """Start a resumable stream and answer with its first reader.

    The stream is made in the store first (503 JSON when it cannot be reached, and
    ``start`` is never called); ``start()`` then calls the client and returns its
    chunk stream, a :class:`~indox_integrations.protocols.Stream`, or a ``Response``
    to answer instead.  ``options()`` gives the stream options, once it starts.
    ``route`` is this route's path (the resume URL replaces it with ``/streams/{id}``);
    ``chat_id`` names the AI SDK chat, for ``GET /chat/{chat_id}/stream``.
    """
    owner = await resumable.aowner_of(request)
    launch = await abegin(resumable, owner, chat_id=chat_id)
    if isinstance(launch, Reply):
        return _answer(launch)
    try:
        got = await start()
    except BaseException:
        await launch.aabandon()
        raise
    if isinstance(got, Response):
        await launch.aabandon()
        return got
    stream_options = dict(options())
    if isinstance(got, Stream):
        got, stream_options["protocol"] = got.source, got.encoder
    url = resume_url(request.url.path, route, launch.stream_id)
    return _answer(launch.start_task(got, stream_options, url))


class _Deferred(Response):
    """``sse_response(resumable=True)``: the store is asked when the response is sent;
    the stream's reader gets the status, headers and background task."""

    def __init__(
        self,
        resumable: Resumable,
        source: Any,
        options: Mapping[str, Any],
        status_code: int,
        headers: Mapping[str, str] | None,
        background: BackgroundTask | None,
    ) -> None:
        super().__init__(status_code=status_code, background=background)
        self.resumable = resumable
        self.source = source
        self.options = options
        self.given_headers = headers or {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def start() -> Any:
            return self.source

        request = Request(scope, receive)
        response = await resumable_response(self.resumable, request, start, lambda: self.options)
        if isinstance(response, _Reader):
            response.status_code = self.status_code
            response.headers.update(self.given_headers)
            response.background = self.background
        else:
            await close_async(self.source)  # the store is away: nobody will read it
        await response(scope, receive, send)


ResumeEndpoint = Callable[[Request], Awaitable[Response]]


def resume_endpoints(
    resumable: Resumable, protocol: str = "indox", options: Mapping[str, Any] | None = None
) -> list[tuple[str, list[str], ResumeEndpoint, str]]:
    """``(path, methods, endpoint, name)`` of the resume routes, for Starlette and FastAPI."""

    async def stream(request: Request) -> Response:
        stream_id = request.path_params["stream_id"]
        owner = await resumable.aowner_of(request)
        if request.method == "DELETE":
            return _answer(await acancel(resumable, stream_id, owner=owner))
        last = request.headers.get("last-event-id") or request.query_params.get("last_event_id")
        answer = await aresume(
            resumable, stream_id, owner=owner, last_event_id=last, protocol=protocol,
            options=options,
        )  # fmt: skip
        return _answer(answer)

    async def chat(request: Request) -> Response:
        owner = await resumable.aowner_of(request)
        chat_id = request.path_params["chat_id"]
        return _answer(await aresume_chat(resumable, chat_id, owner=owner, options=options))

    name = protocol.replace("-", "_")
    endpoints: list[tuple[str, list[str], ResumeEndpoint, str]]
    endpoints = [("/streams/{stream_id}", ["GET", "DELETE"], stream, f"{name}_resume")]
    if protocol == "ai-sdk":
        endpoints.append(("/chat/{chat_id}/stream", ["GET"], chat, f"{name}_resume_chat"))
    return endpoints


def resume_routes(
    resumable: Resumable | None = None,
    *,
    protocol: str = "indox",
    store: Store | None = None,
    detach_timeout: float = DETACH_TIMEOUT,
    owner: Owner | str | None = None,
    heartbeat: float | None = 15.0,
) -> list[Route]:
    """Starlette routes that resume (``GET``) and cancel (``DELETE``) ``/streams/{id}``.

    Mount them where the streaming routes are: ``sse_response`` names
    ``{prefix}/streams/{id}`` as the resume URL.  Pass the same ``store`` and ``owner``
    as to ``sse_response`` (``resumable=True`` is implied), or a ``Resumable``.

        routes = [Route("/llm/ask", ask, methods=["POST"]),
                  Mount("/llm", routes=resume_routes(store=store))]
    """
    resumable = standalone(resumable, store, detach_timeout, owner)
    options = {"heartbeat": heartbeat}
    return [
        Route(path, endpoint, methods=methods, name=name)
        for path, methods, endpoint, name in resume_endpoints(resumable, protocol, options)
    ]
