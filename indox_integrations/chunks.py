"""Turn every chunk shape an LLM client hands out into a few typed events.

Understood, as dicts and as the SDKs' own objects: ``str`` and ``bytes``;
indoxRouter's chunks and usage dicts; OpenAI chat chunks (content,
``reasoning_content``/``reasoning``, ``tool_calls``, ``refusal``,
``finish_reason``, usage); Anthropic Messages stream events; LangChain
message chunks (``AIMessageChunk``).
"""

from __future__ import annotations

import codecs
import json
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Iterator, Mapping
from typing import Any

from .events import (
    ErrorEvent,
    Event,
    FinishEvent,
    FinishReason,
    ReasoningEvent,
    TextEvent,
    ToolCallDeltaEvent,
    ToolCallEvent,
    UsageEvent,
    finish_reason,
    tool_call,
)

__all__ = [
    "ChunkNormalizer",
    "UnsupportedChunkError",
    "aiter_events",
    "is_full_response",
    "iter_events",
    "normalize_usage",
]


class UnsupportedChunkError(TypeError):
    """A chunk has a shape the kit does not know."""


_TOKEN_KEYS = {
    "prompt_tokens": ("prompt_tokens", "tokens_prompt", "input_tokens"),
    "completion_tokens": ("completion_tokens", "tokens_completion", "output_tokens"),
    "total_tokens": ("total_tokens", "tokens_total"),
}
_EXTRA_KEYS = ("cost", "model", "provider", "finish_reason")

# Anthropic's Messages stream events, raw, and the ones its ``messages.stream()``
# helper derives from them (``text``, ``thinking``, ...), which repeat the raw ones.
_ANTHROPIC_EVENTS = frozenset(
    {
        "message_start",
        "content_block_start",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
        "ping",
        "error",
    }
)
_ANTHROPIC_DERIVED = frozenset({"text", "thinking", "input_json", "citation", "signature"})
_ANTHROPIC_COUNTS = (
    "input_tokens",
    "output_tokens",
    "cache_read_input_tokens",
    "cache_creation_input_tokens",
)


def _get(obj: Any, name: str) -> Any:
    """Read ``name`` from a mapping or an object with attributes."""
    if isinstance(obj, Mapping):
        return obj.get(name)
    return getattr(obj, name, None)


def _int_or_none(value: Any) -> int | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return None


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def normalize_usage(raw: Any, **known: Any) -> dict[str, Any]:
    """Normalize usage from any client into one dict.

    The result always has ``prompt_tokens``, ``completion_tokens`` and
    ``total_tokens`` (ints, ``None`` when unknown), plus ``cost``, ``model``,
    ``provider`` and ``finish_reason`` when known.  ``raw`` may be the guide's
    ``{"is_usage_info": True, "usage": {...}, ...}`` dict, an OpenAI-style
    usage mapping or object, or a chunk that carries a ``usage`` field.
    ``known`` fills extras the usage itself lacks (e.g. the stream's model).
    """
    inner = _get(raw, "usage")
    counts = inner if inner is not None else raw
    usage: dict[str, Any] = {}
    for key, aliases in _TOKEN_KEYS.items():
        usage[key] = next(
            (v for v in (_int_or_none(_get(counts, a)) for a in aliases) if v is not None), None
        )
    if usage["total_tokens"] is None and None not in (
        usage["prompt_tokens"],
        usage["completion_tokens"],
    ):
        usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
    for key in _EXTRA_KEYS:
        value = _get(raw, key)
        if value is None and counts is not raw:
            value = _get(counts, key)
        if value is None:
            value = known.get(key)
        if value is not None:
            usage[key] = value
    return usage


