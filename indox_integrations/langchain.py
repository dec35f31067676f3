"""Serve any LangChain chat model through the kit's routes.

``langchain-core`` is imported when :class:`LangChainChat` is built, not when
this module is: ``pip install "indox-integrations[langchain]"``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from typing import Any

from .clients import LLMRequest
from .requests import ChatRequest

__all__ = ["LangChainChat"]

_FORWARDED = ("temperature", "max_tokens")


class LangChainChat:
    """A client for the routers, backed by a LangChain chat model's ``stream()``/``astream()``.

    ``chat_model`` is any ``BaseChatModel`` (``ChatOpenAI``, ``ChatAnthropic``,
    ``ChatOllama``, ...) or a runnable built from one.  Sync skins (Flask,
    Django) iterate ``chat_model.stream()``; async skins call :meth:`acall`,
    which iterates ``chat_model.astream()`` on the event loop, with no thread.

    The browser's messages become ``SystemMessage``/``HumanMessage``/``AIMessage``;
    ``system`` is prepended unless the request brings its own system message.
    The request's ``temperature`` and ``max_tokens`` are passed when the chat
    model has fields of those names; its ``model`` is not used: the chat model
    names its own.  ``tools`` (and ``tool_choice``) go to ``bind_tools()`` once,
    here: tools are the server's to choose, never the request's.  ``config`` is
    the ``RunnableConfig`` of every call (callbacks, tags, metadata); other
    keyword arguments are bound to every call.  Streaming usage is asked for
    (``stream_usage=True``) when the model has that option and it is unset.

        from langchain_openai import ChatOpenAI
        llm = LangChainChat(ChatOpenAI(model="gpt-4o-mini"), tools=[get_weather])
        app.include_router(create_router(llm), prefix="/llm")

    A failure before the first chunk (a wrong key, an unknown model) arrives
    as an ``error`` event after the 200: LangChain starts the call lazily, on
    the first read.
    """

    def __init__(
        self,
        chat_model: Any,
        *,
        system: str | None = None,
        tools: Sequence[Any] | None = None,
        tool_choice: Any = None,
        config: Mapping[str, Any] | None = None,
        **options: Any,
    ) -> None:
        self._messages = _message_classes()
        if not (callable(getattr(chat_model, "stream", None)) and callable(
            getattr(chat_model, "astream", None)
        )):  # fmt: skip
            raise TypeError(
                f"expected a LangChain chat model (with stream and astream), "
                f"got {type(chat_model).__name__}"
            )
        if tool_choice is not None and tools is None:
            raise TypeError("tool_choice needs tools: pass tools=[...] too")
        self.chat_model = chat_model
        self.system = system
        self.config = dict(config) if config is not None else None
        self.options = options
        runnable = chat_model
        if tools is not None:
            bind_tools = getattr(chat_model, "bind_tools", None)
            if not callable(bind_tools):
                raise TypeError(f"{type(chat_model).__name__} takes no tools (no bind_tools)")
            choice = {} if tool_choice is None else {"tool_choice": tool_choice}
            runnable = bind_tools(list(tools), **choice)
        if options:
            runnable = runnable.bind(**options)
        self.runnable = runnable
        base = _innermost(chat_model)
        self._fields = set(getattr(type(base), "model_fields", None) or ())
        self._ask_usage = (
            "stream_usage" in self._fields
            and getattr(base, "stream_usage", None) is None
            and "stream_usage" not in options
        )

    def __call__(self, request: LLMRequest) -> Iterator[Any]:
        """The sync stream of ``AIMessageChunk`` for one validated request."""
        stream: Iterator[Any] = self.runnable.stream(
            self.messages(request), self.config, **self._call_options(request)
        )
        return stream

    def acall(self, request: LLMRequest) -> AsyncIterator[Any]:
        """The async stream of ``AIMessageChunk``, for async skins (see ``acall_client``)."""
        stream: AsyncIterator[Any] = self.runnable.astream(
            self.messages(request), self.config, **self._call_options(request)
        )
        return stream

    def messages(self, request: LLMRequest) -> list[Any]:
        """The request as LangChain messages, ``system`` prepended when it has none."""
        pairs: Sequence[Mapping[str, str]] = (
            request.messages
            if isinstance(request, ChatRequest)
            else [{"role": "user", "content": request.prompt}]
        )
        messages = [self._messages[m["role"]](content=m["content"]) for m in pairs]
        if self.system is not None and not any(m["role"] == "system" for m in pairs):
            messages.insert(0, self._messages["system"](content=self.system))
        return messages

    def _call_options(self, request: LLMRequest) -> dict[str, Any]:
        options: dict[str, Any] = {}
        for name in _FORWARDED:
            value = getattr(request, name)
            if value is not None and name in self._fields:
                options[name] = value
        if self._ask_usage:
            options["stream_usage"] = True
        return options

    def __repr__(self) -> str:
        return f"LangChainChat({type(self.chat_model).__name__})"


def _message_classes() -> dict[str, Any]:
    try:
        from langchain_core.messages import AIMessage, HumanMessage, SystemMessage
    except ImportError as exc:
        raise ImportError(
            'LangChainChat needs langchain-core: pip install "indox-integrations[langchain]"'
        ) from exc
    return {"system": SystemMessage, "user": HumanMessage, "assistant": AIMessage}


def _innermost(runnable: Any) -> Any:
    """The chat model inside ``model.bind(...)``/``bind_tools(...)`` wrappers."""
    for _ in range(10):
        bound = getattr(runnable, "bound", None)
        if bound is None:
            break
        runnable = bound
    return runnable
