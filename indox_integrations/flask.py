"""Flask: a streaming response and a blueprint with ``POST /stream`` and ``POST /chat``.

    app.register_blueprint(create_blueprint(client), url_prefix="/llm")

``resume_blueprint`` serves the resume URLs of ``sse_response(..., resumable=True)``.

Each open stream holds one server thread, plus the thread that reads the
upstream: serve with a threaded server (``gunicorn --worker-class gthread
--threads 64``), never gunicorn's default sync workers.
"""

from __future__ import annotations

import inspect
import logging
import sys
from collections.abc import Callable, Collection, Iterator
from typing import TYPE_CHECKING, Any, cast

try:
    from flask import (
        Blueprint,
        Response,
        copy_current_request_context,
        current_app,
        has_request_context,
        jsonify,
        request,
        stream_with_context,
    )
    from werkzeug.exceptions import HTTPException, MethodNotAllowed, RequestEntityTooLarge
    from werkzeug.wsgi import ClosingIterator
except ImportError as err:  # pragma: no cover - depends on the environment
    raise ImportError(
        'indox_integrations.flask needs Flask: pip install "indox-integrations[flask]"'
    ) from err

from . import shutdown
from .assets import STATIC_DIR
from .clients import LLMRequest, call_client, client_error
from .overload import Overload, Refusal, Slot, request_function
from .protocols import Reply, Route, Stream, StreamProtocol, named_protocol, serve
from .requests import Limits, RequestError, parse_chat, parse_completion, read_json_body
from .resumable import (
    DETACH_TIMEOUT,
    Owner,
    Resumable,
    ResumableOptions,
    Served,
    begin,
    chat_id_of,
    configure,
    resume_url,
    standalone,
)
from .resumable import cancel as cancel_stream
from .resumable import resume as resume_stream
from .resumable import resume_chat as resume_chat_stream
from .stores import Store
from .stream import StreamOptions, check_options, sse_stream
from .wsgi import abort, client_gone, discard_body

if TYPE_CHECKING:
    if sys.version_info >= (3, 11):
        from typing import Unpack
    else:
        from typing_extensions import Unpack

__all__ = ["create_blueprint", "resume_blueprint", "sse_response"]

logger = logging.getLogger("indox_integrations")

_READ_SIZE = 64 * 1024


def sse_response(
    source: Any,
    **options: Unpack[ResumableOptions],
) -> Response:
    """Stream an LLM client's chunks as server-sent events from a Flask view.

    The options are those of :func:`indox_integrations.sse_stream`.  The
    stream runs inside the request context, so ``on_usage`` and
    ``on_complete`` can use ``request``, ``g`` and ``current_app``.  When the
    server closes the response (stream finished, or client gone) the upstream
    is closed.

        @app.post("/ask")
        def ask():
            return sse_response(client.completion(request.json["prompt"], stream=True,
                                                  return_generator=True))

    With ``resumable=True`` (and ``store``, ``detach_timeout``, ``owner``: see
    :func:`indox_integrations.resumable.configure`) the generation runs in a thread
    of its own, apart from this response, its first reader; :func:`resume_blueprint`
    (or a blueprint made with ``resumable=True``) serves the resume URL it names
    (``{prefix}/streams/{id}``).
    """
    if not has_request_context():
        raise RuntimeError("sse_response() needs a request context: call it inside a Flask view")
    resumable = configure(options)
    if resumable is not None:
        return _resumable(resumable, lambda: source, lambda: options)
    environ = request.environ
    stream_options = cast(StreamOptions, options)
    stream = sse_stream(source, client_gone(environ), abort=abort(environ), **stream_options)
    # Closing the context generator closes ``stream`` inside the request
    # context; the extra callback covers a response closed before its first
    # read, when that generator has not entered the stream yet.
    body = ClosingIterator(cast(Iterator[bytes], stream_with_context(stream)), [stream.close])
    # direct_passthrough: the server iterates our bytes as they are, with no
    # re-encoding layer and no Content-Length.
    return current_app.response_class(body, headers=dict(stream.headers), direct_passthrough=True)


