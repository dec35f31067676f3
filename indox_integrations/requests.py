"""Validate completion and chat request bodies once, for every framework."""

from __future__ import annotations

import json
import math
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "ChatRequest",
    "CompletionRequest",
    "Limits",
    "RequestError",
    "check_content_type",
    "parse_chat",
    "parse_completion",
    "read_json_body",
]

ROLES = ("system", "user", "assistant")


@dataclass(frozen=True)
class Limits:
    """Bounds for request bodies; ``models`` is an optional allow-list."""

    max_body_bytes: int = 1024 * 1024
    max_tokens: int = 32_768
    max_messages: int = 500
    models: Collection[str] | None = None
    default_model: str | None = None


@dataclass(frozen=True)
class CompletionRequest:
    """A validated ``POST /stream`` body."""

    prompt: str
    model: str | None = None
    temperature: float | None = None
    max_tokens: int | None = None


@dataclass(frozen=True)
class ChatRequest:
    """A validated ``POST /chat`` body."""

    messages: list[dict[str, str]] = field(default_factory=list)
    model: str | None = None
    temperature: float | None = None
    max_tokens: int | None = None


class RequestError(ValueError):
    """A rejected request: ``status`` is the HTTP status, ``field`` names the culprit."""

    def __init__(self, field: str, message: str, status: int = 400) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message
        self.status = status

    def as_json(self) -> dict[str, Any]:
        """The JSON error body every skin sends."""
        return {
            "error": {
                "type": "invalid_request",
                "field": self.field,
                "message": f"{self.field}: {self.message}",
            }
        }


def read_json_body(
    body: bytes, content_type: str | None, limits: Limits = Limits()
) -> Mapping[str, Any]:
    """Check size, content type and JSON syntax; return the top-level object."""
    if len(body) > limits.max_body_bytes:
        raise RequestError("body", f"must be at most {limits.max_body_bytes} bytes", 413)
    check_content_type(content_type)
    try:
        data = json.loads(body.decode("utf-8"))
    except UnicodeDecodeError:
        raise RequestError("body", "is not valid UTF-8") from None
    except (ValueError, RecursionError):
        raise RequestError("body", "is not valid JSON") from None
    if not isinstance(data, Mapping):
        raise RequestError("body", f"expected a JSON object, got {_kind(data)}")
    return data


def check_content_type(content_type: str | None) -> None:
    """Raise a 415 :class:`RequestError` unless ``content_type`` is JSON."""
    media_type = (content_type or "").split(";")[0].strip().lower()
    if media_type != "application/json" and not media_type.endswith("+json"):
        raise RequestError(
            "body", f"expected Content-Type application/json, got {media_type or 'none'}", 415
        )


def _kind(value: Any) -> str:
    names = {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null"}
    return names.get(type(value), "number")


def _options(data: Mapping[str, Any], limits: Limits) -> dict[str, Any]:
    model = data.get("model", limits.default_model)
    if model is not None:
        if not isinstance(model, str) or not model.strip():
            raise RequestError("model", f"expected a non-empty string, got {_kind(model)}")
        if len(model) > 200:
            raise RequestError("model", "must be at most 200 characters")
        if limits.models is not None and model not in limits.models:
            raise RequestError("model", f"must be one of {', '.join(sorted(limits.models))}")
    temperature = data.get("temperature")
    if temperature is not None:
        if isinstance(temperature, bool) or not isinstance(temperature, (int, float)):
            raise RequestError("temperature", f"expected a number, got {_kind(temperature)}")
        if not (math.isfinite(temperature) and 0 <= temperature <= 2):
            raise RequestError("temperature", f"must be between 0 and 2, got {temperature}")
        temperature = float(temperature)
    max_tokens = data.get("max_tokens")
    if max_tokens is not None:
        if isinstance(max_tokens, bool) or not isinstance(max_tokens, int):
            raise RequestError("max_tokens", f"expected an integer, got {_kind(max_tokens)}")
        if not 1 <= max_tokens <= limits.max_tokens:
            raise RequestError(
                "max_tokens", f"must be between 1 and {limits.max_tokens}, got {max_tokens}"
            )
    return {"model": model, "temperature": temperature, "max_tokens": max_tokens}


def parse_completion(data: Mapping[str, Any], limits: Limits = Limits()) -> CompletionRequest:
    """Validate ``{"prompt", "model"?, "temperature"?, "max_tokens"?}``."""
    prompt = data.get("prompt")
    if not isinstance(prompt, str):
        raise RequestError("prompt", f"expected a string, got {_kind(prompt)}")
    if not prompt.strip():
        raise RequestError("prompt", "must not be empty")
    return CompletionRequest(prompt=prompt, **_options(data, limits))


def parse_chat(data: Mapping[str, Any], limits: Limits = Limits()) -> ChatRequest:
    """Validate ``{"messages": [{"role", "content"}, ...], "model"?, ...}``."""
    messages = data.get("messages")
    if not isinstance(messages, list):
        raise RequestError("messages", f"expected an array, got {_kind(messages)}")
    if not messages:
        raise RequestError("messages", "must not be empty")
    if len(messages) > limits.max_messages:
        raise RequestError("messages", f"must hold at most {limits.max_messages} messages")
    clean = []
    for index, message in enumerate(messages):
        where = f"messages[{index}]"
        if not isinstance(message, Mapping):
            raise RequestError(where, f"expected an object, got {_kind(message)}")
        role, content = message.get("role"), message.get("content")
        if role not in ROLES:
            raise RequestError(f"{where}.role", f"must be one of {', '.join(ROLES)}")
        if not isinstance(content, str):
            raise RequestError(f"{where}.content", f"expected a string, got {_kind(content)}")
        clean.append({"role": role, "content": content})
    return ChatRequest(messages=clean, **_options(data, limits))
