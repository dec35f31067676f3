"""indox_integrations.flask with Flask's test client: responses, closing, the blueprint."""

from __future__ import annotations

import io
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask, current_app, g, request
from werkzeug.test import EnvironBuilder

from indox_integrations import AsyncDemoClient, DemoClient, Limits, StreamReport
from indox_integrations.assets import static_file
from indox_integrations.clients import LLMRequest
from indox_integrations.flask import create_blueprint, sse_response

DONE = b"event: done\ndata: [DONE]\n\n"


class Upstream:
    """An iterator with ``close()``, like an HTTP response stream; records what happens."""

    def __init__(self, chunks: list[Any]) -> None:
        self._chunks = iter(chunks)
        self.pulled = 0
        self.closed = threading.Event()

    def __iter__(self) -> Upstream:
        return self

    def __next__(self) -> Any:
        if self.closed.is_set():
            raise StopIteration
        item = next(self._chunks)
        self.pulled += 1
        return item

    def close(self) -> None:
        self.closed.set()


def endless() -> Iterator[str]:
    while True:
        yield "tick "


def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
    return lambda data: None


def make_app(view: Any) -> Flask:
    app = Flask(__name__)

    @app.before_request
    def who() -> None:
        g.user = "ada"

    app.add_url_rule("/s", "s", view, methods=["GET", "POST"])
    return app


def test_response_headers_and_exact_bytes() -> None:
    app = make_app(lambda: sse_response(["a", "b\nc"]))
    response = app.test_client().get("/s")
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "text/event-stream; charset=utf-8"
    assert response.headers["Cache-Control"] == "no-cache"
    assert response.headers["X-Accel-Buffering"] == "no"
    assert "Content-Length" not in response.headers
    assert "Connection" not in response.headers
    assert response.data == b": stream open\n\ndata: a\n\ndata: b\ndata: c\n\n" + DONE


def test_response_is_passed_through_unbuffered() -> None:
    app = make_app(lambda: sse_response(["a"]))
    with app.test_request_context():
        response = sse_response(["a"])
        assert response.direct_passthrough and response.is_streamed
        response.close()


def test_options_reach_the_pipeline() -> None:
    usage = {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3}
    app = make_app(lambda: sse_response(iter(["a", {"usage": usage}]), usage="attach"))
    data = app.test_client().get("/s").data
    assert b'event: usage\ndata: {"prompt_tokens": 1, "completion_tokens": 2' in data
    with app.test_request_context(), pytest.raises(ValueError, match="heartbeat"):
        sse_response(["a"], heartbeat=0)


def test_sse_response_outside_a_request_names_the_fix() -> None:
    with pytest.raises(RuntimeError, match="inside a Flask view"):
        sse_response(["a"])


def test_callbacks_run_in_the_request_context() -> None:
    seen: list[tuple[str, str, str, str]] = []

    def on_complete(report: StreamReport) -> None:
        seen.append((report.outcome, request.path, g.user, current_app.name))

    app = make_app(lambda: sse_response(["a", "b"], on_complete=on_complete))
    assert app.test_client().get("/s").data.endswith(DONE)
    assert seen == [("completed", "/s", "ada", app.name)]


def test_closing_mid_stream_closes_the_upstream_inside_the_request_context() -> None:
    upstream = Upstream(["x"] * 10_000)
    seen: list[tuple[str, str]] = []
    app = make_app(
        lambda: sse_response(upstream, on_complete=lambda r: seen.append((r.outcome, g.user)))
    )
    response = app.test_client().get("/s", buffered=False)
    body = iter(response.response)
    assert next(body) == b": stream open\n\n"
    chunk = next(body)
    assert isinstance(chunk, bytes) and chunk.startswith(b"data: x\n\n")
    response.close()
    assert upstream.closed.wait(5)
    assert seen == [("client_disconnected", "ada")]
    pulled = upstream.pulled
    time.sleep(0.1)
    assert upstream.pulled == pulled < 10_000


def test_closing_before_the_first_read_still_closes_the_upstream() -> None:
    upstream = Upstream(["never"])
    reports: list[str] = []
    app = make_app(lambda: sse_response(upstream, on_complete=lambda r: reports.append(r.outcome)))
    # What a WSGI server does when the client is gone before the first write.
    body = app(EnvironBuilder("/s").get_environ(), start_response)
    body.close()  # type: ignore[attr-defined]
    assert upstream.closed.is_set() and upstream.pulled == 0
    assert reports == ["client_disconnected"]


