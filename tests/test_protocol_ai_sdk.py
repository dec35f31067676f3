"""The AI SDK UI message stream protocol: request bodies and the bytes of every chunk."""

from __future__ import annotations

import json
from typing import Any

import pytest

from indox_integrations import ChatRequest, DemoClient, Limits, RequestError, sse_stream
from indox_integrations.events import (
    FinishEvent,
    ReasoningEvent,
    ToolCallDeltaEvent,
    UsageEvent,
    tool_call,
)
from indox_integrations.protocols import PROTOCOLS, Call, Reply, get_protocol
from indox_integrations.protocols.ai_sdk import AISDKProtocol

ROUTE = AISDKProtocol.routes[0]
JSON = {"content-type": "application/json"}

# Every chunk type the protocol sends, with the fields ai@5.0.0's strict schemas
# (uiMessageChunkSchema, z.strictObject) accept: (required, optional).
AI5_FIELDS: dict[str, tuple[set[str], set[str]]] = {
    "start": (set(), {"messageId", "messageMetadata"}),
    "start-step": (set(), set()),
    "text-start": ({"id"}, {"providerMetadata"}),
    "text-delta": ({"id", "delta"}, {"providerMetadata"}),
    "text-end": ({"id"}, {"providerMetadata"}),
    "reasoning-start": ({"id"}, {"providerMetadata"}),
    "reasoning-delta": ({"id", "delta"}, {"providerMetadata"}),
    "reasoning-end": ({"id"}, {"providerMetadata"}),
    "tool-input-start": ({"toolCallId", "toolName"}, {"providerExecuted", "dynamic"}),
    "tool-input-delta": ({"toolCallId", "inputTextDelta"}, set()),
    "tool-input-available": (
        {"toolCallId", "toolName", "input"},
        {"providerExecuted", "providerMetadata", "dynamic"},
    ),
    "finish-step": (set(), set()),
    "finish": (set(), {"messageMetadata"}),
    "error": ({"errorText"}, set()),
}


def chunks(data: bytes) -> list[Any]:
    """The chunks of an encoded stream, each checked against ai@5.0.0's schema."""
    text = data.decode("utf-8")
    assert text.endswith("\n\n")
    out: list[Any] = []
    for block in text[:-2].split("\n\n"):
        if block.startswith(":"):
            continue
        assert block.startswith("data: ") and "\n" not in block, block
        payload = block[len("data: ") :]
        if payload == "[DONE]":
            out.append("[DONE]")
            continue
        chunk = json.loads(payload)
        required, optional = AI5_FIELDS[chunk["type"]]
        keys = set(chunk) - {"type"}
        assert required <= keys <= required | optional, chunk
        out.append(chunk)
    return out


def encoder(**options: Any) -> AISDKProtocol:
    return AISDKProtocol(message_id="msg-1", **options)


def ui_body(*messages: dict[str, Any], **extra: Any) -> bytes:
    body = {"id": "chat-1", "messages": list(messages), "trigger": "submit-message", **extra}
    return json.dumps(body).encode()


def user(*parts: Any, id: str = "u1") -> dict[str, Any]:
    return {"id": id, "role": "user", "parts": list(parts)}


def text(value: str) -> dict[str, str]:
    return {"type": "text", "text": value}


def handle(body: bytes, headers: dict[str, str] = JSON, **options: Any) -> Reply | Call:
    limits = options.pop("limits", Limits())
    return AISDKProtocol.handle(ROUTE, body, headers, limits, **options)


# --- the class ----------------------------------------------------------------------------


def test_registered_as_ai_sdk() -> None:
    assert get_protocol("ai-sdk") is AISDKProtocol
    assert PROTOCOLS["ai-sdk"] is AISDKProtocol


def test_headers_mark_a_ui_message_stream() -> None:
    headers = {key.lower(): value for key, value in AISDKProtocol.headers.items()}
    assert headers["x-vercel-ai-ui-message-stream"] == "v1"
    assert headers["content-type"] == "text/event-stream; charset=utf-8"
    assert headers["cache-control"] == "no-cache"
    assert headers["x-accel-buffering"] == "no"
    assert "connection" not in headers