class _Blueprint(Blueprint):
    def send_static_file(self, filename: str) -> Response:
        response = super().send_static_file(filename)
        # Browsers refuse module scripts served with another type, and the
        # platform's mimetypes table is not always right about ``.js``
        # (``.ts`` is an MPEG stream to it).
        if filename.endswith(".js"):
            response.mimetype = "text/javascript"
        elif filename.endswith(".ts"):
            response.mimetype = "text/plain"
        return response


def create_blueprint(
    client: Any,
    name: str = "indox",
    *,
    limits: Limits | None = None,
    api_keys: Collection[str] | None = None,
    max_streams: int | None = None,
    max_streams_per_key: int | None = None,
    limit_key: Callable[[Any], Any] | None = None,
    **stream_options: Unpack[ResumableOptions],
) -> Blueprint:
    """A blueprint with ``POST /stream``, ``POST /chat`` and the JS helper.

    ``client`` is an indoxRouter-style client, an OpenAI client or a callable
    taking the validated request (see :func:`indox_integrations.call_client`);
    it must be synchronous.  ``POST /stream`` takes ``{"prompt", "model"?,
    "temperature"?, "max_tokens"?}``, ``POST /chat`` takes ``{"messages":
    [{"role", "content"}, ...], ...}``; both answer with server-sent events.
    Bodies are checked against ``limits`` (default :class:`Limits`) before
    the client is called: a JSON error naming the field, 400, 413 when too
    large, 415 when not JSON, 405 for another method.  ``usage`` defaults to
    ``"attach"``; the other options are those of :func:`sse_response`.  The
    browser helper is served at ``{url_prefix}/static/indox-stream.js``.
    Register it more than once under different names and prefixes.

        app.register_blueprint(create_blueprint(Client(api_key=...)), url_prefix="/llm")

    ``protocol="openai"`` serves ``POST /chat/completions`` and ``GET /models``
    instead (register it under ``/v1``), ``protocol="ai-sdk"`` serves ``POST
    /chat`` for the Vercel AI SDK; ``api_keys`` is checked by protocols that take keys.

    ``context`` is a function of the ``request`` whose value goes to the
    stream's ``context`` (``StreamReport.context``, the log record), e.g.
    ``context=lambda request: {"user": g.user.id}``.  ``max_streams`` answers
    503 while the process holds that many streams, ``max_streams_per_key``
    answers 429 while ``limit_key(request)`` holds that many (see
    :mod:`indox_integrations.overload`).  Require a login with
    ``blueprint.before_request``: a hook returning a 401 answers before the
    client is called.

    ``resumable=True`` (with ``store``, ``detach_timeout``, ``owner``, a function of
    the ``request``) runs each generation apart from its connection and adds
    ``GET``/``DELETE /streams/<stream_id>`` (and, for ``"ai-sdk"``, ``GET
    /chat/<chat_id>/stream``): see :mod:`indox_integrations.resumable`.
    """
    shutdown.install()  # the app loads in the worker's main thread, after the server's handler
    blueprint = _Blueprint(name, __name__, static_folder=STATIC_DIR, static_url_path="/static")
    resume = configure(stream_options)
    options: StreamOptions = {"usage": "attach", **cast(StreamOptions, stream_options)}
    context = request_function("context", options.pop("context", None))
    check_options(options)  # bad options fail here, not on the first request
    limits = limits or Limits()
    protocol = options.pop("protocol", "indox")
    route = _Route(options, Overload(max_streams, max_streams_per_key, limit_key), context)
    served = named_protocol(protocol)
    views = (
        _indox_views(blueprint, client, limits, route, resume)
        if protocol == "indox"
        else _protocol_views(blueprint, served, client, limits, api_keys, route, resume)
    )
    if resume is not None:
        views += _resume_views(blueprint, resume, served.name, options)

    blueprint.before_app_request(_method_not_allowed(views, served))
    return blueprint