def test_a_generator_upstream_is_closed_when_the_response_is() -> None:
    closed = threading.Event()

    def upstream() -> Iterator[str]:
        try:
            yield from endless()
        finally:
            closed.set()

    app = make_app(lambda: sse_response(upstream()))
    response = app.test_client().get("/s", buffered=False)
    body = iter(response.response)
    next(body), next(body)
    response.close()
    assert closed.wait(5)


# The blueprint ---------------------------------------------------------------


class Calls:
    """A callable client that records its calls and streams the prompt back."""

    def __init__(self) -> None:
        self.requests: list[LLMRequest] = []

    def __call__(self, request: LLMRequest) -> Iterator[str]:
        self.requests.append(request)
        return iter(["ok"])


def blueprint_app(client: Any, **options: Any) -> Flask:
    app = Flask(__name__)
    app.register_blueprint(create_blueprint(client, **options), url_prefix="/llm")

    @app.post("/other")
    def other() -> str:
        return "other"

    return app


BAD = [
    ({"data": b"{oops", "content_type": "application/json"}, 400, "body"),
    ({"json": [1]}, 400, "body"),
    ({"json": {}}, 400, "prompt"),
    ({"json": {"prompt": ["x"]}}, 400, "prompt"),
    ({"json": {"prompt": "  "}}, 400, "prompt"),
    ({"json": {"prompt": "x", "temperature": True}}, 400, "temperature"),
    ({"json": {"prompt": "x", "max_tokens": 1.5}}, 400, "max_tokens"),
    ({"json": {"prompt": "x", "model": "gpt-9"}}, 400, "model"),
    ({"data": b'{"prompt": "x"}', "content_type": "text/plain"}, 415, "body"),
    ({"data": b'{"prompt": "x"}'}, 415, "body"),
    ({"json": {"prompt": "x" * 300}}, 413, "body"),
]


@pytest.mark.parametrize(("options", "status", "field"), BAD)
def test_bad_requests_name_the_field_and_skip_the_client(
    options: dict[str, Any], status: int, field: str
) -> None:
    calls = Calls()
    limits = Limits(max_body_bytes=256, models=("demo/echo",))
    response = blueprint_app(calls, limits=limits).test_client().post("/llm/stream", **options)
    assert response.status_code == status
    assert response.mimetype == "application/json"
    assert response.json is not None
    assert response.json["error"]["field"] == field
    assert calls.requests == []


def test_bad_chat_messages_name_the_message() -> None:
    calls = Calls()
    client = blueprint_app(calls).test_client()
    response = client.post("/llm/chat", json={"messages": [{"role": "user", "content": 1}]})
    assert response.status_code == 400
    assert response.json is not None
    assert response.json["error"]["field"] == "messages[0].content"
    assert calls.requests == []


def test_content_length_over_the_limit_is_refused_before_reading() -> None:
    # Only the drain after the refusal reads (to keep the connection usable), and a
    # client gone mid-body must not turn the 413 into anything else.
    class Unreadable(io.BytesIO):
        def read(self, size: int | None = -1) -> bytes:
            raise ConnectionResetError("the client left")

        def readinto(self, buffer: Any) -> int:
            raise ConnectionResetError("the client left")

    calls = Calls()
    client = blueprint_app(calls, limits=Limits(max_body_bytes=100)).test_client()
    response = client.post(
        "/llm/stream",
        input_stream=Unreadable(),
        content_type="application/json",
        environ_overrides={"CONTENT_LENGTH": "1000000"},
    )
    assert response.status_code == 413
    assert response.json is not None and response.json["error"]["field"] == "body"
    assert calls.requests == []


def test_a_chunked_body_over_the_limit_is_refused_by_its_length() -> None:
    calls = Calls()
    client = blueprint_app(calls, limits=Limits(max_body_bytes=100)).test_client()
    body = b'{"prompt": "' + b"x" * 10_000 + b'"}'
    response = client.post(
        "/llm/stream",
        input_stream=io.BytesIO(body),
        content_type="application/json",
        environ_overrides={"wsgi.input_terminated": True},
    )
    assert response.status_code == 413
    assert calls.requests == []


def test_the_apps_own_content_length_limit_answers_json() -> None:
    calls = Calls()
    app = blueprint_app(calls)
    app.config["MAX_CONTENT_LENGTH"] = 50
    response = app.test_client().post("/llm/stream", json={"prompt": "x" * 100})
    assert response.status_code == 413
    assert response.json is not None and response.json["error"]["field"] == "body"


def test_a_body_the_app_already_read_is_still_parsed() -> None:
    calls = Calls()
    app = blueprint_app(calls)
    seen: list[bytes] = []

    @app.before_request
    def peek() -> None:
        seen.append(request.get_data())

    response = app.test_client().post("/llm/stream", json={"prompt": "hi"})
    assert response.status_code == 200 and response.data.endswith(DONE)
    assert seen == [b'{"prompt": "hi"}'] and len(calls.requests) == 1