def test_one_post_route_with_csrf_kept_on() -> None:
    assert [(r.method, r.path, r.name) for r in AISDKProtocol.routes] == [("POST", "/chat", "chat")]
    assert AISDKProtocol.csrf_exempt is False


# --- handle() -----------------------------------------------------------------------------


def test_text_parts_become_the_messages() -> None:
    body = ui_body(
        {"id": "s", "role": "system", "parts": [text("Be brief.")]},
        user(text("Hello, "), {"type": "file", "mediaType": "image/png", "url": "x"}, text("you")),
        {
            "id": "a1",
            "role": "assistant",
            "parts": [
                {"type": "step-start"},
                {"type": "reasoning", "text": "hidden"},
                text("Hi!"),
                {"type": "tool-get_weather", "toolCallId": "c", "state": "output-available"},
            ],
        },
        user(text("Weather?"), id="u2"),
        model="demo/echo",
        messageId=None,
    )
    result = handle(body)
    assert isinstance(result, Call)
    assert result.request == ChatRequest(
        messages=[
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Hello, you"},
            {"role": "assistant", "content": "Hi!"},
            {"role": "user", "content": "Weather?"},
        ],
        model="demo/echo",
    )
    assert isinstance(result.encoder, AISDKProtocol) and result.reply is None
    assert result.encoder.model == "demo/echo"


def test_messages_without_text_are_left_out() -> None:
    body = ui_body(
        user(text("first")),
        {"id": "a", "role": "assistant", "parts": [{"type": "tool-x", "toolCallId": "c"}]},
        user(text(""), id="u2"),
        user(text("last"), id="u3"),
    )
    result = handle(body)
    assert isinstance(result, Call)
    assert [m["content"] for m in result.request.messages] == ["first", "last"]  # type: ignore[union-attr]


def test_options_from_the_transport_body_option() -> None:
    limits = Limits(default_model="demo/story")
    result = handle(ui_body(user(text("hi")), temperature=0.5, max_tokens=64), limits=limits)
    assert isinstance(result, Call)
    assert result.request == ChatRequest(
        messages=[{"role": "user", "content": "hi"}],
        model="demo/story",
        temperature=0.5,
        max_tokens=64,
    )


def test_each_answer_gets_a_fresh_message_id() -> None:
    first, second = handle(ui_body(user(text("hi")))), handle(ui_body(user(text("hi"))))
    assert isinstance(first, Call) and isinstance(second, Call)
    assert isinstance(first.encoder, AISDKProtocol) and isinstance(second.encoder, AISDKProtocol)
    assert first.encoder.message_id != second.encoder.message_id
    assert chunks(first.encoder.open())[0] == {
        "type": "start",
        "messageId": first.encoder.message_id,
    }


def test_an_answer_after_the_assistant_continues_its_message() -> None:
    assistant = {"id": "a-7", "role": "assistant", "parts": [text("Calling a tool")]}
    result = handle(ui_body(user(text("hi")), assistant))
    assert isinstance(result, Call) and isinstance(result.encoder, AISDKProtocol)
    assert result.encoder.message_id == "a-7"


@pytest.mark.parametrize(
    ("body", "status", "field", "message"),
    [
        (b"{", 400, "body", "body: is not valid JSON"),
        (b"[]", 400, "body", "body: expected a JSON object, got array"),
        (b"\xff", 400, "body", "body: is not valid UTF-8"),
        (b"{}", 400, "messages", "messages: expected an array, got null"),
        (ui_body(), 400, "messages", "messages: expected at least one message with a text part"),
        (ui_body("hi"), 400, "messages[0]", "messages[0]: expected an object, got string"),
        (
            ui_body({"role": "tool", "parts": []}),
            400,
            "messages[0].role",
            "messages[0].role: must be one of system, user, assistant",
        ),
        (
            ui_body({"role": "user", "content": "v4 style"}),
            400,
            "messages[0].parts",
            "messages[0].parts: expected an array, got null",
        ),
        (
            ui_body(user(text("a")), user("hi")),
            400,
            "messages[1].parts[0]",
            "messages[1].parts[0]: expected an object, got string",
        ),
        (
            ui_body(user({"text": "no type"})),
            400,
            "messages[0].parts[0].type",
            "messages[0].parts[0].type: expected a string, got null",
        ),
        (
            ui_body(user(text("a"), {"type": "text", "text": 7})),
            400,
            "messages[0].parts[1].text",
            "messages[0].parts[1].text: expected a string, got number",
        ),
        (
            ui_body(user({"type": "file"})),
            400,
            "messages",
            "messages: expected at least one message with a text part",
        ),
        (
            ui_body(user(text("hi")), model=""),
            400,
            "model",
            "model: expected a non-empty string, got string",
        ),
        (
            ui_body(user(text("hi")), model=["gpt"]),
            400,
            "model",
            "model: expected a non-empty string, got array",
        ),
        (
            ui_body(user(text("hi")), temperature=3),
            400,
            "temperature",
            "temperature: must be between 0 and 2, got 3",
        ),
    ],
)
def test_bad_bodies_are_4xx_naming_the_field(
    body: bytes, status: int, field: str, message: str
) -> None:
    reply = handle(body)
    assert isinstance(reply, Reply)
    assert reply.status == status
    assert reply.body == {"error": {"type": "invalid_request", "field": field, "message": message}}


