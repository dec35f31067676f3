"""Request body validation shared by every framework."""

from __future__ import annotations

import json
from typing import Any

import pytest

from indox_integrations import (
    ChatRequest,
    CompletionRequest,
    Limits,
    RequestError,
    parse_chat,
    parse_completion,
    read_json_body,
)

JSON = "application/json"


def rejects(
    call: Any, *args: Any, field: str, status: int = 400, match: str | None = None
) -> RequestError:
    with pytest.raises(RequestError, match=match) as info:
        call(*args)
    assert (info.value.field, info.value.status) == (field, status)
    return info.value


# --- read_json_body --------------------------------------------------------------


def test_reads_a_json_object() -> None:
    body = json.dumps({"prompt": "héllo 🙂"}).encode()
    assert read_json_body(body, JSON) == {"prompt": "héllo 🙂"}


@pytest.mark.parametrize(
    "content_type",
    ["application/json", "application/json; charset=utf-8", "Application/JSON", "x/vnd.a+json"],
)
def test_json_content_types_are_accepted(content_type: str) -> None:
    assert read_json_body(b"{}", content_type) == {}


def test_body_over_the_limit_is_413() -> None:
    limits = Limits(max_body_bytes=10)
    assert read_json_body(b'{"a": "1"}', JSON, limits) == {"a": "1"}  # exactly 10 bytes
    error = rejects(read_json_body, b'{"a": "12"}', JSON, limits, field="body", status=413)
    assert error.message == "must be at most 10 bytes"
    # The size is checked before the content type and the JSON.
    rejects(read_json_body, b"x" * 11, "text/plain", limits, field="body", status=413)


@pytest.mark.parametrize(
    ("content_type", "shown"),
    [
        ("text/plain", "text/plain"),
        ("application/x-www-form-urlencoded", "application/x-www-form-urlencoded"),
        ("", "none"),
        (None, "none"),
    ],
)
def test_other_content_types_are_415(content_type: str | None, shown: str) -> None:
    error = rejects(read_json_body, b"{}", content_type, field="body", status=415)
    assert error.message == f"expected Content-Type application/json, got {shown}"


@pytest.mark.parametrize("body", [b"{", b"", b"{'a': 1}", b"[1,]", b"NaN!", b"[" * 100_000])
def test_invalid_json_is_400(body: bytes) -> None:
    rejects(read_json_body, body, JSON, field="body", match="is not valid JSON")


def test_invalid_utf8_is_400() -> None:
    rejects(read_json_body, b'{"prompt": "\xff"}', JSON, field="body", match="not valid UTF-8")


@pytest.mark.parametrize(
    ("body", "kind"),
    [
        (b"[]", "array"),
        (b'"hi"', "string"),
        (b"3", "number"),
        (b"null", "null"),
        (b"true", "boolean"),
    ],
)
def test_non_object_json_is_400(body: bytes, kind: str) -> None:
    rejects(read_json_body, body, JSON, field="body", match=f"expected a JSON object, got {kind}")


def test_error_json_body() -> None:
    error = RequestError("prompt", "must not be empty")
    assert error.status == 400
    assert error.as_json() == {
        "error": {
            "type": "invalid_request",
            "field": "prompt",
            "message": "prompt: must not be empty",
        }
    }
    assert str(error) == "prompt: must not be empty"
    assert isinstance(error, ValueError)


# --- parse_completion ------------------------------------------------------------


def test_completion_with_every_option() -> None:
    data = {"prompt": "  Hi\n", "model": "demo/echo", "temperature": 1, "max_tokens": 5}
    request = parse_completion(data)
    assert request == CompletionRequest(
        prompt="  Hi\n", model="demo/echo", temperature=1.0, max_tokens=5
    )
    assert type(request.temperature) is float


def test_completion_defaults_and_default_model() -> None:
    assert parse_completion({"prompt": "x"}) == CompletionRequest("x", None, None, None)
    limits = Limits(default_model="demo/story")
    assert parse_completion({"prompt": "x"}, limits).model == "demo/story"
    assert parse_completion({"prompt": "x", "model": "other"}, limits).model == "other"


@pytest.mark.parametrize(
    ("data", "match"),
    [
        ({}, "expected a string, got null"),
        ({"prompt": None}, "expected a string, got null"),
        ({"prompt": 5}, "expected a string, got number"),
        ({"prompt": ["a"]}, "expected a string, got array"),
        ({"prompt": {"text": "a"}}, "expected a string, got object"),
        ({"prompt": ""}, "must not be empty"),
        ({"prompt": " \n\t"}, "must not be empty"),
    ],
)
def test_bad_prompts(data: dict[str, Any], match: str) -> None:
    rejects(parse_completion, data, field="prompt", match=match)


