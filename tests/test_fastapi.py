"""Unit tests for indox_integrations.fastapi (in-process TestClient; streaming
behaviour is proven through uvicorn in test_fastapi_server.py)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from indox_integrations import AsyncDemoClient, DemoClient, Limits, static_file
from indox_integrations.fastapi import create_router


class CountingClient:
    """A callable client that counts its calls and echoes the prompt."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, request: Any) -> Any:
        self.calls += 1
        return iter([getattr(request, "prompt", "chat")])


def app_with(client: Any, prefix: str = "", **options: Any) -> FastAPI:
    app = FastAPI()
    app.include_router(create_router(client, **options), prefix=prefix)
    return app


def events(text: str) -> list[tuple[str, str]]:
    """(event, data) pairs of a small, well-formed stream."""
    out = []
    for block in text.split("\n\n"):
        lines = [line for line in block.split("\n") if line and not line.startswith(":")]
        if not lines:
            continue
        name = next((line[7:] for line in lines if line.startswith("event: ")), "message")
        data = "\n".join(line[6:] for line in lines if line.startswith("data: "))
        out.append((name, data))
    return out


def test_openapi_shows_the_bodies_with_their_limits() -> None:
    limits = Limits(max_tokens=500, max_messages=7, models={"a/b", "c/d"}, default_model="a/b")
    spec = TestClient(app_with(DemoClient(), "/llm", limits=limits)).get("/openapi.json").json()
    schemas = spec["components"]["schemas"]
    completion, chat = schemas["CompletionBody"], schemas["ChatBody"]
    assert completion["required"] == ["prompt"]
    model = completion["properties"]["model"]
    assert model["default"] == "a/b"
    assert model["anyOf"][0]["enum"] == ["a/b", "c/d"]
    assert completion["properties"]["max_tokens"]["anyOf"][0]["maximum"] == 500
    temperature = completion["properties"]["temperature"]["anyOf"][0]
    assert (temperature["minimum"], temperature["maximum"]) == (0, 2)
    assert chat["properties"]["messages"]["maxItems"] == 7
    assert schemas["ChatMessage"]["properties"]["role"]["enum"] == ["system", "user", "assistant"]
    post = spec["paths"]["/llm/stream"]["post"]
    assert "text/event-stream" in post["responses"]["200"]["content"]
    assert {"413", "415", "422"} <= set(post["responses"])
    assert "/llm/chat" in spec["paths"]
    assert not any("static" in path for path in spec["paths"])


def test_streams_the_demo_client_with_usage_attached() -> None:
    client = TestClient(app_with(DemoClient(delay=0)))
    response = client.post("/stream", json={"prompt": "two words", "model": "demo/echo"})
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/event-stream; charset=utf-8"
    got = events(response.text)
    assert "".join(data for name, data in got if name == "message") == "two words"
    usage = json.loads(next(data for name, data in got if name == "usage"))
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    assert got[-1] == ("done", "[DONE]")


def test_chat_with_an_async_client_and_usage_skipped() -> None:
    client = TestClient(app_with(AsyncDemoClient(delay=0), usage="skip"))
    body = {
        "messages": [
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": "echo me", "name": "ignored extra field"},
        ],
        "model": "demo/echo",
    }
    got = events(client.post("/chat", json=body).text)
    assert "".join(data for name, data in got if name == "message") == "echo me"
    assert [name for name, _ in got[-1:]] == ["done"]
    assert all(name != "usage" for name, _ in got)


BAD_BODIES = [
    ("/stream", {"prompt": 5}, 422, ["body", "prompt"]),
    ("/stream", {}, 422, ["body", "prompt"]),
    ("/stream", {"prompt": "hi", "temperature": 2.5}, 422, ["body", "temperature"]),
    ("/stream", {"prompt": "hi", "temperature": "0.5"}, 422, ["body", "temperature"]),
    ("/stream", {"prompt": "hi", "temperature": True}, 422, ["body", "temperature"]),
    ("/stream", {"prompt": "hi", "max_tokens": 0}, 422, ["body", "max_tokens"]),
    ("/stream", {"prompt": "hi", "max_tokens": 10.0}, 422, ["body", "max_tokens"]),
    ("/stream", {"prompt": "hi", "max_tokens": 1001}, 422, ["body", "max_tokens"]),
    ("/stream", {"prompt": "hi", "model": ""}, 422, ["body", "model"]),
    ("/stream", ["a list"], 422, ["body"]),
    ("/chat", {"messages": []}, 422, ["body", "messages"]),
    ("/chat", {"messages": "hi"}, 422, ["body", "messages"]),
    ("/chat", {"messages": [{"role": "robot", "content": "x"}]}, 422, ["body", "messages", 0]),
    ("/chat", {"messages": [{"role": "user", "content": 1}]}, 422, ["body", "messages", 0]),
    ("/chat", {"messages": [{"role": "user", "content": "x"}] * 11}, 422, ["body", "messages"]),
]


@pytest.mark.parametrize(("path", "body", "status", "loc"), BAD_BODIES)
def test_bad_bodies_get_422_naming_the_field(
    path: str, body: Any, status: int, loc: list[Any]
) -> None:
    counting = CountingClient()
    limits = Limits(max_tokens=1000, max_messages=10)
    client = TestClient(app_with(counting, limits=limits))
    response = client.post(path, json=body)
    assert response.status_code == status
    detail = response.json()["detail"]
    assert detail[0]["loc"][: len(loc)] == loc
    assert counting.calls == 0


