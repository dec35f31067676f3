"""A refused request body must not break the next request on a kept-alive connection.

A 413 answered before the body is read leaves that body on the socket. gunicorn
reads 64 KiB of it at most and then closes the connection it announced as kept
alive, so a keep-alive client's next request on it fails ("Server disconnected
without sending a response"). Each server the kit documents is driven here by one
keep-alive ``httpx.Client``: a stream, a 3 MB body refused with 413, another
stream, the same with a chunked body, a few times over.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fastapi_apps import create_app as create_fastapi_app
from flask_apps import create_app as create_flask_app
from httpx_sse import connect_sse
from servers import (
    free_port,
    gunicorn_argv,
    process_server,
    text_of,
    uvicorn_argv,
    uvicorn_thread,
    werkzeug_thread,
)

BIG = 3_000_000  # over every test app's limit (4 KiB, FastAPI's 1 MiB), under the drain cap
ROUNDS = 3
TOKEN = "abcdefghijklmnopqrstuvwxyz012345"  # a valid unmasked CSRF secret
CSRF = {"Cookie": f"csrftoken={TOKEN}", "X-CSRFToken": TOKEN}
DJANGO = {"DJANGO_SETTINGS_MODULE": "django_testproject.settings"}

SERVERS = ["flask-werkzeug", "flask-gunicorn", "django-gunicorn", "django-uvicorn", "fastapi"]


@pytest.fixture(scope="module", params=SERVERS)
def server(request: pytest.FixtureRequest) -> Iterator[tuple[str, dict[str, str]]]:
    kind: str = request.param
    port = free_port()
    if kind == "flask-werkzeug":
        with werkzeug_thread(create_flask_app()) as url:
            yield url, {}
    elif kind == "flask-gunicorn":
        with process_server(gunicorn_argv("flask_apps:create_app()", port), port) as url:
            yield url, {}
    elif kind == "django-gunicorn":
        argv = gunicorn_argv("django_testproject.wsgi:application", port)
        with process_server(argv, port, DJANGO) as url:
            yield url, CSRF
    elif kind == "django-uvicorn":
        argv = uvicorn_argv("django_testproject.asgi:application", port)
        with process_server(argv, port, DJANGO) as url:
            yield url, CSRF
    else:
        with uvicorn_thread(create_fastapi_app()) as url:
            yield url, {}


def big_json() -> bytes:
    return b'{"prompt": "' + b"x" * BIG + b'"}'


def big_chunks() -> Iterator[bytes]:
    # A generator body: httpx sends it chunked, with no Content-Length.
    yield b'{"prompt": "'
    for _ in range(BIG // 65536):
        yield b"x" * 65536
    yield b'"}'


def assert_streams(client: httpx.Client, where: str) -> None:
    body = {"prompt": "still here", "model": "demo/echo"}
    with connect_sse(client, "POST", "/stream", json=body) as source:
        assert source.response.status_code == 200, where
        events = list(source.iter_sse())
    assert text_of(events) == "still here", where
    assert events[-1].event == "done", where


def assert_refused(client: httpx.Client, content: Any, where: str) -> None:
    response = client.post("/stream", content=content, headers={"Content-Type": "application/json"})
    assert response.status_code == 413, where
    assert response.json()["error"]["field"] == "body", where


def test_a_refused_body_does_not_break_the_next_request_on_the_connection(
    server: tuple[str, dict[str, str]],
) -> None:
    url, headers = server
    with httpx.Client(base_url=url, headers=headers, timeout=30) as client:
        for round_ in range(ROUNDS):
            assert_streams(client, f"round {round_}: first stream")
            assert_refused(client, big_json(), f"round {round_}: Content-Length body")
            assert_streams(client, f"round {round_}: after a refused Content-Length body")
            assert_refused(client, big_chunks(), f"round {round_}: chunked body")
            assert_streams(client, f"round {round_}: after a refused chunked body")