def resume_blueprint(
    resumable: Resumable | None = None,
    name: str = "indox_resume",
    *,
    protocol: str = "indox",
    store: Store | None = None,
    detach_timeout: float = DETACH_TIMEOUT,
    owner: Owner | str | None = None,
    heartbeat: float | None = 15.0,
) -> Blueprint:
    """A blueprint that resumes (``GET``) and cancels (``DELETE``) ``/streams/<stream_id>``.

    It serves the streams of ``sse_response(..., resumable=True)`` in your own views:
    register it where those views are, since the resume URL a stream names is its
    view's path with the last segment replaced by ``streams/<stream_id>``.  Pass the
    same ``store`` and ``owner`` as to ``sse_response`` (``resumable=True`` is implied),
    or a ``Resumable``; ``protocol="ai-sdk"`` adds ``GET /chat/<chat_id>/stream``.

        @app.post("/llm/ask")
        def ask():
            return sse_response(chunks, resumable=True, store=store)

        app.register_blueprint(resume_blueprint(store=store), url_prefix="/llm")
    """
    resumable = standalone(resumable, store, detach_timeout, owner)
    served = named_protocol(protocol)
    blueprint = Blueprint(name, __name__)
    views = _resume_views(blueprint, resumable, served.name, {"heartbeat": heartbeat})
    blueprint.before_app_request(_method_not_allowed(views, served))
    return blueprint


def _method_not_allowed(
    views: tuple[Callable[..., Any], ...], served: type[StreamProtocol]
) -> Callable[[], tuple[Response, int] | None]:
    """An app-wide hook answering a 405 on one of ``views`` with the protocol's JSON error.

    Routing fails before a blueprint is known, so a blueprint's own error handlers
    never see a 405; the hook leaves the app's other routes alone.
    """

    def method_not_allowed() -> tuple[Response, int] | None:
        exc = request.routing_exception
        if not isinstance(exc, MethodNotAllowed):
            return None
        adapter = current_app.create_url_adapter(request)
        if adapter is None:
            return None
        allowed = list(exc.valid_methods or ("POST", "OPTIONS"))
        try:
            endpoint, _ = adapter.match(method=allowed[0])
        except HTTPException:
            return None
        if current_app.view_functions.get(str(endpoint)) not in views:
            return None
        expected = " or ".join(m for m in allowed if m not in ("HEAD", "OPTIONS"))
        error = RequestError("method", f"expected {expected}, got {request.method}", 405)
        response, status = _reply(served.request_error(error))
        response.headers["Allow"] = ", ".join(allowed)
        return response, status

    return method_not_allowed


class _Route:
    """What every route of one blueprint does per request: its limits and its context."""

    def __init__(
        self, options: StreamOptions, overload: Overload, context: Callable[[Any], Any] | None
    ) -> None:
        self.options = options
        self.overload = overload
        self.context = context

    def admit(self) -> Slot | Refusal:
        limit_key = self.overload.limit_key
        return self.overload.admit(None if limit_key is None else limit_key(request))

    def stream_options(self) -> StreamOptions:
        options = self.options.copy()
        if self.context is not None:
            options["context"] = self.context(request)
        return options


def _refused(refusal: Refusal) -> tuple[Response, int]:
    response = jsonify(refusal.as_json())
    response.headers.update(refusal.headers)
    return response, refusal.status


