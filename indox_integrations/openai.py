"""Serve the OpenAI SDK, or any OpenAI-compatible server, through the kit's routes.

The routers accept an ``OpenAI`` or ``AsyncOpenAI`` client as it is; wrap it in
:class:`OpenAIChat` to give it a default model, a system prompt, extra
``create()`` arguments, or to answer without streaming.  The ``openai`` package
itself is not imported here: any object with ``chat.completions.create`` works.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from .clients import LLMRequest
from .requests import ChatRequest, RequestError

__all__ = ["OpenAIChat"]


class OpenAIChat:
    """A callable client for the routers, backed by ``client.chat.completions.create``.

    ``client`` is ``openai.OpenAI`` or ``openai.AsyncOpenAI`` (pointed anywhere
    with ``base_url``: llama.cpp, vLLM, Ollama, ...).  ``model`` is used when
    the request names none.  ``system`` is prepended as a system message unless
    the request brings its own.  ``stream=False`` is for models or servers that
    cannot stream: the full answer goes out as one text event plus usage, on the
    same route.  ``tools``, ``tool_choice`` and ``reasoning_effort`` go to
    every call as they are; like everything here they are the server's to
    choose, never read from the request.  Other keyword arguments are passed to
    every ``create()`` call too.

        from openai import AsyncOpenAI
        llm = OpenAIChat(AsyncOpenAI(), model="gpt-4o-mini", system="Be brief.")
        app.include_router(create_router(llm), prefix="/llm")
    """

    def __init__(
        self,
        client: Any,
        *,
        model: str | None = None,
        system: str | None = None,
        stream: bool = True,
        tools: Sequence[Mapping[str, Any]] | None = None,
        tool_choice: str | Mapping[str, Any] | None = None,
        reasoning_effort: str | None = None,
        **options: Any,
    ) -> None:
        create = getattr(
            getattr(getattr(client, "chat", None), "completions", None), "create", None
        )
        if not callable(create):
            raise TypeError(
                f"expected an OpenAI client (with chat.completions.create), "
                f"got {type(client).__name__}"
            )
        self.client = client
        self.model = model
        self.system = system
        self.stream = stream
        if tools is not None:
            options["tools"] = list(tools)
        if tool_choice is not None:
            options["tool_choice"] = tool_choice
        if reasoning_effort is not None:
            options["reasoning_effort"] = reasoning_effort
        self.options = options

    def __call__(self, request: LLMRequest) -> Any:
        """Start the call for one validated request: a chunk stream, a response, or an awaitable."""
        model = request.model or self.model
        if model is None:
            raise RequestError("model", "is required: name one in the request or in OpenAIChat()")
        messages: list[Mapping[str, str]] = (
            list(request.messages)
            if isinstance(request, ChatRequest)
            else [{"role": "user", "content": request.prompt}]
        )
        if self.system is not None and not any(m.get("role") == "system" for m in messages):
            messages.insert(0, {"role": "system", "content": self.system})
        arguments: dict[str, Any] = {**self.options, "model": model, "messages": messages}
        for name in ("temperature", "max_tokens"):
            value = getattr(request, name)
            if value is not None:
                arguments[name] = value
        if self.stream:
            arguments["stream"] = True
            arguments["stream_options"] = {
                **self.options.get("stream_options", {}),
                "include_usage": True,
            }
        return self.client.chat.completions.create(**arguments)

    def __repr__(self) -> str:
        return f"OpenAIChat({type(self.client).__name__}, model={self.model!r})"