def test_limits_apply() -> None:
    limits = Limits(max_body_bytes=400, max_messages=2, models=("demo/echo",), max_tokens=10)
    cases = [
        (b"x" * 401, 413, "body"),
        (ui_body(*[user(text("a"))] * 3), 400, "messages"),
        (ui_body(user(text("a")), model="gpt-4o"), 400, "model"),
        (ui_body(user(text("a")), max_tokens=11), 400, "max_tokens"),
    ]
    for body, status, field in cases:
        reply = handle(body, limits=limits)
        assert isinstance(reply, Reply), body
        assert (reply.status, reply.body["error"]["field"]) == (status, field)
    assert isinstance(handle(ui_body(user(text("a")), model="demo/echo"), limits=limits), Call)


@pytest.mark.parametrize("content_type", [None, "text/plain", "multipart/form-data; boundary=x"])
def test_a_body_that_is_not_json_is_415(content_type: str | None) -> None:
    headers = {} if content_type is None else {"content-type": content_type}
    reply = handle(ui_body(user(text("hi"))), headers)
    assert isinstance(reply, Reply) and reply.status == 415
    assert reply.body["error"]["field"] == "body"


@pytest.mark.parametrize(
    "authorization", [None, "", "Bearer", "Bearer wrong", "Basic c2stMQ==", "sk-1"]
)
def test_api_keys_refuse_a_missing_or_wrong_bearer(authorization: str | None) -> None:
    headers = dict(JSON)
    if authorization is not None:
        headers["authorization"] = authorization
    reply = handle(ui_body(user(text("hi"))), headers, api_keys=("sk-1", "sk-2"))
    assert isinstance(reply, Reply) and reply.status == 401
    assert reply.headers["WWW-Authenticate"] == "Bearer"
    assert reply.body["error"]["field"] == "authorization"


def test_api_keys_are_checked_before_the_body() -> None:
    reply = handle(b"{", JSON, api_keys=("sk-1",))
    assert isinstance(reply, Reply) and reply.status == 401


@pytest.mark.parametrize("key", ["sk-1", "sk-2"])
def test_api_keys_accept_a_known_bearer(key: str) -> None:
    headers = {**JSON, "authorization": f"Bearer {key}"}
    assert isinstance(handle(ui_body(user(text("hi"))), headers, api_keys=("sk-1", "sk-2")), Call)
    assert isinstance(handle(ui_body(user(text("hi"))), headers, api_keys=key), Call)


def test_client_errors_keep_the_kit_statuses() -> None:
    class RateLimitError(Exception):
        pass

    cases = [
        (RequestError("model", "unknown"), 400, "invalid_request"),
        (ValueError("unknown model"), 400, "upstream_error"),
        (RateLimitError("slow down"), 429, "upstream_error"),
        (RuntimeError("boom"), 502, "upstream_error"),
    ]
    for exc, status, kind in cases:
        reply = AISDKProtocol.client_error(exc)
        assert (reply.status, reply.body["error"]["type"]) == (status, kind)


# --- encoding -----------------------------------------------------------------------------