def _indox_views(
    blueprint: Blueprint, client: Any, limits: Limits, route: _Route, resume: Resumable | None
) -> tuple[Callable[..., Any], ...]:
    """``POST /stream`` and ``POST /chat``, the kit's own routes."""

    def serve(parse: Callable[[Any, Limits], LLMRequest]) -> Response | tuple[Response, int]:
        try:
            data = read_json_body(_read_body(limits.max_body_bytes), request.content_type, limits)
            llm_request = parse(data, limits)
        except RequestError as exc:
            return _json_error(exc)
        admitted = route.admit()
        if isinstance(admitted, Refusal):
            return _refused(admitted)
        with admitted as slot:  # given back at once unless the stream takes it over
            options = route.stream_options()

            def start() -> Any:
                try:
                    source = call_client(client, llm_request)
                except Exception as exc:
                    status, payload = client_error(exc)
                    return jsonify(payload), status
                if inspect.isawaitable(source) or hasattr(source, "__aiter__"):
                    return _async_client(source)
                return source

            if resume is not None:
                return _resumable(resume, start, lambda: slot.hand_over(options))
            source = start()
            if isinstance(source, tuple):
                return source
            return sse_response(source, **slot.hand_over(options))

    def stream() -> Response | tuple[Response, int]:
        return serve(parse_completion)

    def chat() -> Response | tuple[Response, int]:
        return serve(parse_chat)

    blueprint.add_url_rule("/stream", "stream", stream, methods=["POST"])
    blueprint.add_url_rule("/chat", "chat", chat, methods=["POST"])
    return (stream, chat)


def _protocol_views(
    blueprint: Blueprint,
    protocol: type[StreamProtocol],
    client: Any,
    limits: Limits,
    api_keys: Collection[str] | None,
    shared: _Route,
    resume: Resumable | None,
) -> tuple[Callable[..., Any], ...]:
    """The routes of another protocol: the body goes to the protocol as it came."""

    def view(route: Route) -> Callable[[], Response | tuple[Response, int]]:
        def endpoint() -> Response | tuple[Response, int]:
            body = b""
            if route.method == "POST":
                try:
                    body = _read_body(limits.max_body_bytes)
                except RequestError as exc:
                    return _reply(protocol.request_error(exc))
            headers = {key.lower(): value for key, value in request.headers.items()}
            result = protocol.handle(route, body, headers, limits, api_keys=api_keys)
            if isinstance(result, Reply):  # an error, or a listing: no client call, no slot
                return _reply(result)
            admitted = shared.admit()
            if isinstance(admitted, Refusal):
                return _reply(admitted.reply(protocol))
            with admitted as slot:  # a non-streamed answer gives it back once collected
                stream_options = shared.stream_options()  # context: before the call
                if resume is not None and result.encoder is not None:

                    def start() -> Any:
                        answer = serve(protocol, result, client)
                        if isinstance(answer, Reply):
                            return _reply(answer)
                        if inspect.isawaitable(answer.source) or hasattr(
                            answer.source, "__aiter__"
                        ):
                            return _async_client(answer.source)
                        return answer

                    hand_over = lambda: slot.hand_over(stream_options)  # noqa: E731
                    return _resumable(resume, start, hand_over, route.path, chat_id_of(body))
                answer = serve(protocol, result, client)
                if isinstance(answer, Reply):
                    return _reply(answer)
                if inspect.isawaitable(answer.source) or hasattr(answer.source, "__aiter__"):
                    return _async_client(answer.source)
                stream_options["protocol"] = answer.encoder
                return sse_response(answer.source, **slot.hand_over(stream_options))

        return endpoint

    views = []
    for route in protocol.routes:
        endpoint = view(route)
        blueprint.add_url_rule(route.path, route.name, endpoint, methods=[route.method])
        views.append(endpoint)
    return tuple(views)


def _resumable(
    resumable: Resumable,
    start: Callable[[], Any],
    options: Callable[[], Any],
    route: str | None = None,
    chat_id: str | None = None,
) -> Response:
    """Make the stream in the store (503 JSON when it is away, the client never called),
    call the client (``start()``: its chunks, a protocol ``Stream``, or an answer
    instead), run the generation in a thread, answer with its first reader."""
    launch = begin(resumable, resumable.owner_of(request), chat_id=chat_id)
    if isinstance(launch, Reply):
        return _response(launch)
    try:
        got = start()
    except BaseException:
        launch.abandon()
        raise
    if isinstance(got, tuple):
        launch.abandon()
        return _with_status(*got)
    stream_options = dict(options())
    if isinstance(got, Stream):
        got, stream_options["protocol"] = got.source, got.encoder
    url = resume_url(request.path, route, launch.stream_id)
    served = launch.start(
        got, stream_options, url, wrap=copy_current_request_context,
        client_gone=client_gone(request.environ),
    )  # fmt: skip
    return _response(served)