class _ToolCalls:
    """Tool calls being streamed, by index: their id, name and argument text."""

    def __init__(self) -> None:
        self._open: dict[int, list[Any]] = {}
        self.seen = False

    def delta(self, index: int, id: Any, name: Any, arguments: Any) -> ToolCallDeltaEvent:
        self.seen = True
        call = self._open.setdefault(index, [None, None, []])
        id, name = _str(id), _str(name)
        # Some servers repeat the id and name on every delta: pass them on once.
        id = None if id is None or id == call[0] else id
        name = None if name is None or name == call[1] else name
        call[0] = id or call[0]
        call[1] = name or call[1]
        text = arguments if isinstance(arguments, str) else ""
        call[2].append(text)
        return ToolCallDeltaEvent(index, id, name, text)

    def complete(self, index: int | None = None) -> list[ToolCallEvent]:
        """Complete one call, or all open ones (in index order)."""
        indexes = sorted(self._open) if index is None else [index]
        done = []
        for i in indexes:
            call = self._open.pop(i, None)
            if call is not None:
                done.append(tool_call(i, call[0], call[1], "".join(call[2])))
        return done


class ChunkNormalizer:
    """Stateful chunk-to-event translator for one stream.

    Keeps an incremental UTF-8 decoder for ``bytes`` chunks, the tool calls
    being streamed, and the model and finish reason seen so far, so the final
    usage can carry them.
    """

    def __init__(self, source: Any = None) -> None:
        self._source = source
        self._decoder = codecs.getincrementaldecoder("utf-8")("replace")
        self._known: dict[str, Any] = {}
        self._tools = _ToolCalls()
        self._blocks: dict[int, int] = {}  # Anthropic content block -> tool call index
        self._counts: dict[str, int] = {}  # usage counted over several chunks
        self._refused = False
        self.finish_reason: FinishReason | None = None
        self.usage_seen = False

    def feed(self, chunk: Any) -> list[Event]:
        """Translate one chunk into zero or more events."""
        if type(chunk) is str:
            return [TextEvent(chunk)] if chunk else []
        if isinstance(chunk, (bytes, bytearray, memoryview)):
            text = self._decoder.decode(bytes(chunk))
            return [TextEvent(text)] if text else []
        if isinstance(chunk, str):
            return [TextEvent(str(chunk))] if chunk else []
        kind = _get(chunk, "type")
        if isinstance(kind, str) and kind in _ANTHROPIC_EVENTS:
            return self._feed_anthropic(kind, chunk)
        if isinstance(kind, str) and kind in _ANTHROPIC_DERIVED and not isinstance(chunk, Mapping):
            return []
        if not isinstance(chunk, Mapping) and hasattr(chunk, "response_metadata"):
            return self._feed_langchain(chunk)
        if isinstance(chunk, Mapping):
            return self._feed_record(chunk)
        if _get(chunk, "choices") is not None or _get(chunk, "usage") is not None:
            return self._feed_record(chunk)
        raise UnsupportedChunkError(
            f"expected a str, bytes, dict or OpenAI-style chunk, got {type(chunk).__name__}"
        )

    def finish(self) -> list[Event]:
        """Flush the decoder and open tool calls; recover usage the stream did not send."""
        events: list[Event] = []
        tail = self._decoder.decode(b"", final=True)
        if tail:
            events.append(TextEvent(tail))
        events.extend(self._tools.complete())
        usage = self.fallback_usage()
        if usage is not None:
            events.append(UsageEvent(usage))
        return events

    def end_reason(self) -> FinishReason:
        """The finish reason to report for a stream that ended normally."""
        if self.finish_reason is not None:
            return self.finish_reason
        return "tool_calls" if self._tools.seen else "stop"

    def fallback_usage(self) -> dict[str, Any] | None:
        """Usage counted so far, or the source's ``get_usage_info()``, if no usage chunk came."""
        if self.usage_seen:
            return None
        if self._counts:
            counts = dict(self._counts)
            # Anthropic counts cached prompt tokens apart; OpenAI's prompt_tokens include them.
            cached = counts.pop("cache_read_input_tokens", 0)
            cached += counts.pop("cache_creation_input_tokens", 0)
            if cached:
                counts["input_tokens"] = counts.get("input_tokens", 0) + cached
            return self._usage(counts).usage
        getter = getattr(self._source, "get_usage_info", None)
        if not callable(getter):
            return None
        raw = getter()
        if not raw:
            return None
        self.usage_seen = True
        return normalize_usage(raw, **self._known)

    def _usage(self, raw: Any) -> UsageEvent:
        self.usage_seen = True
        return UsageEvent(normalize_usage(raw, **self._known))

    def _finish(self, raw: Any) -> list[Event]:
        """Events for a finish reason: the calls it completes, then the reason."""
        if not raw or self.finish_reason is not None:
            return []
        reason = finish_reason(raw)
        if reason == "stop" and self._refused:
            reason = "content_filter"
        self.finish_reason = self._known["finish_reason"] = reason
        return [*self._tools.complete(), FinishEvent(reason)]

    def _feed_record(self, chunk: Any) -> list[Event]:
        if _get(chunk, "is_usage_info"):
            return [*self._finish(_get(chunk, "finish_reason")), self._usage(chunk)]
        error = _get(chunk, "error")
        if error is not None:
            message = _get(error, "message") if not isinstance(error, str) else error
            return [ErrorEvent("upstream_error", str(message or error))]
        for key in ("model", "provider"):
            value = _get(chunk, key)
            if isinstance(value, str) and value:
                self._known[key] = value
        events: list[Event] = []
        choices = _get(chunk, "choices")
        data = _get(chunk, "data")
        if choices:
            events.extend(self._feed_choice(choices[0]))
        elif isinstance(data, str):
            if data:
                events.append(TextEvent(data))
        elif choices is None and _get(chunk, "usage") is None:
            keys = ", ".join(sorted(map(str, chunk))) if isinstance(chunk, Mapping) else ""
            raise UnsupportedChunkError(
                f"expected a chunk with choices, data, usage or error, "
                f"got {type(chunk).__name__} with keys [{keys}]"
            )
        usage = _get(chunk, "usage")
        if usage:
            events.append(self._usage(chunk))
        return events

    def _feed_choice(self, choice: Any) -> list[Event]:
        events: list[Event] = []
        part = _get(choice, "delta")
        if part is None:
            part = _get(choice, "message")
        if part is None:
            text = _get(choice, "text")
            if isinstance(text, str) and text:
                events.append(TextEvent(text))
        else:
            reasoning = _str(_get(part, "reasoning_content")) or _str(_get(part, "reasoning"))
            if reasoning:
                events.append(ReasoningEvent(reasoning))
            content = _str(_get(part, "content"))
            if content:
                events.append(TextEvent(content))
            refusal = _str(_get(part, "refusal"))
            if refusal:
                self._refused = True
                events.append(TextEvent(refusal))
            for position, call in enumerate(_get(part, "tool_calls") or ()):
                index = _int_or_none(_get(call, "index"))
                function = _get(call, "function")
                events.append(
                    self._tools.delta(
                        position if index is None else index,
                        _get(call, "id"),
                        _get(function, "name"),
                        _get(function, "arguments"),
                    )
                )
        events.extend(self._finish(_get(choice, "finish_reason")))
        return events

    def _feed_anthropic(self, kind: str, event: Any) -> list[Event]:
        if kind == "content_block_delta":
            delta = _get(event, "delta")
            delta_type = _get(delta, "type")
            if delta_type == "text_delta":
                text = _str(_get(delta, "text"))
                return [TextEvent(text)] if text else []
            if delta_type == "thinking_delta":
                thinking = _str(_get(delta, "thinking"))
                return [ReasoningEvent(thinking)] if thinking else []
            if delta_type == "input_json_delta":
                index = self._blocks.get(_get(event, "index"))
                if index is None:
                    return []
                return [self._tools.delta(index, None, None, _get(delta, "partial_json"))]
            return []  # signature_delta, citations_delta: nothing to show
        if kind == "content_block_start":
            block = _get(event, "content_block")
            block_type = _get(block, "type")
            if block_type == "text":
                text = _str(_get(block, "text"))
                return [TextEvent(text)] if text else []
            if block_type == "thinking":
                thinking = _str(_get(block, "thinking"))
                return [ReasoningEvent(thinking)] if thinking else []
            if block_type == "tool_use":
                index = self._blocks[_get(event, "index")] = len(self._blocks)
                return [self._tools.delta(index, _get(block, "id"), _get(block, "name"), "")]
            return []
        if kind == "content_block_stop":
            index = self._blocks.get(_get(event, "index"))
            return [] if index is None else list(self._tools.complete(index))
        if kind == "message_start":
            message = _get(event, "message")
            model = _str(_get(message, "model"))
            if model:
                self._known["model"] = model
            self._count(_get(message, "usage"))
            return []
        if kind == "message_delta":
            events = self._finish(_get(_get(event, "delta"), "stop_reason"))
            self._count(_get(event, "usage"))
            return events
        if kind == "error":
            error = _get(event, "error")
            message = _get(error, "message") or _get(error, "type") or "error"
            return [ErrorEvent("upstream_error", str(message))]
        return []  # message_stop, ping

    def _count(self, usage: Any) -> None:
        """Record Anthropic token counts: each is cumulative, the latest wins."""
        for key in _ANTHROPIC_COUNTS:
            value = _int_or_none(_get(usage, key))
            if value is not None:
                self._counts[key] = value

    def _feed_langchain(self, chunk: Any) -> list[Event]:
        events: list[Event] = []
        extra = _get(chunk, "additional_kwargs") or {}
        reasoning = _str(_get(extra, "reasoning_content")) or _str(_get(extra, "reasoning"))
        if reasoning:
            events.append(ReasoningEvent(reasoning))
        content = _get(chunk, "content")
        if isinstance(content, str):
            if content:
                events.append(TextEvent(content))
        else:
            for block in content or ():
                events.extend(_langchain_block(block))
        for position, call in enumerate(_get(chunk, "tool_call_chunks") or ()):
            index = _int_or_none(_get(call, "index"))
            events.append(
                self._tools.delta(
                    position if index is None else index,
                    _get(call, "id"),
                    _get(call, "name"),
                    _get(call, "args"),
                )
            )
        if not hasattr(chunk, "tool_call_chunks"):
            # A whole AIMessage (a model that cannot stream): its calls come parsed.
            for position, call in enumerate(_get(chunk, "tool_calls") or ()):
                arguments = json.dumps(_get(call, "args") or {})
                events.append(
                    self._tools.delta(position, _get(call, "id"), _get(call, "name"), arguments)
                )
                events.extend(self._tools.complete(position))
        usage = _get(chunk, "usage_metadata")
        if usage:
            # LangChain adds chunks up: each one's usage is a part of the total.
            for key in ("input_tokens", "output_tokens"):
                value = _int_or_none(_get(usage, key))
                if value is not None:
                    self._counts[key] = self._counts.get(key, 0) + value
        metadata = _get(chunk, "response_metadata") or {}
        model = _str(_get(metadata, "model_name")) or _str(_get(metadata, "model"))
        if model:
            self._known["model"] = model
        events.extend(
            self._finish(
                _get(metadata, "finish_reason")
                or _get(metadata, "stop_reason")
                or _get(metadata, "done_reason")
            )
        )
        return events


