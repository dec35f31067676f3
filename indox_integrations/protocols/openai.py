"""OpenAI's Chat Completions wire (``protocol="openai"``), for the OpenAI SDKs and LangChain.

Serves ``POST /chat/completions`` and ``GET /models`` (mount them under ``/v1``).
A streamed answer is one ``chat.completion.chunk`` per event::

    data: {"id":"chatcmpl-…","object":"chat.completion.chunk",…,"choices":[{"index":0,
           "delta":{"role":"assistant"},…}]}
    data: {…"delta":{"content":"Once"}…}      reasoning_content, tool_calls likewise
    data: {…"delta":{},…"finish_reason":"stop"}]}
    data: {…"choices":[],"usage":{…}}          with stream_options.include_usage
    data: [DONE]

A failure after the 200 is ``data: {"error": {...}}`` then ``data: [DONE]``
(the openai SDK raises ``APIError``).  ``"stream": false`` answers one
``chat.completion`` object.  Errors before streaming have OpenAI's shape,
``{"error": {"message", "type", "param", "code"}}``.

The kit's chat requests hold system, user and assistant text: ``developer``
messages count as ``system``, an array content's text parts are joined with
``"\\n"``, and tool results or earlier tool calls in the history are refused
(400) rather than dropped.  ``tools`` and other unknown fields are ignored.
"""

from __future__ import annotations

import hmac
import json
import secrets
import time
from collections.abc import Collection, Mapping
from functools import partial
from typing import Any

from ..clients import client_error as _client_status
from ..events import (
    ErrorEvent,
    Event,
    FinishEvent,
    FinishReason,
    ReasoningEvent,
    TextEvent,
    ToolCallDeltaEvent,
    ToolCallEvent,
    UsageEvent,
)
from ..requests import Limits, RequestError, parse_chat, read_json_body
from ..sse import encode_comment, encode_data
from . import Call, Reply, Route, StreamProtocol

__all__ = ["CHAT_COMPLETIONS", "MODELS", "OpenAIProtocol", "openai_error"]

CHAT_COMPLETIONS = Route("POST", "/chat/completions", "chat_completions")
MODELS = Route("GET", "/models", "models")

PING = encode_comment("ping")
DONE = encode_data("[DONE]")

# OpenAI knows four finish reasons; "error" goes out as an in-band error instead.
_FINISH: dict[FinishReason, str] = {
    "stop": "stop",
    "length": "length",
    "tool_calls": "tool_calls",
    "content_filter": "content_filter",
    "other": "stop",
}
_CODES = {
    401: "invalid_api_key",
    404: "model_not_found",
    413: "request_too_large",
    415: "unsupported_media_type",
    405: "method_not_allowed",
}
_BUSY = {429: ("rate_limit_error", "rate_limit_exceeded"), 503: ("server_error", "overloaded")}


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def openai_error(
    message: str, type: str, param: str | None = None, code: str | None = None
) -> dict[str, Any]:
    """An error body in OpenAI's shape."""
    return {"error": {"message": message, "type": type, "param": param, "code": code}}


def _new_id(prefix: str) -> str:
    return f"{prefix}{secrets.token_hex(12)}"


