"""Call an LLM client for a validated request, whatever its shape."""

from __future__ import annotations

import logging
from typing import Any

from .requests import ChatRequest, CompletionRequest, RequestError

__all__ = ["LLMRequest", "call_client", "client_error"]

logger = logging.getLogger("indox_integrations")

LLMRequest = CompletionRequest | ChatRequest


def _is_openai(client: Any) -> bool:
    completions = getattr(getattr(client, "chat", None), "completions", None)
    return callable(getattr(completions, "create", None))


def _options(request: LLMRequest) -> dict[str, Any]:
    options = {"temperature": request.temperature, "max_tokens": request.max_tokens}
    return {key: value for key, value in options.items() if value is not None}


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
    chat = isinstance(request, ChatRequest)
    if _is_openai(client):
        if request.model is None:
            raise RequestError("model", "is required by this client")
        messages = (
            request.messages
            if isinstance(request, ChatRequest)
            else [{"role": "user", "content": request.prompt}]
        )
        return client.chat.completions.create(
            model=request.model,
            messages=messages,
            stream=True,
            stream_options={"include_usage": True},
            **_options(request),
        )
    method = getattr(client, "chat" if chat else "completion", None)
    if callable(method):
        options = _options(request)
        if request.model is not None:
            options["model"] = request.model
        first = request.messages if isinstance(request, ChatRequest) else request.prompt
        return method(first, stream=True, return_generator=True, **options)
    if callable(client):
        return client(request)
    raise TypeError(
        f"expected an indoxRouter-style client, an OpenAI client or a callable, "
        f"got {type(client).__name__}"
    )


_STATUS_BY_NAME = (
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
    logger.error("the LLM client failed before streaming", exc_info=exc)
    status = 502
    if isinstance(exc, RequestError):
        return exc.status, exc.as_json()
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