def _langchain_block(block: Any) -> list[Event]:
    """Events for one LangChain content block (a str, or a typed dict)."""
    if isinstance(block, str):
        return [TextEvent(block)] if block else []
    kind = _get(block, "type")
    if kind == "text":
        text = _str(_get(block, "text"))
        return [TextEvent(text)] if text else []
    if kind in ("reasoning", "thinking"):
        text = _str(_get(block, "reasoning")) or _str(_get(block, "thinking"))
        if text is None:
            # OpenAI's Responses API: reasoning as a list of summary parts.
            parts = _get(block, "summary") or ()
            text = "".join(_str(_get(part, "text")) or "" for part in parts) or None
        return [ReasoningEvent(text)] if text else []
    return []  # tool_use and input_json_delta blocks repeat tool_call_chunks


def is_full_response(source: Any) -> bool:
    """A full (non-streamed) response rather than a stream of chunks."""
    return isinstance(source, (str, bytes, bytearray, Mapping)) or (
        _get(source, "choices") is not None
    )


def iter_events(source: Iterable[Any]) -> Iterator[Event]:
    """Yield typed events from a sync chunk stream (or one full response)."""
    normalizer = ChunkNormalizer(source)
    for chunk in [source] if is_full_response(source) else source:
        yield from normalizer.feed(chunk)
    yield from normalizer.finish()


async def aiter_events(source: AsyncIterable[Any]) -> AsyncIterator[Event]:
    """Yield typed events from an async chunk stream."""
    normalizer = ChunkNormalizer(source)
    async for chunk in source:
        for event in normalizer.feed(chunk):
            yield event
    for event in normalizer.finish():
        yield event