@pytest.mark.parametrize(
    ("options", "field", "match"),
    [
        ({"model": 3}, "model", "expected a non-empty string, got number"),
        ({"model": ""}, "model", "expected a non-empty string, got string"),
        ({"model": "  "}, "model", "expected a non-empty string"),
        ({"model": "m" * 201}, "model", "at most 200 characters"),
        ({"temperature": True}, "temperature", "expected a number, got boolean"),
        ({"temperature": "0.5"}, "temperature", "expected a number, got string"),
        ({"temperature": float("nan")}, "temperature", "between 0 and 2, got nan"),
        ({"temperature": float("inf")}, "temperature", "between 0 and 2, got inf"),
        ({"temperature": -0.1}, "temperature", "between 0 and 2, got -0.1"),
        ({"temperature": 2.01}, "temperature", "between 0 and 2, got 2.01"),
        ({"max_tokens": True}, "max_tokens", "expected an integer, got boolean"),
        ({"max_tokens": 5.0}, "max_tokens", "expected an integer, got number"),
        ({"max_tokens": "5"}, "max_tokens", "expected an integer, got string"),
        ({"max_tokens": 0}, "max_tokens", "between 1 and 32768, got 0"),
        ({"max_tokens": -3}, "max_tokens", "between 1 and 32768, got -3"),
        ({"max_tokens": 32_769}, "max_tokens", "between 1 and 32768, got 32769"),
    ],
)
def test_bad_options(options: dict[str, Any], field: str, match: str) -> None:
    rejects(parse_completion, {"prompt": "x", **options}, field=field, match=match)
    messages = [{"role": "user", "content": "x"}]
    rejects(parse_chat, {"messages": messages, **options}, field=field, match=match)


@pytest.mark.parametrize("temperature", [0, 0.0, 2, 2.0, 0.7])
def test_temperature_bounds_are_inclusive(temperature: float) -> None:
    assert parse_completion({"prompt": "x", "temperature": temperature}).temperature == temperature


def test_max_tokens_limit_is_configurable() -> None:
    limits = Limits(max_tokens=10)
    assert parse_completion({"prompt": "x", "max_tokens": 10}, limits).max_tokens == 10
    rejects(
        parse_completion,
        {"prompt": "x", "max_tokens": 11},
        limits,
        field="max_tokens",
        match="between 1 and 10, got 11",
    )


def test_model_allow_list() -> None:
    limits = Limits(models={"demo/story", "demo/echo"})
    assert parse_completion({"prompt": "x", "model": "demo/echo"}, limits).model == "demo/echo"
    rejects(
        parse_completion,
        {"prompt": "x", "model": "openai/gpt-4o"},
        limits,
        field="model",
        match="must be one of demo/echo, demo/story",
    )


# --- parse_chat ------------------------------------------------------------------


def test_chat_keeps_only_role_and_content() -> None:
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi", "name": "x"},
        {"role": "assistant", "content": ""},
    ]
    request = parse_chat({"messages": messages, "max_tokens": 3})
    assert request == ChatRequest(
        messages=[
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": ""},
        ],
        max_tokens=3,
    )


@pytest.mark.parametrize(
    ("messages", "match"),
    [
        (None, "expected an array, got null"),
        ("hi", "expected an array, got string"),
        ({"role": "user"}, "expected an array, got object"),
        ([], "must not be empty"),
    ],
)
def test_bad_message_lists(messages: Any, match: str) -> None:
    data = {} if messages is None else {"messages": messages}
    rejects(parse_chat, data, field="messages", match=match)


def test_too_many_messages() -> None:
    messages = [{"role": "user", "content": "x"}] * 4
    limits = Limits(max_messages=3)
    assert len(parse_chat({"messages": messages[:3]}, limits).messages) == 3
    rejects(parse_chat, {"messages": messages}, limits, field="messages", match="at most 3")
    rejects(
        parse_chat,
        {"messages": [{"role": "user", "content": "x"}] * 501},
        field="messages",
        match="at most 500 messages",
    )


@pytest.mark.parametrize(
    ("message", "field", "match"),
    [
        ("hi", "messages[1]", "expected an object, got string"),
        (["user", "hi"], "messages[1]", "expected an object, got array"),
        ({"content": "hi"}, "messages[1].role", "must be one of system, user, assistant"),
        ({"role": "tool", "content": "hi"}, "messages[1].role", "must be one of"),
        ({"role": "User", "content": "hi"}, "messages[1].role", "must be one of"),
        ({"role": "user"}, "messages[1].content", "expected a string, got null"),
        ({"role": "user", "content": 7}, "messages[1].content", "expected a string, got number"),
        (
            {"role": "user", "content": [{"type": "text", "text": "hi"}]},
            "messages[1].content",
            "expected a string, got array",
        ),
    ],
)
def test_bad_messages(message: Any, field: str, match: str) -> None:
    messages = [{"role": "user", "content": "ok"}, message]
    error = rejects(parse_chat, {"messages": messages}, field=field, match=match)
    assert error.as_json()["error"]["field"] == field


def test_body_then_parse_end_to_end() -> None:
    body = json.dumps({"messages": [{"role": "user", "content": "Hi"}], "model": "m"}).encode()
    request = parse_chat(read_json_body(body, "application/json; charset=utf-8"))
    assert request.messages == [{"role": "user", "content": "Hi"}] and request.model == "m"