def _response(answer: Reply | Served) -> Response:
    if isinstance(answer, Served):
        return current_app.response_class(
            answer.body, headers=dict(answer.headers), direct_passthrough=True
        )
    if answer.status == 204:
        return current_app.response_class(status=204, headers=dict(answer.headers))
    return _with_status(*_reply(answer))


def _with_status(response: Response, status: int) -> Response:
    response.status_code = status
    return response


def _resume_views(
    blueprint: Blueprint, resumable: Resumable, protocol: str, options: StreamOptions
) -> tuple[Callable[..., Any], ...]:
    """``GET``/``DELETE /streams/<stream_id>``, and the AI SDK's chat resume."""

    def streams(stream_id: str) -> Response:
        owner = resumable.owner_of(request)
        if request.method == "DELETE":
            return _response(cancel_stream(resumable, stream_id, owner=owner))
        last = request.headers.get("Last-Event-ID") or request.args.get("last_event_id")
        return _response(
            resume_stream(
                resumable, stream_id, owner=owner, last_event_id=last, protocol=protocol,
                options=options, client_gone=client_gone(request.environ),
            )
        )  # fmt: skip

    def chat_stream(chat_id: str) -> Response:
        owner = resumable.owner_of(request)
        gone = client_gone(request.environ)
        return _response(
            resume_chat_stream(resumable, chat_id, owner=owner, options=options, client_gone=gone)
        )

    blueprint.add_url_rule("/streams/<stream_id>", "resume", streams, methods=["GET", "DELETE"])
    if protocol != "ai-sdk":
        return (streams,)
    blueprint.add_url_rule("/chat/<chat_id>/stream", "resume_chat", chat_stream, methods=["GET"])
    return (streams, chat_stream)


def _reply(reply: Reply) -> tuple[Response, int]:
    response = jsonify(reply.body)
    response.headers.update(reply.headers)
    return response, reply.status


def _read_body(limit: int) -> bytes:
    """The raw body, refusing more than ``limit`` bytes before reading them."""
    try:
        return _read_at_most(limit)
    except RequestError:
        # Left unread, the rest of the body would break the next request on the connection.
        discard_body(request.environ)
        raise


def _read_at_most(limit: int) -> bytes:
    length = request.content_length
    try:
        if length is not None:
            if length > limit:
                raise RequestError("body", f"must be at most {limit} bytes, got {length}", 413)
            # Bounded by Content-Length; cached, so the app can read it again.
            return request.get_data()
        # A chunked body has no length to check first: read one byte past the limit.
        stream = request.stream
        parts: list[bytes] = []
        size = 0
        while size <= limit:
            part = stream.read(min(_READ_SIZE, limit + 1 - size))
            if not part:
                break
            parts.append(part)
            size += len(part)
        if size > limit:
            raise RequestError("body", f"must be at most {limit} bytes", 413)
        return b"".join(parts)
    except RequestEntityTooLarge:  # the app's own MAX_CONTENT_LENGTH is smaller
        raise RequestError("body", "is larger than this server accepts", 413) from None


def _json_error(exc: RequestError) -> tuple[Response, int]:
    return jsonify(exc.as_json()), exc.status


def _async_client(source: Any) -> tuple[Response, int]:
    close = getattr(source, "close", None)
    if callable(close):  # an un-awaited coroutine would warn when collected
        close()
    message = (
        f"the LLM client returned {type(source).__name__}, an async result: an async client "
        "needs an ASGI framework; use a sync client with Flask"
    )
    logger.error(message)
    return jsonify({"error": {"type": "server_error", "message": message}}), 500
