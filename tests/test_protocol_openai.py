"""The OpenAI-compatible protocol: request handling and the exact bytes it writes."""

from __future__ import annotations

import json
from typing import Any

import pytest
from openai.types import Model
from openai.types.chat import ChatCompletion, ChatCompletionChunk

from indox_integrations import (
    ChatRequest,
    DemoClient,
    ErrorEvent,
    Event,
    FinishEvent,
    Limits,
    ReasoningEvent,
    RequestError,
    TextEvent,
    ToolCallDeltaEvent,
    ToolCallEvent,
    UsageEvent,
    call_client,
    get_protocol,
    sse_stream,
)
from indox_integrations.protocols import Call, Reply
from indox_integrations.protocols.openai import CHAT_COMPLETIONS, MODELS, OpenAIProtocol

JSON = {"content-type": "application/json"}
HEAD = '{"id":"chatcmpl-1","object":"chat.completion.chunk","created":7,"model":"m","choices":'
DEFAULT = Limits()
USAGE = {"prompt_tokens": 3, "completion_tokens": 5, "total_tokens": 8, "cost": 0.1}


def handle(
    body: Any,
    limits: Limits = DEFAULT,
    headers: dict[str, str] | None = None,
    api_keys: Any = None,
) -> Reply | Call:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return OpenAIProtocol.handle(
        CHAT_COMPLETIONS, raw, JSON if headers is None else headers, limits, api_keys=api_keys
    )


def chat(**fields: Any) -> dict[str, Any]:
    return {"model": "m", "messages": [{"role": "user", "content": "hi"}], **fields}


def call(body: Any, limits: Limits = DEFAULT) -> Call:
    result = handle(body, limits)
    assert isinstance(result, Call), result
    return result


def rejected(body: Any, status: int = 400, limits: Limits = DEFAULT, **kw: Any) -> dict[str, Any]:
    result = handle(body, limits, **kw)
    assert isinstance(result, Reply), result
    assert result.status == status, result
    error = result.body["error"]
    assert set(error) == {"message", "type", "param", "code"}
    return error  # type: ignore[no-any-return]


def encoder(**options: Any) -> OpenAIProtocol:
    return OpenAIProtocol(model="m", id="chatcmpl-1", created=7, **options)


def delta_chunk(delta: str, finish: str = "null") -> bytes:
    choice = f'[{{"index":0,"delta":{delta},"logprobs":null,"finish_reason":{finish}}}]}}'
    return f"data: {HEAD}{choice}\n\n".encode()


def chunks(data: bytes) -> list[Any]:
    """The JSON of every data line, ``[DONE]`` as a string; comments skipped."""
    out: list[Any] = []
    for block in data.decode().split("\n\n")[:-1]:
        assert block.startswith(("data: ", ": ")), block
        assert "\n" not in block, block
        if block.startswith("data: "):
            payload = block[len("data: ") :]
            out.append(payload if payload == "[DONE]" else json.loads(payload))
    return out


# --- the request ------------------------------------------------------------------


def test_registered_under_its_name() -> None:
    assert get_protocol("openai") is OpenAIProtocol
    assert OpenAIProtocol.csrf_exempt is True
    assert [(r.method, r.path) for r in OpenAIProtocol.routes] == [
        ("POST", "/chat/completions"),
        ("GET", "/models"),
    ]


def test_a_streamed_request_becomes_a_chat_request_and_an_encoder() -> None:
    result = call(chat(stream=True, temperature=0.5, max_tokens=9, top_p=1, tools=[], user="u"))
    assert result.request == ChatRequest(
        messages=[{"role": "user", "content": "hi"}], model="m", temperature=0.5, max_tokens=9
    )
    assert isinstance(result.encoder, OpenAIProtocol)
    assert result.encoder.model == "m"
    assert result.encoder.attach_usage is False
    assert result.reply is None


