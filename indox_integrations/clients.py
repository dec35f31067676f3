"""Call an LLM client for a validated request, whatever its shape."""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import logging
from collections.abc import Callable
from typing import Any

from .concurrency import close_sync, run_in_thread
from .requests import ChatRequest, CompletionRequest, RequestError

__all__ = ["LLMRequest", "acall_client", "call_client", "client_error"]

logger = logging.getLogger("indox_integrations")

LLMRequest = CompletionRequest | ChatRequest


def _is_openai(client: Any) -> bool:
    completions = getattr(getattr(client, "chat", None), "completions", None)
    return callable(getattr(completions, "create", None))


def _options(request: LLMRequest) -> dict[str, Any]:
    options = {"temperature": request.temperature, "max_tokens": request.max_tokens}
    return {key: value for key, value in options.items() if value is not None}


def _entry(
    client: Any, request: LLMRequest
) -> tuple[Callable[..., Any], tuple[Any, ...], dict[str, Any]]:
    """The function :func:`call_client` calls, with its arguments."""
    if _is_openai(client):
        if request.model is None:
            raise RequestError("model", "is required by this client")
        messages = (
            request.messages
            if isinstance(request, ChatRequest)
            else [{"role": "user", "content": request.prompt}]
        )
        options = {
            "model": request.model,
            "messages": messages,
            "stream": True,
            "stream_options": {"include_usage": True},
            **_options(request),
        }
        return client.chat.completions.create, (), options
    method = getattr(client, "chat" if isinstance(request, ChatRequest) else "completion", None)
    if callable(method):
        options = {"stream": True, "return_generator": True, **_options(request)}
        if request.model is not None:
            options["model"] = request.model
        first = request.messages if isinstance(request, ChatRequest) else request.prompt
        return method, (first,), options
    if callable(client):
        return client, (request,), {}
    raise TypeError(
        f"expected an indoxRouter-style client, an OpenAI client or a callable, "
        f"got {type(client).__name__}"
    )


def call_client(client: Any, request: LLMRequest) -> Any:
    """Start a streaming call; returns a chunk stream, or an awaitable of one.

    ``client`` is one of:

    - an indoxRouter-shaped client (``completion(prompt, ...)`` and
      ``chat(messages, ...)``, sync or async), called with
      ``stream=True, return_generator=True``;
    - an OpenAI SDK client (``OpenAI`` or ``AsyncOpenAI``), called through
      ``chat.completions.create(..., stream=True)`` with usage included;
    - any callable taking the validated request and returning a chunk stream.
    """
    function, args, kwargs = _entry(client, request)
    return function(*args, **kwargs)


async def acall_client(client: Any, request: LLMRequest) -> Any:
    """:func:`call_client` for async code, never blocking the event loop.

    An async client is awaited on the loop.  A sync one (indoxRouter's,
    ``OpenAI``) opens its HTTP request inside the call, so the call runs in a
    thread of its own.  A client with an ``acall(request)`` method (an adapter
    such as ``LangChainChat``) is called through it instead, on the loop.
    Exceptions propagate unchanged.
    """
    acall = getattr(client, "acall", None)
    if callable(acall):
        result = acall(request)
        return await result if inspect.isawaitable(result) else result
    function, args, kwargs = _entry(client, request)
    if inspect.iscoroutinefunction(function) or inspect.iscoroutinefunction(
        type(function).__call__
    ):
        return await function(*args, **kwargs)
    loop = asyncio.get_running_loop()
    future: asyncio.Future[Any] = loop.create_future()
    context = contextvars.copy_context()

    def failed(error: BaseException) -> None:
        loop.call_soon_threadsafe(_settle, future, None, error)

    def run() -> None:
        try:
            result = context.run(function, *args, **kwargs)
        except BaseException as exc:
            failed(exc)
        else:
            loop.call_soon_threadsafe(_settle, future, result, None)

    run_in_thread(run, "indox-client-call", failed)
    result = await future
    if inspect.isawaitable(result):
        result = await result
    return result


def _settle(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if future.cancelled():
        # Nobody waits for this stream any more: do not leave its connection open.
        close_sync(result)
    elif error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


_STATUS_BY_NAME = (
    ("OutOfThreads", 503),
    ("InvalidParameters", 400),
    ("Validation", 400),
    ("RateLimit", 429),
    ("NotFound", 404),
    ("Authentication", 502),
    ("PermissionDenied", 502),
    ("InsufficientCredits", 402),
    ("Timeout", 504),
    ("Network", 502),
    ("Connection", 502),
)


def client_error(exc: BaseException) -> tuple[int, dict[str, Any]]:
    """The HTTP status and JSON body for a client that failed before streaming.

    Invalid arguments are the caller's fault (400, 404, 429); a rejected key
    or an unreachable provider is the server's (502, 504).  The message names
    the exception class and its first line, never a traceback.
    """
    if isinstance(exc, RequestError):
        return exc.status, exc.as_json()
    logger.error("the LLM client failed before streaming", exc_info=exc)
    status = 502
    if isinstance(exc, (ValueError, LookupError)):
        status = 400
    name = type(exc).__name__
    for part, code in _STATUS_BY_NAME:
        if part in name:
            status = code
            break
    upstream_status = getattr(exc, "status_code", None)
    if isinstance(upstream_status, int) and upstream_status in (400, 404, 413, 422, 429):
        status = upstream_status
    first_line = (str(exc).strip().splitlines() or [""])[0][:300]
    message = f"{name}: {first_line}" if first_line else name
    return status, {"error": {"type": "upstream_error", "message": message}}
