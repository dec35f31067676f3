"""Serve Anthropic's Messages API (``Anthropic`` or ``AsyncAnthropic``) through the routes.

:class:`AnthropicChat` maps a validated request onto ``client.messages.create``
with ``stream=True``; the kit's chunk normalizer reads the raw stream events it
returns (text, thinking, tool use, stop reason, usage).  The ``anthropic``
package itself is not imported here: any object with ``messages.create`` works.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterable, Mapping
from typing import Any

from .clients import LLMRequest, acall_client
from .requests import ChatRequest, RequestError

__all__ = ["AnthropicChat"]

DEFAULT_MAX_TOKENS = 1024

# Arguments the adapter builds from the request; options must not replace them.
_RESERVED = ("messages", "stream")


class AnthropicChat:
    """A callable client for the routers, backed by ``client.messages.create(..., stream=True)``.

    ``client`` is ``anthropic.Anthropic`` (Flask, Django under WSGI) or
    ``anthropic.AsyncAnthropic`` (FastAPI, Starlette, Django under ASGI).
    ``model`` is used when the request names none; ``max_tokens`` (which
    Anthropic requires) when the request sets none.  Anthropic has no system
    role: the request's system messages, or else ``system``, go to the
    ``system`` parameter.  ``tools`` and ``thinking`` (a dict such as
    ``{"type": "enabled", "budget_tokens": 2048}``, or just the budget as an
    int) are set here, on the server, never by the browser.  A ``temperature``
    in the request travels in ``extra_body`` (the SDK's own keyword is gone
    since 1.0).  Other keyword arguments (``tool_choice``, ``stop_sequences``,
    ``metadata``, ``extra_headers``, ...) are passed to every ``create()`` call.

        from anthropic import AsyncAnthropic
        llm = AnthropicChat(AsyncAnthropic(), model="claude-sonnet-4-5", system="Be brief.")
        app.include_router(create_router(llm), prefix="/llm")
    """

    def __init__(
        self,
        client: Any,
        *,
        model: str | None = None,
        max_tokens: int = DEFAULT_MAX_TOKENS,
        system: str | Iterable[Mapping[str, Any]] | None = None,
        tools: Iterable[Mapping[str, Any]] | None = None,
        thinking: Mapping[str, Any] | int | None = None,
        **options: Any,
    ) -> None:
        create = getattr(getattr(client, "messages", None), "create", None)
        if not callable(create):
            raise TypeError(
                f"expected an Anthropic client (with messages.create), got {type(client).__name__}"
            )
        if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1:
            raise ValueError(f"expected max_tokens to be a positive int, got {max_tokens!r}")
        reserved = sorted(set(_RESERVED) & set(options))
        if reserved:
            raise TypeError(
                f"AnthropicChat builds {', '.join(reserved)} itself from each request; "
                f"do not pass {reserved[0]}="
            )
        self.client = client
        self.model = model
        self.max_tokens = max_tokens
        self.system = system if system is None or isinstance(system, str) else list(system)
        self.tools = None if tools is None else list(tools)
        self.thinking = _thinking(thinking)
        self.options = options
        budget = self._budget()
        if budget is not None and max_tokens <= budget:
            raise ValueError(
                f"expected max_tokens above the thinking budget ({budget}), got {max_tokens}"
            )

    def arguments(self, request: LLMRequest) -> dict[str, Any]:
        """The keyword arguments of ``messages.create`` for one validated request."""
        model = request.model or self.model
        if model is None:
            raise RequestError(
                "model", "is required: name one in the request or in AnthropicChat()"
            )
        if isinstance(request, ChatRequest):
            system_texts = [m["content"] for m in request.messages if m.get("role") == "system"]
            messages = [
                {"role": m["role"], "content": m["content"]}
                for m in request.messages
                if m.get("role") != "system"
            ]
        else:
            system_texts = []
            messages = [{"role": "user", "content": request.prompt}]
        if not messages:
            raise RequestError("messages", "must hold a user or assistant message, not only system")
        max_tokens = request.max_tokens or self.max_tokens
        budget = self._budget()
        if budget is not None and max_tokens <= budget:
            raise RequestError(
                "max_tokens",
                f"must be greater than the thinking budget ({budget}), got {max_tokens}",
            )
        arguments: dict[str, Any] = {
            **self.options,
            "model": model,
            "max_tokens": max_tokens,
            "messages": messages,
            "stream": True,
        }
        system = "\n\n".join(system_texts) if system_texts else self.system
        if system is not None:
            arguments["system"] = system
        if self.tools is not None:
            arguments["tools"] = self.tools
        if self.thinking is not None:
            arguments["thinking"] = self.thinking
        if request.temperature is not None:
            extra_body = dict(self.options.get("extra_body") or {})
            arguments["extra_body"] = {**extra_body, "temperature": request.temperature}
        return arguments

    def _budget(self) -> int | None:
        budget = (self.thinking or {}).get("budget_tokens")
        return budget if isinstance(budget, int) and not isinstance(budget, bool) else None

    def __call__(self, request: LLMRequest) -> Any:
        """Start the call for one validated request: the SDK's event stream, or an awaitable."""
        return self.client.messages.create(**self.arguments(request))

    async def acall(self, request: LLMRequest) -> Any:
        """The stream for async skins (see ``acall_client``), never blocking the loop.

        ``AsyncAnthropic`` is awaited on the loop; ``Anthropic``, whose call blocks
        until the response starts, is called in a thread of its own.
        """
        arguments = self.arguments(request)
        create = self.client.messages.create
        if inspect.iscoroutinefunction(inspect.unwrap(create)):
            return await create(**arguments)
        return await acall_client(lambda _request: create(**arguments), request)

    def __repr__(self) -> str:
        return f"AnthropicChat({type(self.client).__name__}, model={self.model!r})"


def _thinking(value: Mapping[str, Any] | int | None) -> dict[str, Any] | None:
    if value is None:
        return None
    if isinstance(value, bool):
        raise TypeError("expected thinking to be a dict or a token budget (int), got bool")
    if isinstance(value, int):
        return {"type": "enabled", "budget_tokens": value}
    if isinstance(value, Mapping):
        return dict(value)
    raise TypeError(
        f"expected thinking to be a dict or a token budget (int), got {type(value).__name__}"
    )
