"""Every example app serves the three protocols on the same upstream: ``/stream`` (indox),
``/v1/chat/completions`` and ``/v1/models`` (OpenAI), ``/api/chat`` (AI SDK)."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator

import httpx
import openai
import pytest
from servers import collect, free_port, process_server, text_of

APPS = {
    "fastapi": ["fastapi"],
    "flask": ["flask"],
    "django-asgi": ["django"],
    "django-wsgi": ["django", "--wsgi"],
}


@pytest.fixture(scope="module", params=list(APPS))
def app(request: pytest.FixtureRequest) -> Iterator[str]:
    port = free_port()
    argv = [sys.executable, "-m", "example_apps", *APPS[request.param], "--port", str(port)]
    with process_server(argv, port) as url:
        yield url


def test_the_openai_sdk_lists_the_models_and_streams_a_tool_call(app: str) -> None:
    client = openai.OpenAI(base_url=f"{app}/v1", api_key="unused", max_retries=0)
    assert {m.id for m in client.models.list()} >= {"demo/story", "demo/think", "demo/tools"}
    with client.chat.completions.stream(
        model="demo/tools", messages=[{"role": "user", "content": "Weather in Oslo?"}]
    ) as stream:
        completion = stream.get_final_completion()
    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls"
    call = choice.message.tool_calls[0]  # type: ignore[index]
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"city": "Oslo", "unit": "celsius"}


def test_the_ai_sdk_route_streams_the_ui_message_stream(app: str) -> None:
    body = {
        "id": "chat-1",
        "messages": [{"id": "m1", "role": "user", "parts": [{"type": "text", "text": "hi"}]}],
        "trigger": "submit-message",
        "model": "demo/think",
    }
    with httpx.Client(base_url=app, timeout=30) as client:
        headers = {}
        if "csrftoken" not in client.cookies:
            client.get("/")  # Django keeps CSRF on for the AI SDK route: the page's cookie
            if "csrftoken" in client.cookies:
                headers["X-CSRFToken"] = client.cookies["csrftoken"]
        response = client.post("/api/chat", json=body, headers=headers)
    assert response.status_code == 200
    assert response.headers["x-vercel-ai-ui-message-stream"] == "v1"
    chunks = [
        json.loads(line[6:]) for line in response.text.splitlines() if line.startswith("data: {")
    ]
    kinds = [chunk["type"] for chunk in chunks]
    assert kinds[:2] == ["start", "start-step"] and kinds[-1] == "finish"
    assert kinds.index("reasoning-start") < kinds.index("text-start")
    assert response.text.endswith("data: [DONE]\n\n")


def test_the_indox_route_still_streams_text(app: str) -> None:
    with httpx.Client(base_url=app) as client:
        client.get("/")
        token = client.cookies.get("csrftoken", "")
    headers = {"X-CSRFToken": token, "Cookie": f"csrftoken={token}"} if token else {}
    body = {"prompt": "echo me, 🙂\nexactly", "model": "demo/echo"}
    _, events = collect(app, "/stream", body, headers=headers)
    assert text_of(events) == "echo me, 🙂\nexactly"