class OpenAIProtocol(StreamProtocol):
    """``chat.completion.chunk`` objects, OpenAI's error shape, ``data: [DONE]`` last.

    ``attach_usage`` is the request's ``stream_options.include_usage``; ``model``
    is echoed in every chunk; ``id`` and ``created`` are made up when not given.
    """

    name = "openai"
    routes = (CHAT_COMPLETIONS, MODELS)
    # API clients authenticate with bearer keys, not session cookies.
    csrf_exempt = True

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
        if api_keys is not None:
            denied = _check_key(headers.get("authorization", ""), api_keys)
            if denied is not None:
                return denied
        if route.name == MODELS.name:
            return Reply(200, model_list(limits))
        if route.name != CHAT_COMPLETIONS.name:
            return Reply(404, openai_error(f"no route {route.path}", "invalid_request_error"))
        try:
            data = read_json_body(body, headers.get("content-type"), limits)
            return cls._call(data, limits)
        except RequestError as exc:
            return _request_error(exc)

    @classmethod
    def _call(cls, data: Mapping[str, Any], limits: Limits) -> Call:
        n = data.get("n")
        if n is not None and (type(n) is not int or n != 1):
            raise RequestError("n", f"must be 1 (this server answers one choice), got {n!r}")
        stream = data.get("stream")
        if stream is not None and type(stream) is not bool:
            raise RequestError("stream", f"expected a boolean, got {_kind(stream)}")
        include_usage = False
        options = data.get("stream_options")
        if options is not None:
            if not isinstance(options, Mapping):
                raise RequestError("stream_options", f"expected an object, got {_kind(options)}")
            include_usage = options.get("include_usage") or False
            if type(include_usage) is not bool:
                raise RequestError(
                    "stream_options.include_usage",
                    f"expected a boolean, got {_kind(include_usage)}",
                )
        model = data.get("model")
        if model is None:
            model = limits.default_model
            if model is None:
                raise RequestError("model", "is required")
        if limits.models is not None and isinstance(model, str) and model not in limits.models:
            raise RequestError(
                "model", f"The model `{model}` does not exist or you do not have access to it.", 404
            )
        tokens_key = "max_completion_tokens" if "max_completion_tokens" in data else "max_tokens"
        chat = {
            "model": model,
            "messages": _messages(data.get("messages")),
            "temperature": data.get("temperature"),
            "max_tokens": data.get(tokens_key),
        }
        try:
            request = parse_chat(chat, limits)
        except RequestError as exc:
            if exc.field != "max_tokens":
                raise
            raise RequestError(tokens_key, exc.message, exc.status) from None
        if stream:
            return Call(request, cls(attach_usage=include_usage, model=request.model))
        return Call(request, None, partial(cls.completion, model=request.model))

    @classmethod
    def request_error(cls, exc: RequestError) -> Reply:
        return _request_error(exc)

    @classmethod
    def client_error(cls, exc: BaseException) -> Reply:
        if isinstance(exc, RequestError):
            return _request_error(exc)
        status, body = _client_status(exc)
        message = body["error"]["message"]
        if status == 429:
            return Reply(status, openai_error(message, "rate_limit_error", None, "rate_limited"))
        if status < 500:
            return Reply(status, openai_error(message, "invalid_request_error"))
        code = "timeout" if status == 504 else "upstream_error"
        return Reply(status, openai_error(message, "server_error", None, code))

    @classmethod
    def completion(
        cls,
        events: list[Event],
        *,
        model: str | None,
        id: str | None = None,
        created: int | None = None,
    ) -> Reply:
        """One ``chat.completion`` assembled from a whole stream's events (or a 502)."""
        text: list[str] = []
        reasoning: list[str] = []
        calls: dict[int, list[Any]] = {}  # index -> [id, name, argument pieces]
        reason: FinishReason | None = None
        usage = None
        for event in events:
            kind = type(event)
            if kind is TextEvent or kind is ReasoningEvent:
                (text if kind is TextEvent else reasoning).append(event.text)  # type: ignore[union-attr]
            elif kind is ToolCallDeltaEvent:
                delta: ToolCallDeltaEvent = event  # type: ignore[assignment]
                call = calls.setdefault(delta.index, [None, None, []])
                call[0] = delta.id or call[0]
                call[1] = delta.name or call[1]
                call[2].append(delta.arguments)
            elif kind is ToolCallEvent:
                done: ToolCallEvent = event  # type: ignore[assignment]
                previous = calls.get(done.index, [None, None])
                calls[done.index] = [done.id or previous[0], done.name or previous[1], [done.raw]]
            elif kind is FinishEvent:
                reason = event.reason  # type: ignore[union-attr]
            elif kind is UsageEvent:
                usage = _usage(event.usage)  # type: ignore[union-attr]
            elif kind is ErrorEvent:
                error: ErrorEvent = event  # type: ignore[assignment]
                return Reply(502, openai_error(error.message, "server_error", None, error.type))
        if reason is None:
            reason = "tool_calls" if calls else "stop"
        if reason == "error":
            return Reply(
                502, openai_error("the model stopped with an error", "server_error", None, "error")
            )
        message: dict[str, Any] = {
            "role": "assistant",
            "content": "".join(text) if text or not calls else None,
            "refusal": None,
        }
        if reasoning:
            message["reasoning_content"] = "".join(reasoning)
        if calls:
            message["tool_calls"] = [
                {
                    "id": call_id or _new_id("call_"),
                    "type": "function",
                    "function": {"name": name or "", "arguments": "".join(pieces)},
                }
                for call_id, name, pieces in (calls[index] for index in sorted(calls))
            ]
        answer: dict[str, Any] = {
            "id": id or _new_id("chatcmpl-"),
            "object": "chat.completion",
            "created": int(time.time()) if created is None else created,
            "model": model or "",
            "choices": [
                {"index": 0, "message": message, "logprobs": None, "finish_reason": _FINISH[reason]}
            ],
        }
        if usage is not None:
            answer["usage"] = usage
        return Reply(200, answer)

    def __init__(
        self,
        *,
        attach_usage: bool = False,
        model: str | None = None,
        id: str | None = None,
        created: int | None = None,
    ) -> None:
        super().__init__(attach_usage=attach_usage, model=model)
        self.id = id or _new_id("chatcmpl-")
        self.created = int(time.time()) if created is None else created
        head = _json(
            {
                "id": self.id,
                "object": "chat.completion.chunk",
                "created": self.created,
                "model": model or "",
            }
        )
        self._head = head[:-1] + ',"choices":'
        self._delta = self._head + '[{"index":0,"delta":'
        self._text = self._delta + '{"content":'
        self._tools: dict[int, int] = {}  # the kit's tool call index -> OpenAI's, dense

    def _chunk(self, delta: dict[str, Any], finish: str | None = None) -> bytes:
        reason = "null" if finish is None else f'"{finish}"'
        return encode_data(
            f'{self._delta}{_json(delta)},"logprobs":null,"finish_reason":{reason}}}]}}'
        )

    def open(self) -> bytes:
        # No "content" yet: an answer of tool calls only then ends with null content, as OpenAI's.
        return self._chunk({"role": "assistant"})

    def text(self, text: str) -> bytes:
        return encode_data(f'{self._text}{_json(text)}}},"logprobs":null,"finish_reason":null}}]}}')

    def encode(self, event: Event) -> bytes:
        if type(event) is ReasoningEvent:
            return self._chunk({"reasoning_content": event.text})
        if type(event) is ToolCallDeltaEvent:
            # The SDKs accumulate calls by list position: indexes must run 0, 1, 2...
            index = self._tools.get(event.index)
            call: dict[str, Any] = {"index": index}
            if index is None:
                index = call["index"] = self._tools[event.index] = len(self._tools)
                # Both SDKs insist on an id; the Node one throws without it.
                call["id"] = event.id or _new_id("call_")
                call["type"] = "function"
            elif event.id is not None:
                call["id"] = event.id
            function: dict[str, str] = {}
            if event.name is not None:
                function["name"] = event.name
            function["arguments"] = event.arguments
            call["function"] = function
            return self._chunk({"tool_calls": [call]})
        if type(event) is ToolCallEvent:
            return b""  # its deltas carried it all
        raise TypeError(f"the openai protocol does not encode {type(event).__name__}")

    def ping(self) -> bytes:
        return PING

    def error(self, kind: str, message: str) -> bytes:
        return encode_data(_json(openai_error(message, "server_error", None, kind))) + DONE

    def end(self, reason: FinishReason, usage: dict[str, Any] | None) -> bytes:
        if reason == "error":
            return self.error("error", "the model stopped with an error")
        out = self._chunk({}, _FINISH[reason])
        counts = _usage(usage) if self.attach_usage and usage is not None else None
        if counts is not None:
            out += encode_data(f"{self._head}[],{_json({'usage': counts})[1:]}")
        return out + DONE