def test_core_rules_apply_after_pydantic() -> None:
    counting = CountingClient()
    client = TestClient(app_with(counting))
    response = client.post("/stream", json={"prompt": "   "})
    assert response.status_code == 400
    assert response.json() == {
        "error": {
            "type": "invalid_request",
            "field": "prompt",
            "message": "prompt: must not be empty",
        }
    }
    assert counting.calls == 0


def test_size_content_type_and_method_are_checked_before_the_client() -> None:
    counting = CountingClient()
    client = TestClient(app_with(counting, limits=Limits(max_body_bytes=100)))
    big = client.post("/stream", json={"prompt": "x" * 200})
    assert big.status_code == 413
    assert big.json()["error"]["message"] == "body: must be at most 100 bytes"
    chunked = client.post(
        "/stream", content=iter([b'{"prompt": "', b"x" * 200, b'"}']),
        headers={"Content-Type": "application/json"},
    )  # fmt: skip
    assert "content-length" not in chunked.request.headers
    assert chunked.status_code == 413
    form = client.post("/stream", data={"prompt": "hi"})
    assert form.status_code == 415
    assert "expected Content-Type application/json" in form.json()["error"]["message"]
    missing = client.post("/stream", content=b'{"prompt": "hi"}')
    assert missing.status_code == 415
    broken = client.post(
        "/stream", content=b'{"prompt": ', headers={"Content-Type": "application/json"}
    )
    assert broken.status_code == 422
    assert broken.json()["detail"][0]["type"] == "json_invalid"
    wrong_method = client.get("/stream")
    assert wrong_method.status_code == 405
    assert wrong_method.json() == {"detail": "Method Not Allowed"}
    assert counting.calls == 0
    assert client.post("/stream", json={"prompt": "ok"}).status_code == 200
    assert counting.calls == 1


def test_json_subtypes_are_json() -> None:
    client = TestClient(app_with(CountingClient()))
    response = client.post(
        "/stream", content=b'{"prompt": "hi"}', headers={"Content-Type": "application/vnd.x+json"}
    )
    assert response.status_code == 200


class Refusing:
    def __init__(self, exc: Exception) -> None:
        self.exc = exc

    def completion(self, prompt: str, **options: Any) -> Any:
        raise self.exc


class RateLimitError(Exception):
    pass


class AuthenticationError(Exception):
    pass


@pytest.mark.parametrize(
    ("exc", "status"),
    [
        (ValueError("unknown model"), 400),
        (RateLimitError("slow down"), 429),
        (AuthenticationError("bad key"), 502),
        (ConnectionError("unreachable"), 502),
    ],
)
def test_client_failing_before_the_stream_gets_a_json_status(exc: Exception, status: int) -> None:
    response = TestClient(app_with(Refusing(exc))).post("/stream", json={"prompt": "hi"})
    assert response.status_code == status
    assert response.headers["content-type"] == "application/json"
    error = response.json()["error"]
    assert error["type"] == "upstream_error"
    assert error["message"] == f"{type(exc).__name__}: {exc}"


def test_an_async_client_failing_before_the_stream() -> None:
    response = TestClient(app_with(AsyncDemoClient())).post(
        "/stream", json={"prompt": "hi", "model": "demo/none"}
    )
    assert response.status_code == 400
    assert "unknown model 'demo/none'" in response.json()["error"]["message"]


def test_sync_clients_are_called_outside_the_event_loop() -> None:
    threads: list[str] = []

    def client(request: Any) -> Any:
        import threading

        threads.append(threading.current_thread().name)
        return iter(["x"])

    TestClient(app_with(client)).post("/stream", json={"prompt": "hi"})
    assert threads == ["indox-client-call"]


@pytest.mark.parametrize(
    ("name", "media_type"),
    [
        ("indox-stream.js", "text/javascript; charset=utf-8"),
        ("indox-stream.global.js", "text/javascript; charset=utf-8"),
        ("indox-stream.d.ts", "text/plain; charset=utf-8"),
    ],
)
def test_serves_the_browser_helper(name: str, media_type: str) -> None:
    client = TestClient(app_with(DemoClient(), "/llm"))
    response = client.get(f"/llm/static/{name}")
    assert response.status_code == 200
    assert response.headers["content-type"] == media_type
    assert response.content == static_file(name).read_bytes()


def test_static_can_be_left_out() -> None:
    client = TestClient(app_with(DemoClient(), serve_static=False))
    assert client.get("/static/indox-stream.js").status_code == 404


def test_route_names() -> None:
    app = app_with(DemoClient(), "/llm")
    assert app.url_path_for("indox_stream") == "/llm/stream"
    assert app.url_path_for("indox_chat") == "/llm/chat"
    assert app.url_path_for("indox_static_indox_stream_js") == "/llm/static/indox-stream.js"


def test_bad_options_fail_when_the_router_is_built() -> None:
    with pytest.raises(ValueError, match="usage must be"):
        create_router(DemoClient(), usage="always")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="idle_timeout"):
        create_router(DemoClient(), idle_timeout=-1)


def test_sse_response_from_a_plain_def_endpoint() -> None:
    """FastAPI runs a ``def`` endpoint (and so the client's blocking call) in its
    thread pool; the response it returns streams from the event loop."""
    from indox_integrations.starlette import sse_response

    app = FastAPI()
    demo = DemoClient(delay=0)

    @app.post("/story")
    def story(prompt: str) -> Any:
        chunks = demo.completion(prompt, model="demo/echo", stream=True, return_generator=True)
        return sse_response(chunks, usage="attach")

    response = TestClient(app).post("/story", params={"prompt": "once upon"})
    got = events(response.text)
    assert "".join(data for name, data in got if name == "message") == "once upon"
    assert [name for name, _ in got[-2:]] == ["usage", "done"]
