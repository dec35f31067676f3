"""Limits, auth and per-user context through real servers, one process per server.

FastAPI on uvicorn, Flask on gunicorn (gthread), Django on uvicorn (ASGI) and
gunicorn (WSGI), each serving ``production_apps`` or ``django_production``:
N+1 concurrent streams (503), a per-key limit (429), slots given back when a
stream ends, when its reader leaves and when the client call fails; nothing
logged at ERROR; unauthenticated requests answered in JSON without calling the
client; 20 users streaming at once, each usage record charged to its user.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from httpx_sse import EventSource, ServerSentEvent
from servers import ROOT, free_port, gunicorn_argv, process_server, uvicorn_argv

KINDS = ["fastapi", "flask", "django-asgi", "django-wsgi"]
MAX_STREAMS = 2  # production_apps.MAX_STREAMS and django_production's MAX_STREAMS
USERS = 20
TOKEN = "abcdefghijklmnopqrstuvwxyz012345"  # a valid unmasked CSRF secret
ANONYMOUS_CSRF = {"Cookie": f"csrftoken={TOKEN}", "X-CSRFToken": TOKEN}
DJANGO_SETTINGS = "django_production.settings"


@dataclass(frozen=True)
class Server:
    url: str
    kind: str

    @property
    def django(self) -> bool:
        return self.kind.startswith("django")


def _env(db: Path) -> dict[str, str]:
    return {"DJANGO_SETTINGS_MODULE": DJANGO_SETTINGS, "INDOX_TEST_DB": str(db)}


@pytest.fixture(scope="module")
def django_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    db = tmp_path_factory.mktemp("production") / "db.sqlite3"
    pythonpath = os.pathsep.join((str(ROOT), str(ROOT / "tests")))
    subprocess.run(
        [sys.executable, "-m", "django", "migrate", "-v", "0"],
        cwd=ROOT,
        env={**os.environ, **_env(db), "PYTHONPATH": pythonpath},
        check=True,
        timeout=120,
    )
    return db


@pytest.fixture(scope="module", params=KINDS)
def running(request: pytest.FixtureRequest) -> Iterator[Server]:
    kind = request.param
    port = free_port()
    env: dict[str, str] = {}
    if kind == "fastapi":
        argv = uvicorn_argv("production_apps:fastapi_app", port, "--factory")
    elif kind == "flask":
        argv = gunicorn_argv("production_apps:flask_app()", port)
    else:
        env = _env(request.getfixturevalue("django_db"))
        if kind == "django-asgi":
            argv = uvicorn_argv("django_production.asgi:application", port)
        else:
            argv = gunicorn_argv("django_production.wsgi:application", port)
    with process_server(argv, port, env) as url:
        yield Server(url, kind)


@pytest.fixture
def server(running: Server) -> Iterator[Server]:
    httpx.post(f"{running.url}/_reset").raise_for_status()
    wait_state(running, lambda s: s["open_streams"] == 0 and not s["active"])
    httpx.post(f"{running.url}/_reset").raise_for_status()
    yield running
    httpx.post(f"{running.url}/_gate/*").raise_for_status()


def state(server: Server) -> dict[str, Any]:
    return httpx.get(f"{server.url}/_state", timeout=10).json()  # type: ignore[no-any-return]


def wait_state(
    server: Server, done: Callable[[dict[str, Any]], bool], timeout: float = 15.0
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        snapshot = state(server)
        if done(snapshot):
            return snapshot
        if time.monotonic() > deadline:
            raise AssertionError(f"the server did not get there in {timeout} s: {snapshot}")
        time.sleep(0.05)


def prompt(stream_id: str, **extra: Any) -> dict[str, Any]:
    return {"prompt": json.dumps({"id": stream_id, **extra})}


def chat_body(stream_id: str) -> dict[str, Any]:
    content = json.dumps({"id": stream_id})
    return {
        "model": "test/held",
        "messages": [{"role": "user", "content": content}],
        "stream": True,
    }


def csrf(server: Server, http: httpx.Client | None = None) -> dict[str, str]:
    """The CSRF headers a Django POST needs: the session's token, or an anonymous one."""
    if not server.django:
        return {}
    token = http.cookies.get("csrftoken") if http is not None else None
    return {"X-CSRFToken": token} if token else dict(ANONYMOUS_CSRF)