def test_wrong_method_is_json_405_for_our_routes_only() -> None:
    calls = Calls()
    client = blueprint_app(calls).test_client()
    for method in ("GET", "PUT", "DELETE"):
        response = client.open("/llm/chat", method=method)
        assert response.status_code == 405
        assert response.json is not None
        assert response.json["error"]["field"] == "method"
        assert method in response.json["error"]["message"]
        assert "POST" in response.headers["Allow"]
    assert client.options("/llm/stream").status_code == 200
    other = client.get("/other")
    assert other.status_code == 405 and other.mimetype == "text/html"
    assert client.get("/nowhere").status_code == 404
    assert calls.requests == []


def test_valid_requests_reach_the_client() -> None:
    calls = Calls()
    client = blueprint_app(calls).test_client()
    response = client.post("/llm/stream", json={"prompt": "hi", "temperature": 0.5})
    assert response.status_code == 200 and b"data: ok\n\n" in response.data
    response = client.post("/llm/chat", json={"messages": [{"role": "user", "content": "hi"}]})
    assert response.status_code == 200 and response.data.endswith(DONE)
    first, second = calls.requests
    assert first.prompt == "hi" and first.temperature == 0.5  # type: ignore[union-attr]
    assert second.messages == [{"role": "user", "content": "hi"}]  # type: ignore[union-attr]


def test_usage_attached_by_default() -> None:
    client = blueprint_app(DemoClient(delay=0)).test_client()
    data = client.post("/llm/stream", json={"prompt": "a b", "model": "demo/echo"}).data
    assert b"\nevent: usage\ndata: {" in data and data.endswith(DONE)


def test_a_client_failing_before_streaming_answers_json() -> None:
    client = blueprint_app(DemoClient(delay=0)).test_client()
    response = client.post("/llm/stream", json={"prompt": "x", "model": "demo/none"})
    assert response.status_code == 400
    assert response.json is not None
    assert response.json["error"]["type"] == "upstream_error"
    assert "unknown model" in response.json["error"]["message"]

    def refused(request: LLMRequest) -> Any:
        raise ConnectionError("provider unreachable")

    response = blueprint_app(refused).test_client().post("/llm/stream", json={"prompt": "x"})
    assert response.status_code == 502
    assert response.json is not None
    assert "ConnectionError" in response.json["error"]["message"]


def test_an_async_client_is_a_clear_500() -> None:
    client = blueprint_app(AsyncDemoClient(delay=0)).test_client()
    response = client.post("/llm/stream", json={"prompt": "x", "model": "demo/echo"})
    assert response.status_code == 500
    assert response.json is not None
    assert "async client needs an ASGI framework" in response.json["error"]["message"]

    async def agen(request: LLMRequest) -> Any:
        yield "x"

    response = blueprint_app(agen).test_client().post("/llm/stream", json={"prompt": "x"})
    assert response.status_code == 500


def test_bad_options_fail_at_creation() -> None:
    with pytest.raises(ValueError, match="usage"):
        create_blueprint(Calls(), usage="both")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="idle_timeout"):
        create_blueprint(Calls(), idle_timeout=-1)


def test_js_helper_is_served_with_a_javascript_type() -> None:
    client = blueprint_app(Calls()).test_client()
    response = client.get("/llm/static/indox-stream.js")
    assert response.status_code == 200
    assert response.mimetype == "text/javascript"
    assert response.data == static_file("indox-stream.js").read_bytes()
    response.close()
    response = client.get("/llm/static/indox-stream.global.js")
    assert response.status_code == 200 and response.mimetype == "text/javascript"
    response.close()


def test_registered_twice_under_different_prefixes() -> None:
    one, two = Calls(), Calls()
    app = Flask(__name__)
    app.register_blueprint(create_blueprint(one, "first"), url_prefix="/one")
    app.register_blueprint(create_blueprint(two, "second"), url_prefix="/two")
    shared = create_blueprint(one, "shared")
    app.register_blueprint(shared, url_prefix="/three")
    app.register_blueprint(shared, url_prefix="/four", name="shared_again")
    client = app.test_client()
    for prefix in ("/one", "/two", "/three", "/four"):
        assert client.post(f"{prefix}/stream", json={"prompt": "hi"}).data.endswith(DONE)
        assert client.get(f"{prefix}/stream").status_code == 405
        script = client.get(f"{prefix}/static/indox-stream.js")
        assert script.status_code == 200
        script.close()
    assert (len(one.requests), len(two.requests)) == (3, 1)