def model_list(limits: Limits) -> dict[str, Any]:
    """``GET /models``: ``limits.models`` (and ``default_model``) in OpenAI's list shape."""
    ids = sorted(limits.models) if limits.models is not None else []
    if limits.default_model is not None and limits.default_model not in ids:
        ids.insert(0, limits.default_model)
    # indoxRouter's model names start with their provider: "openai/gpt-4o-mini".
    data = [{"id": name, "object": "model", "created": 0, "owned_by": _owner(name)} for name in ids]
    return {"object": "list", "data": data}


def _owner(model: str) -> str:
    provider, slash, _ = model.partition("/")
    return provider if slash and provider else "system"


def _usage(usage: Mapping[str, Any]) -> dict[str, int] | None:
    """OpenAI's three counts, or ``None`` when the upstream did not give them."""
    prompt, completion = usage.get("prompt_tokens"), usage.get("completion_tokens")
    if not (isinstance(prompt, int) and isinstance(completion, int)):
        return None
    total = usage.get("total_tokens")
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": total if isinstance(total, int) else prompt + completion,
    }


def _check_key(authorization: str, api_keys: Collection[str]) -> Reply | None:
    """``None`` when ``Authorization: Bearer <key>`` holds one of ``api_keys``; else a 401."""
    scheme, _, token = authorization.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        message = "You didn't provide an API key: send it as Authorization: Bearer <key>."
    else:
        given = token.encode("utf-8", "replace")
        keys = (api_keys,) if isinstance(api_keys, str) else api_keys
        # Compare with every key, in constant time each: no early exit to time.
        matches = [hmac.compare_digest(given, key.encode("utf-8", "replace")) for key in keys]
        if any(matches):
            return None
        message = "Incorrect API key provided."
    body = openai_error(message, "invalid_request_error", None, "invalid_api_key")
    return Reply(401, body, {"WWW-Authenticate": "Bearer"})