class Held:
    """A stream read up to its first text event, its upstream waiting at the gate."""

    def __init__(
        self,
        stack: contextlib.ExitStack,
        http: httpx.Client,
        path: str,
        body: dict[str, Any],
        headers: dict[str, str],
    ) -> None:
        self.response = stack.enter_context(http.stream("POST", path, json=body, headers=headers))
        assert self.response.status_code == 200, self.response.read()
        self.events = EventSource(self.response).iter_sse()
        self.first = next(e for e in self.events if e.event == "message" and e.data)

    def rest(self) -> list[ServerSentEvent]:
        return list(self.events)

    def leave(self) -> None:
        self.response.close()


def assert_refused(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    assert int(response.headers["retry-after"]) > 0
    body: dict[str, Any] = response.json()
    assert body["error"]["message"]
    return body


def assert_no_error_logged(snapshot: dict[str, Any]) -> None:
    errors = [log for log in snapshot["logs"] if log["level"] in ("ERROR", "CRITICAL")]
    assert errors == []


def test_past_max_streams_a_503_until_a_stream_ends(server: Server) -> None:
    with contextlib.ExitStack() as stack, httpx.Client(base_url=server.url, timeout=30) as http:
        held = [
            Held(stack, http, "/limited/stream", prompt(f"s{i}"), csrf(server))
            for i in range(MAX_STREAMS)
        ]
        assert [h.first.data for h in held] == ["start "] * MAX_STREAMS

        refused = http.post("/limited/stream", json=prompt("extra"), headers=csrf(server))
        body = assert_refused(refused, 503)
        assert body["error"]["type"] == "overloaded"
        # The OpenAI routes count the same streams, and answer in OpenAI's shape.
        openai = assert_refused(http.post("/v1/chat/completions", json=chat_body("oa")), 503)
        assert set(openai["error"]) == {"message", "type", "param", "code"}
        snapshot = state(server)
        assert snapshot["calls"] == [f"s{i}" for i in range(MAX_STREAMS)]
        assert snapshot["open_streams"] == MAX_STREAMS

        # A stream that ends gives its slot back.
        http.post("/_gate/s0").raise_for_status()
        rest = held[0].rest()
        assert "end" in [e.data for e in rest] and rest[-1].event == "done"
        wait_state(server, lambda s: s["open_streams"] == MAX_STREAMS - 1)
        again = Held(stack, http, "/limited/stream", prompt("again"), csrf(server))
        assert again.first.data == "start "

        # So does a reader that leaves.
        held[1].leave()
        wait_state(server, lambda s: s["open_streams"] == MAX_STREAMS - 1)
        streamed = Held(stack, http, "/v1/chat/completions", chat_body("oa2"), {})
        assert json.loads(streamed.first.data)["object"] == "chat.completion.chunk"
        assert_refused(http.post("/limited/stream", json=prompt("x"), headers=csrf(server)), 503)

    snapshot = wait_state(server, lambda s: s["open_streams"] == 0)
    assert "extra" not in snapshot["calls"] and "oa" not in snapshot["calls"]
    assert_no_error_logged(snapshot)
    refusals = [log for log in snapshot["logs"] if "stream refused" in log["message"]]
    assert refusals and {log["level"] for log in refusals} == {"WARNING"}


def test_per_key_limit_a_429_for_that_key_only(server: Server) -> None:
    def headers(user: str) -> dict[str, str]:
        return {**csrf(server), "X-User": user}

    with contextlib.ExitStack() as stack, httpx.Client(base_url=server.url, timeout=30) as http:
        first = Held(stack, http, "/perkey/stream", prompt("a1"), headers("alice"))
        refused = http.post("/perkey/stream", json=prompt("a2"), headers=headers("alice"))
        assert assert_refused(refused, 429)["error"]["type"] == "too_many_streams"
        bob = Held(stack, http, "/perkey/stream", prompt("b1"), headers("bob"))
        assert state(server)["calls"] == ["a1", "b1"]

        http.post("/_gate/a1").raise_for_status()
        assert first.rest()[-1].event == "done"
        wait_state(server, lambda s: s["open_streams"] == 1)
        again = Held(stack, http, "/perkey/stream", prompt("a3"), headers("alice"))
        assert again.first.data == bob.first.data == "start "

    snapshot = wait_state(server, lambda s: s["open_streams"] == 0)
    assert snapshot["calls"] == ["a1", "b1", "a3"]
    assert_no_error_logged(snapshot)


def test_a_failed_client_call_gives_the_slot_back(server: Server) -> None:
    with contextlib.ExitStack() as stack, httpx.Client(base_url=server.url, timeout=30) as http:
        for i in range(MAX_STREAMS + 1):
            failed = http.post(
                "/limited/stream", json=prompt(f"f{i}", **{"raise": True}), headers=csrf(server)
            )
            assert failed.status_code == 502, failed.text
        assert state(server)["open_streams"] == 0
        held = [
            Held(stack, http, "/limited/stream", prompt(f"s{i}"), csrf(server))
            for i in range(MAX_STREAMS)
        ]
        assert len(held) == MAX_STREAMS
        http.post("/_gate/*").raise_for_status()
        for h in held:
            assert h.rest()[-1].event == "done"
    wait_state(server, lambda s: s["open_streams"] == 0)


def test_unauthenticated_gets_json_and_the_client_is_never_called(server: Server) -> None:
    with httpx.Client(base_url=server.url, timeout=30) as http:
        anonymous = http.post("/auth/stream", json=prompt("anon"), headers=csrf(server))
        assert anonymous.status_code == 401, anonymous.text
        assert anonymous.headers["content-type"].startswith("application/json")
        assert anonymous.headers["www-authenticate"]
        assert anonymous.json()
        if server.django:
            # CSRF stays on: a POST without the token is refused first, in JSON too.
            no_token = http.post("/auth/stream", json=prompt("no-csrf"))
        else:
            no_token = http.post(
                "/auth/stream", json=prompt("bad"), headers={"Authorization": "Bearer nope"}
            )
        assert no_token.status_code in (401, 403), no_token.text
        assert no_token.headers["content-type"].startswith("application/json")
        assert no_token.json()["error" if server.django or server.kind == "flask" else "detail"]
    assert state(server)["calls"] == []


def _user_client(server: Server, user: str, stack: contextlib.ExitStack) -> httpx.Client:
    if server.django:
        http = stack.enter_context(httpx.Client(base_url=server.url, timeout=30))
        http.post("/_login", json={"username": user}).raise_for_status()
        assert http.cookies.get("sessionid") and http.cookies.get("csrftoken")
        return http
    headers = {"Authorization": f"Bearer token-{user}"}
    return stack.enter_context(httpx.Client(base_url=server.url, timeout=30, headers=headers))


def test_twenty_users_at_once_each_charged_for_their_own_stream(server: Server) -> None:
    users = [f"user{i}" for i in range(USERS)]
    with contextlib.ExitStack() as stack:
        clients = [_user_client(server, user, stack) for user in users]
        if server.django:
            # Logged in, without the CSRF token: refused before the client is called.
            assert clients[0].post("/auth/stream", json=prompt("x")).status_code == 403
        held = [
            Held(stack, http, "/auth/stream", prompt(f"u{i}", n=i + 1), csrf(server, http))
            for i, http in enumerate(clients)
        ]
        # Every upstream is open at the same time before any may finish.
        wait_state(server, lambda s: len(s["active"]) == USERS)
        httpx.post(f"{server.url}/_gate/*").raise_for_status()
        for h in held:
            events = h.rest()
            assert "end" in [e.data for e in events] and events[-1].event == "done"

    snapshot = wait_state(server, lambda s: len(s["records"]) >= 2 * USERS)
    expected = sorted((user, i + 1) for i, user in enumerate(users))
    for source in ("on_complete", "log"):
        records = [r for r in snapshot["records"] if r["source"] == source]
        assert {r["outcome"] for r in records} == {"completed"}
        charged = sorted((r["context"]["user"], r["prompt_tokens"]) for r in records)
        assert charged == expected, source
    assert sorted(snapshot["calls"]) == sorted(f"u{i}" for i in range(USERS))
    assert_no_error_logged(snapshot)