def test_include_usage_asks_the_encoder_for_a_usage_chunk() -> None:
    encoder = call(chat(stream=True, stream_options={"include_usage": True})).encoder
    assert isinstance(encoder, OpenAIProtocol) and encoder.attach_usage is True
    encoder = call(chat(stream=True, stream_options={"include_usage": None})).encoder
    assert isinstance(encoder, OpenAIProtocol) and encoder.attach_usage is False


@pytest.mark.parametrize("stream", [False, None, "absent"])
def test_without_stream_true_the_answer_is_collected(stream: Any) -> None:
    body = chat() if stream == "absent" else chat(stream=stream)
    result = call(body)
    assert result.encoder is None and result.reply is not None
    reply = result.reply([TextEvent("hello")])
    assert reply.status == 200
    assert reply.body["model"] == "m"
    assert reply.body["choices"][0]["message"]["content"] == "hello"


def test_each_stream_gets_its_own_id() -> None:
    first, second = call(chat(stream=True)).encoder, call(chat(stream=True)).encoder
    assert isinstance(first, OpenAIProtocol) and isinstance(second, OpenAIProtocol)
    assert first.id.startswith("chatcmpl-") and first.id != second.id


def test_developer_messages_are_system_and_text_parts_are_joined() -> None:
    messages = [
        {"role": "developer", "content": "be brief"},
        {
            "role": "system",
            "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}],
        },
        {"role": "user", "content": [{"type": "text", "text": "héllo 🙂"}], "name": "ann"},
        {"role": "assistant", "content": [{"type": "refusal", "refusal": "no"}]},
        {"role": "user", "content": []},
    ]
    assert call({"model": "m", "messages": messages}).request.messages == [  # type: ignore[union-attr]
        {"role": "system", "content": "be brief"},
        {"role": "system", "content": "a\nb"},
        {"role": "user", "content": "héllo 🙂"},
        {"role": "assistant", "content": "no"},
        {"role": "user", "content": ""},
    ]


@pytest.mark.parametrize(
    ("part", "shown"),
    [
        ({"type": "image_url", "image_url": {"url": "data:,"}}, "a 'image_url' part"),
        ({"type": "text", "text": 3}, "a 'text' part"),
        ({"text": "x"}, "object"),
        ("plain", "string"),
    ],
)
def test_parts_other_than_text_are_refused(part: Any, shown: str) -> None:
    content = [{"type": "text", "text": "look"}, part]
    error = rejected({"model": "m", "messages": [{"role": "user", "content": content}]})
    assert error["param"] == "messages[0].content[1]"
    assert error["type"] == "invalid_request_error"
    assert error["message"] == f"messages[0].content[1]: expected a text part, got {shown}"


@pytest.mark.parametrize("role", ["tool", "function"])
def test_tool_results_are_refused_not_dropped(role: str) -> None:
    messages = [{"role": "user", "content": "hi"}, {"role": role, "content": "18C"}]
    error = rejected({"model": "m", "messages": messages})
    assert error["param"] == "messages[1].role"
    assert f"{role} messages are not supported" in error["message"]


