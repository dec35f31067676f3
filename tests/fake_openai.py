"""A local OpenAI-compatible server (``POST /v1/chat/completions``) for the real ``openai`` SDK.

with FakeOpenAI() as server:
    client = openai.OpenAI(api_key="test", base_url=server.url + "/v1", max_retries=0)

A :class:`Deltas` script streams any delta OpenAI-compatible servers send:
reasoning (``reasoning_content`` as DeepSeek, ``reasoning`` as vLLM and
OpenRouter), parallel tool calls with their arguments in pieces, refusals,
and any finish reason:

    server.scripts["m"] = Deltas(
        (reasoning("Hmm."), "Let me look.", tool_calls(call(0, "{", "call_1", "get_weather"))),
        finish_reason="tool_calls",
    )
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from fake_indoxrouter import FakeServer, Script, _Handler, usage_of


@dataclass(frozen=True)
class Deltas(Script):
    """A script of raw deltas: each of ``texts`` is one chunk's ``choices[0].delta``
    (a str stands for ``{"content": text}``); the stream ends with ``finish_reason``."""

    texts: tuple[Any, ...] = ()
    finish_reason: str = "stop"


def reasoning(text: str, field: str = "reasoning_content") -> dict[str, Any]:
    """A reasoning delta; ``field`` is ``reasoning_content`` or ``reasoning``."""
    return {field: text}


def refusal(text: str) -> dict[str, Any]:
    return {"content": None, "refusal": text}


def call(
    index: int, arguments: str = "", id: str | None = None, name: str | None = None
) -> dict[str, Any]:
    """One tool call's piece: the first names the call (``id``, ``name``), the next ones
    carry only ``index`` and more ``arguments``, as OpenAI streams them."""
    piece: dict[str, Any] = {"index": index, "function": {"arguments": arguments}}
    if id is not None:
        piece["id"] = id
        piece["type"] = "function"
    if name is not None:
        piece["function"]["name"] = name
    return piece


def tool_calls(*calls: dict[str, Any]) -> dict[str, Any]:
    """A delta with one or more tool call pieces (parallel calls share a delta)."""
    return {"content": None, "tool_calls": list(calls)}


def _delta(item: Any) -> dict[str, Any]:
    return {"content": item} if isinstance(item, str) else dict(item)


def full_message(items: tuple[Any, ...]) -> dict[str, Any]:
    """The ``message`` of a non-streamed answer: the deltas added up."""
    content: list[str] = []
    refusals: list[str] = []
    thoughts: dict[str, list[str]] = {}
    calls: dict[int, dict[str, Any]] = {}
    for delta in map(_delta, items):
        content.append(delta.get("content") or "")
        refusals.append(delta.get("refusal") or "")
        for field in ("reasoning_content", "reasoning"):
            if delta.get(field):
                thoughts.setdefault(field, []).append(delta[field])
        for piece in delta.get("tool_calls") or ():
            whole = calls.setdefault(
                piece["index"],
                {"id": None, "type": "function", "function": {"name": None, "arguments": ""}},
            )
            whole["id"] = piece.get("id") or whole["id"]
            function = piece.get("function") or {}
            whole["function"]["name"] = function.get("name") or whole["function"]["name"]
            whole["function"]["arguments"] += function.get("arguments") or ""
    message: dict[str, Any] = {
        "role": "assistant",
        "content": "".join(content) or None,
        "refusal": "".join(refusals) or None,
        **{field: "".join(parts) for field, parts in thoughts.items()},
    }
    if calls:
        message["tool_calls"] = [calls[index] for index in sorted(calls)]
    return message


class FakeOpenAI(FakeServer):
    """Chat completions as OpenAI sends them: ``chat.completion.chunk`` events,
    a final usage chunk with empty ``choices`` when ``stream_options.include_usage``
    asks for it, then ``data: [DONE]``; a wrong key gets OpenAI's 401."""

    def handle(self, handler: _Handler, path: str, body: Any) -> None:
        if handler.headers.get("Authorization") != f"Bearer {self.api_key}":
            handler.send_json(
                401,
                {
                    "error": {
                        "message": "Incorrect API key provided.",
                        "type": "invalid_request_error",
                        "param": None,
                        "code": "invalid_api_key",
                    }
                },
            )
        elif path == "/v1/chat/completions":
            script = self.script_for(str(body.get("model")))
            if script.status != 200:
                error = {"message": script.error_message, "type": "invalid_request_error"}
                handler.send_json(script.status, {"error": error})
            elif body.get("stream"):
                self.stream(handler, path, "chat", body)
            else:
                handler.send_json(200, self.full_response(body, script))
        else:
            handler.send_json(404, {"error": {"message": f"no route {path}", "type": "not_found"}})

    def _chunk(self, model: str, choices: list[Any], **extra: Any) -> dict[str, Any]:
        return {
            "id": "chatcmpl-fake",
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": model,
            "system_fingerprint": None,
            "choices": choices,
            **extra,
        }

    def opening_chunks(self, kind: str, model: str) -> list[Any]:
        delta = {"role": "assistant", "content": ""}
        return [self._chunk(model, [{"index": 0, "delta": delta, "finish_reason": None}])]

    def text_chunk(self, kind: str, model: str, text: Any) -> dict[str, Any]:
        return self._chunk(model, [{"index": 0, "delta": _delta(text), "finish_reason": None}])

    def include_usage(self, body: dict[str, Any]) -> bool:
        return bool((body.get("stream_options") or {}).get("include_usage"))

    def closing_chunks(self, kind: str, model: str, usage: dict[str, int] | None) -> list[Any]:
        reason = self._finish_reason(model)
        chunks = [self._chunk(model, [{"index": 0, "delta": {}, "finish_reason": reason}])]
        if usage is not None:
            chunks.append(self._chunk(model, [], usage=usage))
        return chunks

    def error_chunk(self, message: str) -> dict[str, Any]:
        return {"error": {"message": message, "type": "server_error"}}

    def _finish_reason(self, model: str) -> str:
        script = self.script_for(model)
        return script.finish_reason if isinstance(script, Deltas) else "stop"

    def full_response(self, body: dict[str, Any], script: Script) -> dict[str, Any]:
        message = full_message(script.texts)
        reason = self._finish_reason(str(body.get("model")))
        return {
            "id": "chatcmpl-fake",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body.get("model"),
            "choices": [{"index": 0, "message": message, "finish_reason": reason}],
            "usage": usage_of(body, len(script.texts)),
        }
