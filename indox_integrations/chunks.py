"""Turn every chunk shape an LLM client hands out into a few typed events."""

from __future__ import annotations

import codecs
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = [
    "ErrorEvent",
    "Event",
    "TextEvent",
    "UnsupportedChunkError",
    "UsageEvent",
    "ChunkNormalizer",
    "aiter_events",
    "is_full_response",
    "iter_events",
    "normalize_usage",
]


@dataclass(frozen=True)
class TextEvent:
    """A piece of generated text."""

    text: str


@dataclass(frozen=True)
class UsageEvent:
    """Token counts and cost, normalized by :func:`normalize_usage`."""

    usage: dict[str, Any]


@dataclass(frozen=True)
class ErrorEvent:
    """The upstream reported a failure in-band (an ``{"error": ...}`` chunk)."""

    type: str
    message: str


Event = TextEvent | UsageEvent | ErrorEvent


class UnsupportedChunkError(TypeError):
    """A chunk has a shape the kit does not know."""


_TOKEN_KEYS = {
    "prompt_tokens": ("prompt_tokens", "tokens_prompt", "input_tokens"),
    "completion_tokens": ("completion_tokens", "tokens_completion", "output_tokens"),
    "total_tokens": ("total_tokens", "tokens_total"),
}
_EXTRA_KEYS = ("cost", "model", "provider", "finish_reason")


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


class ChunkNormalizer:
    """Stateful chunk-to-event translator for one stream.

    Keeps an incremental UTF-8 decoder for ``bytes`` chunks and remembers the
    model and finish reason seen so far, so the final usage can carry them.
    """

    def __init__(self, source: Any = None) -> None:
        self._source = source
        self._decoder = codecs.getincrementaldecoder("utf-8")("replace")
        self._known: dict[str, Any] = {}
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
        if isinstance(chunk, Mapping):
            return self._feed_record(chunk)
        if _get(chunk, "choices") is not None or _get(chunk, "usage") is not None:
            return self._feed_record(chunk)
        raise UnsupportedChunkError(
            f"expected a str, bytes, dict or OpenAI-style chunk, got {type(chunk).__name__}"
        )

    def finish(self) -> list[Event]:
        """Flush the decoder and recover usage the stream did not send."""
        events: list[Event] = []
        tail = self._decoder.decode(b"", final=True)
        if tail:
            events.append(TextEvent(tail))
        usage = self.fallback_usage()
        if usage is not None:
            events.append(UsageEvent(usage))
        return events

    def fallback_usage(self) -> dict[str, Any] | None:
        """Usage from the source's ``get_usage_info()``, if no usage chunk came."""
        if self.usage_seen:
            return None
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

    def _feed_record(self, chunk: Any) -> list[Event]:
        if _get(chunk, "is_usage_info"):
            return [self._usage(chunk)]
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
            text = self._choice_text(choices[0])
            if text:
                events.append(TextEvent(text))
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

    def _choice_text(self, choice: Any) -> str | None:
        reason = _get(choice, "finish_reason")
        if reason:
            self._known["finish_reason"] = reason
        for holder in ("delta", "message"):
            part = _get(choice, holder)
            if part is not None:
                content = _get(part, "content")
                return content if isinstance(content, str) else None
        text = _get(choice, "text")
        return text if isinstance(text, str) else None


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