def test_earlier_tool_calls_are_refused() -> None:
    call_ = {"id": "c", "type": "function", "function": {"name": "f", "arguments": "{}"}}
    messages = [{"role": "assistant", "content": None, "tool_calls": [call_]}]
    error = rejected({"model": "m", "messages": messages})
    assert error["param"] == "messages[0].tool_calls"
    # An empty list is no tool call.
    messages = [{"role": "assistant", "content": "x", "tool_calls": []}]
    assert call({"model": "m", "messages": messages}).request.messages[0]["content"] == "x"  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("fields", "param", "message"),
    [
        ({"n": 2}, "n", "n: must be 1 (this server answers one choice), got 2"),
        ({"n": True}, "n", "n: must be 1 (this server answers one choice), got True"),
        ({"stream": "yes"}, "stream", "stream: expected a boolean, got string"),
        ({"stream_options": []}, "stream_options", "stream_options: expected an object, got array"),
        (
            {"stream_options": {"include_usage": 1}},
            "stream_options.include_usage",
            "stream_options.include_usage: expected a boolean, got number",
        ),
        ({"temperature": 3}, "temperature", "temperature: must be between 0 and 2, got 3"),
        ({"max_tokens": 0}, "max_tokens", "max_tokens: must be between 1 and 32768, got 0"),
        (
            {"max_completion_tokens": "9"},
            "max_completion_tokens",
            "max_completion_tokens: expected an integer, got string",
        ),
        ({"model": ""}, "model", "model: expected a non-empty string, got string"),
        ({"messages": []}, "messages", "messages: must not be empty"),
        ({"messages": "hi"}, "messages", "messages: expected an array, got string"),
        ({"messages": [3]}, "messages[0]", "messages[0]: expected an object, got number"),
        (
            {"messages": [{"role": "user"}]},
            "messages[0].content",
            "messages[0].content: expected a string, got null",
        ),
        (
            {"messages": [{"role": "robot", "content": "x"}]},
            "messages[0].role",
            "messages[0].role: must be one of system, user, assistant",
        ),
    ],
)
def test_bad_fields_are_400_naming_the_param(
    fields: dict[str, Any], param: str, message: str
) -> None:
    assert rejected(chat(**fields)) == {
        "message": message,
        "type": "invalid_request_error",
        "param": param,
        "code": None,
    }


def test_n_of_one_is_fine() -> None:
    assert call(chat(n=1)).request.model == "m"


def test_max_completion_tokens_wins_over_max_tokens() -> None:
    assert call(chat(max_completion_tokens=7, max_tokens=99)).request.max_tokens == 7
    assert call(chat(max_tokens=99)).request.max_tokens == 99
    assert call(chat(max_completion_tokens=None, max_tokens=5)).request.max_tokens is None


def test_model_is_required_unless_there_is_a_default() -> None:
    body = {"messages": [{"role": "user", "content": "hi"}]}
    assert rejected(body)["message"] == "model: is required"
    assert call(body, Limits(default_model="demo/echo")).request.model == "demo/echo"


def test_a_model_outside_the_list_is_404_model_not_found() -> None:
    limits = Limits(models=("demo/echo",))
    assert rejected(chat(model="gpt-5"), 404, limits) == {
        "message": "The model `gpt-5` does not exist or you do not have access to it.",
        "type": "invalid_request_error",
        "param": "model",
        "code": "model_not_found",
    }
    assert call(chat(model="demo/echo"), limits).request.model == "demo/echo"


def test_too_many_messages() -> None:
    error = rejected(
        chat(messages=[{"role": "user", "content": "x"}] * 3), limits=Limits(max_messages=2)
    )
    assert error["param"] == "messages"


def test_body_too_large_is_413() -> None:
    error = rejected(b'{"model": "m"}' + b" " * 20, 413, Limits(max_body_bytes=20))
    assert error == {
        "message": "body: must be at most 20 bytes",
        "type": "invalid_request_error",
        "param": None,
        "code": "request_too_large",
    }


@pytest.mark.parametrize("headers", [{}, {"content-type": "text/plain"}])
def test_not_json_is_415(headers: dict[str, str]) -> None:
    error = rejected(chat(), 415, headers=headers)
    assert error["code"] == "unsupported_media_type" and error["param"] is None


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"{", "body: is not valid JSON"),
        (b"[1]", "body: expected a JSON object, got array"),
        (b'{"model": "\xff"}', "body: is not valid UTF-8"),
    ],
)
def test_broken_bodies_are_400(body: bytes, message: str) -> None:
    assert rejected(body)["message"] == message


def test_request_error_from_the_skin_has_the_same_shape() -> None:
    reply = OpenAIProtocol.request_error(RequestError("body", "must be at most 5 bytes", 413))
    assert reply.status == 413
    assert reply.body["error"]["code"] == "request_too_large"


