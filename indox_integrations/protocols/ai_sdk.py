"""The Vercel AI SDK's UI message stream (``protocol="ai-sdk"``), for ``useChat``.

https://ai-sdk.dev/docs/ai-sdk-ui/stream-protocol#ui-message-stream-protocol

One JSON chunk per ``data:`` line, then ``data: [DONE]``::

    data: {"type":"start","messageId":"msg-..."}
    data: {"type":"start-step"}
    data: {"type":"reasoning-start","id":"reasoning-1"}   reasoning-delta ... reasoning-end
    data: {"type":"text-start","id":"text-2"}             text-delta ... text-end
    data: {"type":"tool-input-start","toolCallId":...,"toolName":...}
    data: {"type":"tool-input-delta","toolCallId":...,"inputTextDelta":...}
    data: {"type":"tool-input-available","toolCallId":...,"toolName":...,"input":{...}}
    data: {"type":"finish-step"}
    data: {"type":"finish"}                               messageMetadata with usage="attach"
    data: [DONE]

``ai@5.0.0`` parses every chunk with strict schemas that reject unknown
fields, so only the fields and chunk types it knows are sent: the finish
reason (``finish`` has no ``finishReason`` before ai 6.0) travels in
``messageMetadata`` with the usage, in the AI SDK's spelling (``tool-calls``),
and a tool call whose arguments are not JSON (``tool-input-error`` came in
ai 5.0.7) is made available with its raw text as ``input``.
"""

from __future__ import annotations

import hmac
import json
import secrets
from collections.abc import Collection, Mapping
from typing import Any, Literal

from ..assets import HEADERS
from ..clients import client_error
from ..events import Event, FinishReason, ReasoningEvent, ToolCallDeltaEvent, ToolCallEvent
from ..requests import ChatRequest, Limits, RequestError, parse_chat, read_json_body
from ..sse import encode_comment, encode_data
from . import Call, Reply, Route, StreamProtocol

__all__ = ["AISDKProtocol", "parse_ui_messages"]

_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode

PING = encode_comment("ping")
DONE = b"data: [DONE]\n\n"
START_STEP = encode_data('{"type":"start-step"}')
FINISH_STEP = encode_data('{"type":"finish-step"}')
OPTIONS = ("model", "temperature", "max_tokens")
ROLES = ("system", "user", "assistant")


def _chunk(chunk: dict[str, Any]) -> bytes:
    # JSON never holds a raw line break, so each chunk is one data line.
    return encode_data(_dumps(chunk))