def test_open_starts_the_message_and_a_step() -> None:
    assert encoder().open() == (
        b'data: {"type":"start","messageId":"msg-1"}\n\ndata: {"type":"start-step"}\n\n'
    )


def test_text_is_one_part_with_one_id() -> None:
    wire = encoder()
    data = wire.open() + wire.text("Hel") + wire.text("lo") + wire.end("stop", None)
    assert data == (
        b'data: {"type":"start","messageId":"msg-1"}\n\n'
        b'data: {"type":"start-step"}\n\n'
        b'data: {"type":"text-start","id":"text-1"}\n\n'
        b'data: {"type":"text-delta","id":"text-1","delta":"Hel"}\n\n'
        b'data: {"type":"text-delta","id":"text-1","delta":"lo"}\n\n'
        b'data: {"type":"text-end","id":"text-1"}\n\n'
        b'data: {"type":"finish-step"}\n\n'
        b'data: {"type":"finish"}\n\n'
        b"data: [DONE]\n\n"
    )
    chunks(data)


def test_reasoning_then_text_closes_the_reasoning_first() -> None:
    wire = encoder()
    data = (
        wire.encode(ReasoningEvent("Let me think."))
        + wire.encode(ReasoningEvent(" Done."))
        + wire.text("Answer")
        + wire.encode(ReasoningEvent("More?"))
        + wire.end("stop", None)
    )
    assert [(c["type"], c.get("id"), c.get("delta")) for c in chunks(data)[:-1]] == [
        ("reasoning-start", "reasoning-1", None),
        ("reasoning-delta", "reasoning-1", "Let me think."),
        ("reasoning-delta", "reasoning-1", " Done."),
        ("reasoning-end", "reasoning-1", None),
        ("text-start", "text-2", None),
        ("text-delta", "text-2", "Answer"),
        ("text-end", "text-2", None),
        ("reasoning-start", "reasoning-3", None),
        ("reasoning-delta", "reasoning-3", "More?"),
        ("reasoning-end", "reasoning-3", None),
        ("finish-step", None, None),
        ("finish", None, None),
    ]


@pytest.mark.parametrize(
    "value",
    [
        "line one\nline two\r\nthree\rfour",
        "\n\n",
        "data: [DONE]",
        "emoji 🙂👩‍👩‍👧 and CJK 漢字",
        "tab\tand\u2028line separator\x0bvertical tab\x00NUL",
        '"quoted" \\ back\\slash',
        "x" * 100_000,
    ],
)
def test_any_text_survives_in_one_data_line(value: str) -> None:
    wire = encoder()
    data = wire.text(value)
    assert data.count(b"\n") == 4  # two chunks, each one line and a blank line
    assert chunks(data)[1] == {"type": "text-delta", "id": "text-1", "delta": value}


def test_a_lone_surrogate_becomes_a_replacement_character() -> None:
    data = encoder().text("half \ud83d of an emoji")
    assert chunks(data)[1]["delta"] == "half \ufffd of an emoji"


def test_empty_text_sends_nothing() -> None:
    wire = encoder()
    assert wire.text("") == b"" and wire.encode(ReasoningEvent("")) == b""
    assert chunks(wire.end("stop", None))[0] == {"type": "finish-step"}


def test_a_tool_call_streams_its_input_then_makes_it_available() -> None:
    wire = encoder()
    data = (
        wire.text("Checking.")
        + wire.encode(ToolCallDeltaEvent(0, "call_1", "get_weather", ""))
        + wire.encode(ToolCallDeltaEvent(0, None, None, '{"city": '))
        + wire.encode(ToolCallDeltaEvent(0, None, None, '"Paris"}'))
        + wire.encode(tool_call(0, "call_1", "get_weather", '{"city": "Paris"}'))
        + wire.end("tool_calls", None)
    )
    assert chunks(data) == [
        {"type": "text-start", "id": "text-1"},
        {"type": "text-delta", "id": "text-1", "delta": "Checking."},
        {"type": "text-end", "id": "text-1"},
        {"type": "tool-input-start", "toolCallId": "call_1", "toolName": "get_weather"},
        {"type": "tool-input-delta", "toolCallId": "call_1", "inputTextDelta": '{"city": '},
        {"type": "tool-input-delta", "toolCallId": "call_1", "inputTextDelta": '"Paris"}'},
        {
            "type": "tool-input-available",
            "toolCallId": "call_1",
            "toolName": "get_weather",
            "input": {"city": "Paris"},
        },
        {"type": "finish-step"},
        {"type": "finish"},
        "[DONE]",
    ]