# --- keys ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("authorization", "message"),
    [
        (None, "You didn't provide an API key: send it as Authorization: Bearer <key>."),
        ("Bearer ", "You didn't provide an API key: send it as Authorization: Bearer <key>."),
        (
            "Basic c2stMQ==",
            "You didn't provide an API key: send it as Authorization: Bearer <key>.",
        ),
        ("Bearer sk-2", "Incorrect API key provided."),
        ("Bearer sk-1x", "Incorrect API key provided."),
        ("Bearer sk-ü", "Incorrect API key provided."),
    ],
)
def test_a_missing_or_wrong_key_is_401(authorization: str | None, message: str) -> None:
    headers = dict(JSON) if authorization is None else {**JSON, "authorization": authorization}
    # The key is checked before the body: a bad body without a key is still 401.
    for body in (chat(), b"{"):
        result = handle(body, headers=headers, api_keys=["sk-1", "sk-3"])
        assert isinstance(result, Reply)
        assert (result.status, result.headers) == (401, {"WWW-Authenticate": "Bearer"})
        assert result.body == {
            "error": {
                "message": message,
                "type": "invalid_request_error",
                "param": None,
                "code": "invalid_api_key",
            }
        }


@pytest.mark.parametrize("authorization", ["Bearer sk-1", "bearer sk-3", "  Bearer   sk-1 "])
def test_a_listed_key_passes(authorization: str) -> None:
    headers = {**JSON, "authorization": authorization}
    assert isinstance(handle(chat(), headers=headers, api_keys=("sk-1", "sk-3")), Call)


def test_a_single_key_given_as_a_string_is_one_key() -> None:
    headers = {**JSON, "authorization": "Bearer sk-1"}
    assert isinstance(handle(chat(), headers=headers, api_keys="sk-1"), Call)
    headers = {**JSON, "authorization": "Bearer s"}
    assert isinstance(handle(chat(), headers=headers, api_keys="sk-1"), Reply)


def test_no_keys_configured_means_no_check_and_an_empty_list_refuses_all() -> None:
    assert isinstance(handle(chat()), Call)
    headers = {**JSON, "authorization": "Bearer anything"}
    assert isinstance(handle(chat(), headers=headers, api_keys=[]), Reply)


# --- GET /models ----------------------------------------------------------------


def test_models_lists_the_allowed_models_default_first() -> None:
    limits = Limits(models={"demo/story", "demo/echo", "local"}, default_model="big")
    reply = OpenAIProtocol.handle(MODELS, b"", {}, limits)
    assert isinstance(reply, Reply) and reply.status == 200
    assert reply.body == {
        "object": "list",
        "data": [
            {"id": "big", "object": "model", "created": 0, "owned_by": "system"},
            {"id": "demo/echo", "object": "model", "created": 0, "owned_by": "demo"},
            {"id": "demo/story", "object": "model", "created": 0, "owned_by": "demo"},
            {"id": "local", "object": "model", "created": 0, "owned_by": "system"},
        ],
    }
    for entry in reply.body["data"]:
        Model.model_validate(entry)


def test_models_without_a_list_is_empty_and_keys_guard_it() -> None:
    reply = OpenAIProtocol.handle(MODELS, b"", {}, Limits())
    assert isinstance(reply, Reply) and reply.body == {"object": "list", "data": []}
    reply = OpenAIProtocol.handle(MODELS, b"", {}, Limits(), api_keys=["k"])
    assert isinstance(reply, Reply) and reply.status == 401
    reply = OpenAIProtocol.handle(
        MODELS, b"", {"authorization": "Bearer k"}, Limits(), api_keys=["k"]
    )
    assert isinstance(reply, Reply) and reply.status == 200


# --- the stream, byte by byte ------------------------------------------------------


def test_open_sends_the_role_first() -> None:
    assert encoder().open() == delta_chunk('{"role":"assistant"}')


def test_text_is_a_content_delta() -> None:
    wire = encoder().text('héllo "world"\n🙂\r\n')
    assert wire == delta_chunk('{"content":"héllo \\"world\\"\\n🙂\\r\\n"}')