def _request_error(exc: RequestError) -> Reply:
    if exc.status in (429, 503):  # too many streams: a state of the server, not of the body
        kind, busy = _BUSY[exc.status]
        return Reply(exc.status, openai_error(exc.message, kind, None, busy))
    param = None if exc.field in ("body", "method") else exc.field
    message = exc.message if exc.status == 404 else str(exc)
    code = _CODES.get(exc.status)
    return Reply(exc.status, openai_error(message, "invalid_request_error", param, code))


def _kind(value: Any) -> str:
    names = {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null"}
    return names.get(type(value), "number")


def _messages(messages: Any) -> Any:
    """OpenAI's messages as the kit's ``{"role", "content": str}``; the rest to parse_chat."""
    if not isinstance(messages, list):
        return messages
    clean: list[Any] = []
    for index, message in enumerate(messages):
        if not isinstance(message, Mapping):
            clean.append(message)
            continue
        where = f"messages[{index}]"
        role, content = message.get("role"), message.get("content")
        if role in ("tool", "function"):
            raise RequestError(
                f"{where}.role",
                f"{role} messages are not supported: this server takes system, developer, "
                "user and assistant text",
            )
        if role == "assistant" and (message.get("tool_calls") or message.get("function_call")):
            raise RequestError(
                f"{where}.tool_calls", "tool calls in the history are not supported by this server"
            )
        if role == "developer":
            role = "system"
        if isinstance(content, list):
            content = _text_parts(content, f"{where}.content")
        clean.append({"role": role, "content": content})
    return clean


def _text_parts(parts: list[Any], where: str) -> str:
    texts = []
    for index, part in enumerate(parts):
        kind = part.get("type") if isinstance(part, Mapping) else None
        key = "refusal" if kind == "refusal" else "text"
        value = part.get(key) if kind in ("text", "refusal") else None
        if not isinstance(value, str):
            shown = f"a {kind!r} part" if isinstance(kind, str) else _kind(part)
            raise RequestError(f"{where}[{index}]", f"expected a text part, got {shown}")
        texts.append(value)
    return "\n".join(texts)
