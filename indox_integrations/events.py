"""The typed events every chunk shape turns into, and that every protocol encodes."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Literal

__all__ = [
    "ErrorEvent",
    "Event",
    "FinishEvent",
    "FinishReason",
    "ReasoningEvent",
    "TextEvent",
    "ToolCallDeltaEvent",
    "ToolCallEvent",
    "UsageEvent",
    "finish_reason",
    "tool_call",
]

FinishReason = Literal["stop", "length", "tool_calls", "content_filter", "error", "other"]

_REASONS: dict[str, FinishReason] = {
    "stop": "stop",
    "end_turn": "stop",
    "stop_sequence": "stop",
    "eos": "stop",
    "length": "length",
    "max_tokens": "length",
    "model_length": "length",
    "model_context_window_exceeded": "length",
    "tool_calls": "tool_calls",
    "tool_use": "tool_calls",
    "function_call": "tool_calls",
    "content_filter": "content_filter",
    "refusal": "content_filter",
    "safety": "content_filter",
    "error": "error",
}


def finish_reason(raw: Any) -> FinishReason:
    """Map any client's finish or stop reason onto the kit's six."""
    return _REASONS.get(str(raw).lower(), "other")


@dataclass(frozen=True, slots=True)
class TextEvent:
    """A piece of generated text."""

    text: str


@dataclass(frozen=True, slots=True)
class ReasoningEvent:
    """A piece of the model's reasoning ("thinking") text."""

    text: str


@dataclass(frozen=True, slots=True)
class ToolCallDeltaEvent:
    """A tool call as it streams: ``id`` and ``name`` come with its first delta."""

    index: int
    id: str | None
    name: str | None
    arguments: str


@dataclass(frozen=True, slots=True)
class ToolCallEvent:
    """A complete tool call. ``arguments`` is the parsed JSON when ``valid``, else ``raw``."""

    index: int
    id: str | None
    name: str | None
    arguments: Any
    raw: str
    valid: bool


@dataclass(frozen=True, slots=True)
class FinishEvent:
    """Why the model stopped, normalized by :func:`finish_reason`."""

    reason: FinishReason


@dataclass(frozen=True, slots=True)
class UsageEvent:
    """Token counts and cost, normalized by :func:`~indox_integrations.normalize_usage`."""

    usage: dict[str, Any]


@dataclass(frozen=True, slots=True)
class ErrorEvent:
    """The upstream reported a failure in-band (an ``{"error": ...}`` chunk)."""

    type: str
    message: str


Event = (
    TextEvent
    | ReasoningEvent
    | ToolCallDeltaEvent
    | ToolCallEvent
    | FinishEvent
    | UsageEvent
    | ErrorEvent
)


def tool_call(index: int, id: str | None, name: str | None, raw: str) -> ToolCallEvent:
    """A complete call; arguments that are not JSON stay raw, flagged ``valid=False``."""
    try:
        return ToolCallEvent(index, id, name, json.loads(raw or "{}"), raw, True)
    except (ValueError, RecursionError):
        return ToolCallEvent(index, id, name, raw, raw, False)