def _kind(value: Any) -> str:
    names = {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null"}
    return names.get(type(value), "number")


def parse_ui_messages(data: Mapping[str, Any], limits: Limits) -> ChatRequest:
    """Validate ``DefaultChatTransport``'s body: ``{id, messages: UIMessage[], trigger,
    messageId}`` plus what its ``body`` option adds (``model``, ``temperature``,
    ``max_tokens``).

    Each message's text parts, joined, become its content; other parts (files,
    tool calls, reasoning, data) are left out, and so are messages with no text.
    """
    messages = data.get("messages")
    if not isinstance(messages, list):
        raise RequestError("messages", f"expected an array, got {_kind(messages)}")
    if len(messages) > limits.max_messages:
        raise RequestError("messages", f"must hold at most {limits.max_messages} messages")
    clean = []
    for index, message in enumerate(messages):
        where = f"messages[{index}]"
        if not isinstance(message, Mapping):
            raise RequestError(where, f"expected an object, got {_kind(message)}")
        role = message.get("role")
        if role not in ROLES:
            raise RequestError(f"{where}.role", f"must be one of {', '.join(ROLES)}")
        parts = message.get("parts")
        if not isinstance(parts, list):
            raise RequestError(f"{where}.parts", f"expected an array, got {_kind(parts)}")
        texts = []
        for number, part in enumerate(parts):
            at = f"{where}.parts[{number}]"
            if not isinstance(part, Mapping):
                raise RequestError(at, f"expected an object, got {_kind(part)}")
            kind = part.get("type")
            if not isinstance(kind, str):
                raise RequestError(f"{at}.type", f"expected a string, got {_kind(kind)}")
            if kind == "text":
                text = part.get("text")
                if not isinstance(text, str):
                    raise RequestError(f"{at}.text", f"expected a string, got {_kind(text)}")
                texts.append(text)
        content = "".join(texts)
        if content:
            clean.append({"role": role, "content": content})
    if not clean:
        raise RequestError("messages", "expected at least one message with a text part")
    return parse_chat({**{k: data[k] for k in OPTIONS if k in data}, "messages": clean}, limits)


def _response_message_id(data: Mapping[str, Any]) -> str | None:
    """Continue the last message when it is the assistant's (a tool round trip), as the
    AI SDK's own servers do; otherwise the answer is a new message."""
    messages = data.get("messages")
    last = messages[-1] if isinstance(messages, list) and messages else None
    if isinstance(last, Mapping) and last.get("role") == "assistant":
        message_id = last.get("id")
        if isinstance(message_id, str) and message_id:
            return message_id
    return None


def _authorized(header: str | None, api_keys: Collection[str]) -> bool:
    scheme, _, token = (header or "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return False
    token = token.strip()
    keys = (api_keys,) if isinstance(api_keys, str) else api_keys  # one key, not its letters
    return any(hmac.compare_digest(token.encode(), key.encode()) for key in keys)


class _Tool:
    __slots__ = ("id", "name", "pending", "started")

    def __init__(self) -> None:
        self.id: str | None = None
        self.name: str | None = None
        self.pending: list[str] = []
        self.started = False


class AISDKProtocol(StreamProtocol):
    """UI message stream v1 chunks for the AI SDK's ``useChat`` and ``readUIMessageStream``.

    ``message_id`` is the ``start`` chunk's ``messageId`` (a fresh one by default).
    """

    name = "ai-sdk"
    headers = {**HEADERS, "x-vercel-ai-ui-message-stream": "v1"}
    routes = (Route("POST", "/chat", "chat"),)
    csrf_exempt = False

    @classmethod
    def handle(
        cls,
        route: Route,
        body: bytes,
        headers: Mapping[str, str],
        limits: Limits,
        *,
        api_keys: Collection[str] | None = None,
    ) -> Reply | Call:
        if api_keys is not None and not _authorized(headers.get("authorization"), api_keys):
            error = {
                "type": "unauthorized",
                "field": "authorization",
                "message": "authorization: expected a valid Bearer key",
            }
            return Reply(401, {"error": error}, {"WWW-Authenticate": "Bearer"})
        try:
            data = read_json_body(body, headers.get("content-type"), limits)
            request = parse_ui_messages(data, limits)
        except RequestError as exc:
            return Reply(exc.status, exc.as_json())
        # attach_usage=None: the usage goes into messageMetadata as the server's option says.
        encoder = cls(attach_usage=None, model=request.model, message_id=_response_message_id(data))
        return Call(request, encoder)

    @classmethod
    def client_error(cls, exc: BaseException) -> Reply:
        status, body = client_error(exc)
        return Reply(status, body)

    def __init__(
        self,
        *,
        attach_usage: bool | None = False,
        model: str | None = None,
        message_id: str | None = None,
    ) -> None:
        super().__init__(attach_usage=attach_usage, model=model)
        self.message_id = message_id or f"msg-{secrets.token_hex(12)}"
        self._open: Literal["text", "reasoning"] | None = None
        self._part_id = ""
        self._parts = 0
        self._tools: dict[int, _Tool] = {}

    def _close(self) -> bytes:
        """End the open text or reasoning part, if any."""
        if self._open is None:
            return b""
        kind, self._open = self._open, None
        return _chunk({"type": f"{kind}-end", "id": self._part_id})

    def _delta(self, kind: Literal["text", "reasoning"], text: str) -> bytes:
        out = b""
        if self._open != kind:
            out = self._close()
            self._parts += 1
            self._open, self._part_id = kind, f"{kind}-{self._parts}"
            out += _chunk({"type": f"{kind}-start", "id": self._part_id})
        return out + _chunk({"type": f"{kind}-delta", "id": self._part_id, "delta": text})

    def open(self) -> bytes:
        return _chunk({"type": "start", "messageId": self.message_id}) + START_STEP

    def text(self, text: str) -> bytes:
        return self._delta("text", text) if text else b""

    def encode(self, event: Event) -> bytes:
        if type(event) is ReasoningEvent:
            return self._delta("reasoning", event.text) if event.text else b""
        if type(event) is ToolCallDeltaEvent:
            return self._tool_delta(event)
        if type(event) is ToolCallEvent:
            return self._tool_call(event)
        raise TypeError(f"the ai-sdk protocol does not encode {type(event).__name__}")

    def _tool_start(self, index: int, tool: _Tool, id: str | None, name: str | None) -> bytes:
        tool.started = True
        tool.id = tool.id or id or f"{self.message_id}-tool-{index}"
        tool.name = tool.name or name or ""
        start = {"type": "tool-input-start", "toolCallId": tool.id, "toolName": tool.name}
        return self._close() + _chunk(start)

    def _tool_delta(self, event: ToolCallDeltaEvent) -> bytes:
        tool = self._tools.setdefault(event.index, _Tool())
        tool.id = tool.id or event.id
        tool.name = tool.name or event.name
        if not tool.started:
            # tool-input-start needs the tool's name: hold the arguments until it comes.
            tool.pending.append(event.arguments)
            if tool.name is None:
                return b""
            out = self._tool_start(event.index, tool, None, None)
            arguments, tool.pending = "".join(tool.pending), []
        else:
            out, arguments = b"", event.arguments
        if arguments:
            delta = {"type": "tool-input-delta", "toolCallId": tool.id, "inputTextDelta": arguments}
            out += _chunk(delta)
        return out

    def _tool_call(self, event: ToolCallEvent) -> bytes:
        tool = self._tools.pop(event.index, None) or _Tool()
        out = b"" if tool.started else self._tool_start(event.index, tool, event.id, event.name)
        available = {
            "type": "tool-input-available",
            "toolCallId": tool.id,
            "toolName": tool.name,
            "input": event.arguments,
        }
        return out + _chunk(available)

    def ping(self) -> bytes:
        return PING

    def error(self, kind: str, message: str) -> bytes:
        return self._close() + _chunk({"type": "error", "errorText": message}) + DONE

    def end(self, reason: FinishReason, usage: dict[str, Any] | None) -> bytes:
        finish: dict[str, Any] = {"type": "finish"}
        if self.attach_usage:
            finish["messageMetadata"] = {"finishReason": reason.replace("_", "-"), "usage": usage}
        return self._close() + FINISH_STEP + _chunk(finish) + DONE