def test_a_lone_surrogate_becomes_a_replacement_character() -> None:
    assert encoder().text("a\ud83d") == delta_chunk('{"content":"a\ufffd"}')


def test_reasoning_is_reasoning_content() -> None:
    wire = encoder().encode(ReasoningEvent("hmm\nok"))
    assert wire == delta_chunk('{"reasoning_content":"hmm\\nok"}')


def test_tool_call_deltas_carry_index_id_type_and_function_pieces() -> None:
    wire = encoder()
    out = [
        wire.encode(ToolCallDeltaEvent(0, "call_1", "get_weather", "")),
        wire.encode(ToolCallDeltaEvent(0, None, None, '{"city":')),
        wire.encode(ToolCallDeltaEvent(0, None, None, '"Paris"}')),
        wire.encode(ToolCallEvent(0, "call_1", "get_weather", {"city": "Paris"}, "", True)),
    ]
    call = (
        '{"index":0,"id":"call_1","type":"function",'
        '"function":{"name":"get_weather","arguments":""}}'
    )
    assert out == [
        delta_chunk(f'{{"tool_calls":[{call}]}}'),
        delta_chunk('{"tool_calls":[{"index":0,"function":{"arguments":"{\\"city\\":"}}]}'),
        delta_chunk('{"tool_calls":[{"index":0,"function":{"arguments":"\\"Paris\\"}"}}]}'),
        b"",  # a complete call adds nothing: its deltas carried it
    ]


def test_tool_call_indexes_run_from_zero_and_ids_are_never_missing() -> None:
    wire = encoder()
    first = chunks(wire.encode(ToolCallDeltaEvent(3, None, "a", "{")))[0]
    second = chunks(wire.encode(ToolCallDeltaEvent(5, "call_b", "b", "")))[0]
    again = chunks(wire.encode(ToolCallDeltaEvent(3, None, None, "}")))[0]
    calls = [c["choices"][0]["delta"]["tool_calls"][0] for c in (first, second, again)]
    assert [c["index"] for c in calls] == [0, 1, 0]
    assert calls[0]["id"].startswith("call_") and calls[1]["id"] == "call_b"
    assert "id" not in calls[2] and "type" not in calls[2]


def test_ping_is_a_comment() -> None:
    assert encoder().ping() == b": ping\n\n"


def test_end_sends_the_finish_reason_then_done() -> None:
    assert encoder().end("stop", USAGE) == delta_chunk("{}", '"stop"') + b"data: [DONE]\n\n"


def test_end_with_include_usage_adds_a_usage_chunk_with_no_choices() -> None:
    wire = encoder(attach_usage=True).end("length", USAGE)
    usage = '{"prompt_tokens":3,"completion_tokens":5,"total_tokens":8}'
    assert wire == (
        delta_chunk("{}", '"length"')
        + f'data: {HEAD}[],"usage":{usage}}}\n\n'.encode()
        + b"data: [DONE]\n\n"
    )


def test_usage_without_token_counts_is_left_out() -> None:
    unknown = {"prompt_tokens": None, "completion_tokens": None, "total_tokens": None}
    wire = encoder(attach_usage=True)
    assert wire.end("stop", unknown) == delta_chunk("{}", '"stop"') + b"data: [DONE]\n\n"
    assert wire.end("stop", None) == delta_chunk("{}", '"stop"') + b"data: [DONE]\n\n"
    partial = {"prompt_tokens": 2, "completion_tokens": 3, "total_tokens": None}
    assert chunks(wire.end("stop", partial))[1]["usage"]["total_tokens"] == 5


@pytest.mark.parametrize(
    ("reason", "sent"),
    [("tool_calls", "tool_calls"), ("content_filter", "content_filter"), ("other", "stop")],
)
def test_finish_reasons_are_openais(reason: Any, sent: str) -> None:
    assert chunks(encoder().end(reason, None))[0]["choices"][0]["finish_reason"] == sent