def test_parallel_tool_calls_keep_their_own_ids() -> None:
    wire = encoder()
    data = (
        wire.encode(ToolCallDeltaEvent(0, "a", "get_weather", '{"city":'))
        + wire.encode(ToolCallDeltaEvent(1, "b", "get_time", '{"tz":'))
        + wire.encode(ToolCallDeltaEvent(0, None, None, '"Oslo"}'))
        + wire.encode(ToolCallDeltaEvent(1, None, None, '"UTC"}'))
        + wire.encode(tool_call(0, "a", "get_weather", '{"city":"Oslo"}'))
        + wire.encode(tool_call(1, "b", "get_time", '{"tz":"UTC"}'))
        + wire.text("Both called.")
    )
    got = [
        (c["type"], c.get("toolCallId"), c.get("inputTextDelta") or c.get("input"))
        for c in chunks(data)
    ]
    assert got == [
        ("tool-input-start", "a", None),
        ("tool-input-delta", "a", '{"city":'),
        ("tool-input-start", "b", None),
        ("tool-input-delta", "b", '{"tz":'),
        ("tool-input-delta", "a", '"Oslo"}'),
        ("tool-input-delta", "b", '"UTC"}'),
        ("tool-input-available", "a", {"city": "Oslo"}),
        ("tool-input-available", "b", {"tz": "UTC"}),
        ("text-start", None, None),
        ("text-delta", None, None),
    ]


def test_a_tool_call_waits_for_its_name_before_starting() -> None:
    wire = encoder()
    assert wire.encode(ToolCallDeltaEvent(0, "c", None, '{"a"')) == b""
    data = wire.encode(ToolCallDeltaEvent(0, None, "f", ": 1}"))
    assert chunks(data) == [
        {"type": "tool-input-start", "toolCallId": "c", "toolName": "f"},
        {"type": "tool-input-delta", "toolCallId": "c", "inputTextDelta": '{"a": 1}'},
    ]


def test_a_complete_tool_call_without_deltas_starts_it_too() -> None:
    data = encoder().encode(tool_call(2, "c9", "lookup", '{"q": "x"}'))
    assert chunks(data) == [
        {"type": "tool-input-start", "toolCallId": "c9", "toolName": "lookup"},
        {
            "type": "tool-input-available",
            "toolCallId": "c9",
            "toolName": "lookup",
            "input": {"q": "x"},
        },
    ]


def test_a_tool_call_without_an_id_gets_one_for_all_its_chunks() -> None:
    wire = encoder()
    data = (
        wire.encode(ToolCallDeltaEvent(3, None, "f", "{}"))
        + wire.encode(tool_call(3, None, "f", "{}"))
        + wire.encode(tool_call(4, None, None, ""))
    )
    ids = [c["toolCallId"] for c in chunks(data)]
    assert ids == ["msg-1-tool-3"] * 3 + ["msg-1-tool-4"] * 2
    assert chunks(data)[-1] == {
        "type": "tool-input-available",
        "toolCallId": "msg-1-tool-4",
        "toolName": "",
        "input": {},
    }


def test_invalid_json_arguments_are_made_available_raw() -> None:
    wire = encoder()
    wire.encode(ToolCallDeltaEvent(0, "c", "f", '{"city": Par'))
    call = tool_call(0, "c", "f", '{"city": Par')
    assert not call.valid
    assert chunks(wire.encode(call)) == [
        {
            "type": "tool-input-available",
            "toolCallId": "c",
            "toolName": "f",
            "input": '{"city": Par',
        }
    ]


def test_error_closes_the_open_part_and_ends_the_stream() -> None:
    wire = encoder()
    wire.open()
    data = wire.text("Partial") + wire.error("upstream_error", "the model stream failed (X)")
    assert chunks(data) == [
        {"type": "text-start", "id": "text-1"},
        {"type": "text-delta", "id": "text-1", "delta": "Partial"},
        {"type": "text-end", "id": "text-1"},
        {"type": "error", "errorText": "the model stream failed (X)"},
        "[DONE]",
    ]