def test_an_error_finish_reason_is_an_in_band_error() -> None:
    assert encoder(attach_usage=True).end("error", USAGE) == (
        b'data: {"error":{"message":"the model stopped with an error","type":"server_error",'
        b'"param":null,"code":"error"}}\n\ndata: [DONE]\n\n'
    )


def test_error_is_an_error_object_then_done() -> None:
    assert encoder().error("timeout", "no data from the model for 5 s") == (
        b'data: {"error":{"message":"no data from the model for 5 s","type":"server_error",'
        b'"param":null,"code":"timeout"}}\n\ndata: [DONE]\n\n'
    )


def test_other_events_are_a_type_error() -> None:
    with pytest.raises(TypeError, match="does not encode UsageEvent"):
        encoder().encode(UsageEvent(USAGE))


def test_every_chunk_is_a_valid_chat_completion_chunk() -> None:
    wire = encoder(attach_usage=True)
    data = b"".join(
        [
            wire.open(),
            wire.encode(ReasoningEvent("r")),
            wire.text("t"),
            wire.encode(ToolCallDeltaEvent(0, "c", "f", "{}")),
            wire.end("tool_calls", USAGE),
        ]
    )
    parsed = chunks(data)
    assert parsed[-1] == "[DONE]"
    for chunk in parsed[:-1]:
        ChatCompletionChunk.model_validate(chunk)
    assert parsed[-2]["usage"]["total_tokens"] == 8


def test_the_pipeline_with_the_demo_client() -> None:
    client = DemoClient(delay=0)
    result = call(chat(model="demo/tools", stream=True, stream_options={"include_usage": True}))
    assert result.encoder is not None
    parsed = chunks(
        b"".join(sse_stream(call_client(client, result.request), protocol=result.encoder))
    )
    assert parsed[0]["choices"][0]["delta"] == {"role": "assistant"}
    arguments = "".join(
        c["choices"][0]["delta"]["tool_calls"][0]["function"]["arguments"] for c in parsed[1:-3]
    )
    assert json.loads(arguments) == {"city": "Paris", "unit": "celsius"}
    assert parsed[-3]["choices"][0]["finish_reason"] == "tool_calls"
    assert parsed[-2]["choices"] == [] and parsed[-2]["usage"]["prompt_tokens"] == 1
    assert parsed[-1] == "[DONE]"
    assert len({c["id"] for c in parsed[:-1]}) == 1


def test_the_pipeline_reports_a_failing_upstream_in_band() -> None:
    result = call(chat(model="demo/fail", stream=True))
    assert result.encoder is not None
    source = call_client(DemoClient(delay=0), result.request)
    parsed = chunks(b"".join(sse_stream(source, protocol=result.encoder)))
    assert parsed[-2] == {
        "error": {
            "message": "the model stream failed (DemoProviderError)",
            "type": "server_error",
            "param": None,
            "code": "upstream_error",
        }
    }
    assert parsed[-1] == "[DONE]"
    assert "".join(c["choices"][0]["delta"].get("content", "") for c in parsed[:-2])


# --- stream: false ---------------------------------------------------------------


def complete(events: list[Event]) -> Reply:
    return OpenAIProtocol.completion(events, model="m", id="chatcmpl-1", created=7)


def test_a_completion_gathers_text_reasoning_tools_and_usage() -> None:
    reply = complete(
        [
            ReasoningEvent("think "),
            ReasoningEvent("more"),
            TextEvent("Let me "),
            TextEvent("check."),
            ToolCallDeltaEvent(0, "call_1", "get_weather", '{"city"'),
            ToolCallDeltaEvent(0, None, None, ':"Paris"}'),
            ToolCallDeltaEvent(1, "call_2", "get_time", ""),
            ToolCallEvent(0, "call_1", "get_weather", {"city": "Paris"}, '{"city":"Paris"}', True),
            ToolCallEvent(1, "call_2", "get_time", {}, "", True),
            FinishEvent("tool_calls"),
            UsageEvent(USAGE),
        ]
    )
    assert reply == Reply(
        200,
        {
            "id": "chatcmpl-1",
            "object": "chat.completion",
            "created": 7,
            "model": "m",
            "choices": [
                {
                    "index": 0,
                    "message": {
                        "role": "assistant",
                        "content": "Let me check.",
                        "refusal": None,
                        "reasoning_content": "think more",
                        "tool_calls": [
                            {
                                "id": "call_1",
                                "type": "function",
                                "function": {
                                    "name": "get_weather",
                                    "arguments": '{"city":"Paris"}',
                                },
                            },
                            {
                                "id": "call_2",
                                "type": "function",
                                "function": {"name": "get_time", "arguments": ""},
                            },
                        ],
                    },
                    "logprobs": None,
                    "finish_reason": "tool_calls",
                }
            ],
            "usage": {"prompt_tokens": 3, "completion_tokens": 5, "total_tokens": 8},
        },
    )
    ChatCompletion.model_validate(reply.body)


def test_a_plain_completion() -> None:
    reply = complete([TextEvent("hi")])
    message = reply.body["choices"][0]["message"]
    assert message == {"role": "assistant", "content": "hi", "refusal": None}
    assert reply.body["choices"][0]["finish_reason"] == "stop"
    assert "usage" not in reply.body
    assert complete([]).body["choices"][0]["message"]["content"] == ""


def test_only_tool_calls_means_null_content_and_the_tool_calls_reason() -> None:
    reply = complete([ToolCallDeltaEvent(0, None, "f", "{}")])
    choice = reply.body["choices"][0]
    assert choice["message"]["content"] is None
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["tool_calls"][0]["id"].startswith("call_")
    ChatCompletion.model_validate(reply.body)


def test_a_length_finish() -> None:
    reply = complete([TextEvent("a"), FinishEvent("length")])
    assert reply.body["choices"][0]["finish_reason"] == "length"


@pytest.mark.parametrize(
    ("events", "code", "message"),
    [
        ([TextEvent("a"), ErrorEvent("upstream_error", "quota")], "upstream_error", "quota"),
        ([TextEvent("a"), FinishEvent("error")], "error", "the model stopped with an error"),
    ],
)
def test_a_failed_completion_is_502(events: list[Event], code: str, message: str) -> None:
    assert complete(events) == Reply(
        502, {"error": {"message": message, "type": "server_error", "param": None, "code": code}}
    )


# --- client failures ------------------------------------------------------------


class RateLimitError(Exception):
    pass


class APITimeoutError(Exception):
    pass


class NotFound(Exception):
    status_code = 404


@pytest.mark.parametrize(
    ("exc", "status", "type", "code"),
    [
        (ValueError("unknown model 'x'"), 400, "invalid_request_error", None),
        (NotFound("no such model"), 404, "invalid_request_error", None),
        (RateLimitError("slow down"), 429, "rate_limit_error", "rate_limited"),
        (ConnectionError("refused"), 502, "server_error", "upstream_error"),
        (APITimeoutError("late"), 504, "server_error", "timeout"),
    ],
)
def test_client_errors_keep_the_kits_status_in_openais_shape(
    exc: Exception, status: int, type: str, code: str | None
) -> None:
    reply = OpenAIProtocol.client_error(exc)
    assert reply.status == status
    name = exc.__class__.__name__
    assert reply.body == {
        "error": {"message": f"{name}: {exc}", "type": type, "param": None, "code": code}
    }


def test_a_request_error_from_the_client_names_its_param() -> None:
    reply = OpenAIProtocol.client_error(RequestError("model", "is required by this client"))
    assert reply == Reply(
        400,
        {
            "error": {
                "message": "model: is required by this client",
                "type": "invalid_request_error",
                "param": "model",
                "code": None,
            }
        },
    )