def test_error_with_nothing_open() -> None:
    assert encoder().error("timeout", "no data from the model for 300 s") == (
        b'data: {"type":"error","errorText":"no data from the model for 300 s"}\n\ndata: [DONE]\n\n'
    )


def test_usage_and_finish_reason_travel_as_message_metadata_when_attached() -> None:
    usage = {"prompt_tokens": 3, "completion_tokens": 5, "total_tokens": 8, "cost": None}
    finish = chunks(encoder(attach_usage=True).end("tool_calls", usage))[1]
    assert finish == {
        "type": "finish",
        "messageMetadata": {"finishReason": "tool-calls", "usage": usage},
    }
    finish = chunks(encoder(attach_usage=True).end("content_filter", None))[1]
    assert finish["messageMetadata"] == {"finishReason": "content-filter", "usage": None}
    assert chunks(encoder().end("length", usage))[1] == {"type": "finish"}


def test_heartbeat_is_a_comment() -> None:
    assert encoder().ping() == b": ping\n\n"


@pytest.mark.parametrize("event", [FinishEvent("stop"), UsageEvent({})])
def test_events_the_pipeline_keeps_are_refused(event: Any) -> None:
    with pytest.raises(TypeError, match="ai-sdk protocol does not encode"):
        encoder().encode(event)


# --- through the pipeline -----------------------------------------------------------------


def stream(model: str, **options: Any) -> list[Any]:
    messages = [{"role": "user", "content": "weather in Oslo"}]
    source = DemoClient(delay=0).chat(messages, model, stream=True)
    got = chunks(b"".join(sse_stream(source, protocol=encoder(**options))))
    assert got.count("[DONE]") == 1 and got[-1] == "[DONE]"
    return got


def kinds(got: list[Any]) -> list[str]:
    """Chunk types with runs of deltas folded into one."""
    out: list[str] = []
    for chunk in got:
        kind = chunk if isinstance(chunk, str) else chunk["type"]
        if not (kind.endswith("-delta") and out and out[-1] == kind):
            out.append(kind)
    return out


def test_pipeline_reasoning_then_text() -> None:
    got = stream("demo/think", attach_usage=True)
    assert kinds(got) == [
        "start", "start-step",
        "reasoning-start", "reasoning-delta", "reasoning-end",
        "text-start", "text-delta", "text-end",
        "finish-step", "finish", "[DONE]",
    ]  # fmt: skip
    got = got[:-1]
    reasoning = "".join(c["delta"] for c in got if c["type"] == "reasoning-delta")
    assert reasoning.startswith("The user asked: weather in Oslo")
    answer = "".join(c["delta"] for c in got if c["type"] == "text-delta")
    assert answer == "Here is my answer, after thinking it over: keep it short, and keep it kind."
    metadata = got[-1]["messageMetadata"]
    assert metadata["finishReason"] == "stop"
    assert metadata["usage"]["total_tokens"] > 0


def test_pipeline_tool_call() -> None:
    got = stream("demo/tools", attach_usage=True)
    assert kinds(got) == [
        "start", "start-step",
        "tool-input-start", "tool-input-delta", "tool-input-available",
        "finish-step", "finish", "[DONE]",
    ]  # fmt: skip
    got = got[:-1]
    streamed = "".join(c["inputTextDelta"] for c in got if c["type"] == "tool-input-delta")
    available = next(c for c in got if c["type"] == "tool-input-available")
    assert json.loads(streamed) == available["input"] == {"city": "Oslo", "unit": "celsius"}
    assert available["toolCallId"] == "call_demo_1" and available["toolName"] == "get_weather"
    assert got[-1]["messageMetadata"]["finishReason"] == "tool-calls"


def test_pipeline_failure_is_an_error_chunk() -> None:
    got = stream("demo/fail")
    assert kinds(got) == [
        "start", "start-step", "text-start", "text-delta", "text-end", "error", "[DONE]",
    ]  # fmt: skip
    assert got[-2] == {"type": "error", "errorText": "the model stream failed (DemoProviderError)"}
