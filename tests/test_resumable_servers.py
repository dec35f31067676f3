"""Resumable streams across processes: two app processes on two ports, one redis-server.

For FastAPI (uvicorn), Flask (gunicorn), Django under ASGI (uvicorn) and WSGI (gunicorn),
``resumable_apps`` serves the indox routes under ``/llm`` and the AI SDK's under ``/api``.
Process A takes the POST (and so runs the generation); process B resumes, cancels and
reads.  The faults: A killed with SIGKILL, Redis stopped and started again.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

import httpx
import pytest
from httpx_sse import ServerSentEvent, connect_sse
from redis_server import RedisServer, redis_server  # noqa: F401
from servers import NODE, free_port, gunicorn_argv, process_server, uvicorn_argv

from indox_integrations.demo import STORY
from indox_integrations.stores import RedisStore

FRAMEWORKS = ["fastapi", "flask", "django-asgi", "django-wsgi"]
DELAY = 0.02  # per demo chunk: the story takes about 3.5 s
DETACH = 2.0
LEASE = 5.0  # readers of a killed producer end within LEASE + the store's poll
CSRF = "c" * 32  # Django's CSRF cookie and header: CsrfViewMiddleware is on
USER = {"X-User": "ada"}
STORY_BODY = {"prompt": "Tell me a story", "model": "demo/story"}


def chat_body(chat_id: str) -> dict[str, Any]:
    parts = [{"type": "text", "text": "Tell me a story"}]
    message = {"id": "m-1", "role": "user", "parts": parts}
    return {"id": chat_id, "messages": [message], "model": "demo/story"}


def argv(framework: str, port: int) -> list[str]:
    if framework == "fastapi":
        return uvicorn_argv("resumable_apps:fastapi_app", port, "--factory")
    if framework == "flask":
        return gunicorn_argv("resumable_apps:flask_app()", port)
    if framework == "django-asgi":
        return uvicorn_argv("resumable_apps:django_asgi", port, "--factory")
    return gunicorn_argv("resumable_apps:django_wsgi()", port)


@dataclass
class App:
    """One app process, restartable (a test may kill it)."""

    framework: str
    env: dict[str, str]
    port: int = field(default_factory=free_port)
    stack: contextlib.ExitStack | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.stack = contextlib.ExitStack()
        self.stack.enter_context(
            process_server(argv(self.framework, self.port), self.port, self.env)
        )

    def stop(self) -> None:
        if self.stack is not None:
            self.stack.close()
            self.stack = None

    def alive(self) -> bool:
        try:
            return httpx.get(f"{self.url}/_calls", timeout=5).status_code == 200
        except httpx.HTTPError:
            return False

    def calls(self) -> dict[str, Any]:
        return httpx.get(f"{self.url}/_calls", timeout=5).json()  # type: ignore[no-any-return]

    def client(self) -> httpx.Client:
        client = httpx.Client(base_url=self.url, timeout=30, headers={"X-CSRFToken": CSRF, **USER})
        client.cookies.set("csrftoken", CSRF)
        return client


@dataclass
class Cluster:
    framework: str
    redis: RedisServer
    a: App
    b: App

    @property
    def stream_path(self) -> str:
        return "/llm/stream/" if self.framework.startswith("django") else "/llm/stream"


@pytest.fixture(scope="module", params=FRAMEWORKS)
def running(request: pytest.FixtureRequest, redis_server: RedisServer) -> Iterator[Cluster]:  # noqa: F811
    env = {
        "RESUME_REDIS_URL": redis_server.url,
        "RESUME_DELAY": str(DELAY),
        "RESUME_DETACH": str(DETACH),
        "RESUME_LEASE": str(LEASE),
        "DJANGO_SETTINGS_MODULE": "resumable_apps",
    }
    cluster = Cluster(request.param, redis_server, App(request.param, env), App(request.param, env))
    redis_server.start()
    cluster.a.start()
    cluster.b.start()
    try:
        yield cluster
    finally:
        cluster.a.stop()
        cluster.b.stop()


@pytest.fixture
def cluster(running: Cluster) -> Cluster:
    """Both processes up and Redis running, whatever the last test did to them."""
    running.redis.start()
    for app in (running.a, running.b):
        if not app.alive():
            app.stop()
            app.start()
    return running


def sse(source: Any) -> Iterator[ServerSentEvent]:
    """The events of an ``EventSource``.  httpx-sse dispatches an empty message at the
    blank line after a comment (a heartbeat) once an id was seen; browsers do not."""
    return (e for e in source.iter_sse() if e.event != "message" or e.data != "")


def take(
    events: Iterator[ServerSentEvent], count: int, kind: str = "message"
) -> list[ServerSentEvent]:
    """Events up to and including the ``count``-th of ``kind``."""
    taken = []
    seen = 0
    for event in events:
        taken.append(event)
        seen += event.event == kind
        if seen == count:
            break
    return taken


def triples(events: list[ServerSentEvent]) -> list[tuple[str, str, str]]:
    """What an SSE reader sees of each event (``ServerSentEvent`` has no equality)."""
    return [(e.event, e.data, e.id) for e in events]


def text_of(events: list[ServerSentEvent]) -> str:
    return "".join(e.data for e in events if e.event == "message")


def deltas_of(events: list[ServerSentEvent]) -> str:
    chunks = [json.loads(e.data) for e in events if e.data.startswith("{")]
    return "".join(c["delta"] for c in chunks if c["type"] == "text-delta")


def resume(app: App, url: str, after: str | None = None, **headers: str) -> list[ServerSentEvent]:
    with (
        app.client() as client,
        connect_sse(
            client, "GET", url, headers={**headers, **({"Last-Event-ID": after} if after else {})}
        ) as source,
    ):
        assert source.response.status_code == 200, source.response.read()
        return list(sse(source))


def assert_each_once(events: list[ServerSentEvent], added: int = 0) -> None:
    """Every stored event exactly once.  The last ``added`` ones were added by the reader
    (an error and the end marker after a fault): they carry no id of their own."""
    ids = [e.id for e in events[: len(events) - added]]
    assert all(ids) and len(ids) == len(set(ids)), ids


def error_of(events: list[ServerSentEvent]) -> dict[str, Any]:
    errors = [json.loads(e.data) for e in events if e.event == "error"]
    assert len(errors) == 1, events[-3:]
    assert events[-1].event == "done"
    return errors[0]  # type: ignore[no-any-return]


def cancelled_midway(cluster: Cluster, path: str) -> tuple[str, list[ServerSentEvent]]:
    """A stream started on A (``POST path``), cancelled from B after 5 chunks: its reader
    on A ends with ``cancelled`` before the story does.  The resume URL, the 5 events."""
    with (
        cluster.a.client() as client,
        connect_sse(client, "POST", path, json=STORY_BODY) as source,
    ):
        url = source.response.headers["indox-resume-url"]
        events = sse(source)
        first = take(events, 5)
        with cluster.b.client() as other:
            assert other.delete(url).status_code == 204
        rest = list(events)
    assert error_of(rest)["type"] == "cancelled"
    assert len(text_of(first + rest)) < len(STORY)
    return url, first


def test_half_a_stream_from_one_process_and_the_rest_from_the_other(cluster: Cluster) -> None:
    with (
        cluster.a.client() as client,
        connect_sse(client, "POST", cluster.stream_path, json=STORY_BODY) as source,
    ):
        headers = source.response.headers
        first = take(sse(source), 30)
    url = headers["indox-resume-url"]
    assert url == f"/llm/streams/{headers['indox-stream-id']}"
    assert "Indox-Resume-Url" in headers["access-control-expose-headers"]

    rest = resume(cluster.b, url, first[-1].id)

    assert text_of(first) + text_of(rest) == STORY
    assert_each_once(first + rest)
    assert [e.event for e in rest[-3:]] == ["finish", "usage", "done"]
    # Resuming again after any id replays exactly what follows it.
    middle = first[10].id
    again = resume(cluster.a, url, middle)
    assert text_of(first[11:]) + text_of(rest) == text_of(again)
    assert triples(again) == triples(first[11:] + rest)


def test_the_ai_sdk_stream_resumes_on_the_other_process(cluster: Cluster) -> None:
    with (
        cluster.a.client() as client,
        connect_sse(client, "POST", "/api/chat", json=chat_body("chat-half")) as source,
    ):
        url = source.response.headers["indox-resume-url"]
        assert source.response.headers["x-vercel-ai-ui-message-stream"] == "v1"
        first = take(sse(source), 25, kind="message")
    # The AI SDK's own resume names the chat: it replays the running stream from its start.
    with (
        cluster.b.client() as client,
        connect_sse(client, "GET", "/api/chat/chat-half/stream") as source,
    ):
        assert source.response.status_code == 200
        whole = list(sse(source))
    rest = resume(cluster.b, url, first[-1].id)

    assert deltas_of(first) + deltas_of(rest) == STORY == deltas_of(whole)
    assert json.loads(whole[0].data)["type"] == "start"
    assert whole[-1].data == "[DONE]" and rest[-1].data == "[DONE]"
    assert_each_once(first + rest)
    # Once it has ended, no stream is active for that chat.
    with cluster.b.client() as client:
        assert client.get("/api/chat/chat-half/stream").status_code == 204
        assert client.get("/api/chat/never-was/stream").status_code == 204


def test_cancel_on_one_process_stops_the_generation_on_the_other(cluster: Cluster) -> None:
    url, first = cancelled_midway(cluster, cluster.stream_path)
    # Anyone who resumes now gets the same end.
    assert error_of(resume(cluster.b, url, first[-1].id))["type"] == "cancelled"


def test_kill_9_of_the_producer_ends_its_readers_with_producer_lost(cluster: Cluster) -> None:
    with (
        cluster.a.client() as client,
        connect_sse(client, "POST", cluster.stream_path, json=STORY_BODY) as source,
    ):
        url = source.response.headers["indox-resume-url"]
        first = take(sse(source), 3)
    producer = cluster.a.calls()["pid"]
    with (
        cluster.b.client() as client,
        connect_sse(client, "GET", url, headers={"Last-Event-ID": first[-1].id}) as source,
    ):
        events = sse(source)
        followed = take(events, 3)
        os.kill(producer, signal.SIGKILL)
        rest = list(events)  # bounded by the client's timeout: it must end by itself

    assert error_of(rest)["type"] == "producer_lost", error_of(rest)
    assert STORY.startswith(text_of(first + followed + rest))
    assert_each_once(first + followed + rest, added=2)


def test_redis_stopped_mid_stream_and_started_again(cluster: Cluster) -> None:
    outcome: dict[str, list[ServerSentEvent]] = {}
    with (
        cluster.a.client() as client,
        connect_sse(client, "POST", cluster.stream_path, json=STORY_BODY) as source,
    ):
        url = source.response.headers["indox-resume-url"]
        events = sse(source)
        first = take(events, 5)

        def follow() -> None:
            outcome["b"] = resume(cluster.b, url, first[-1].id)

        reader = threading.Thread(target=follow)
        reader.start()
        time.sleep(0.3)
        cluster.redis.stop()
        # The reader on the producing process goes on from the producer's own copy.
        rest = list(events)
        reader.join(30)

    assert text_of(first + rest) == STORY
    assert rest[-1].event == "done"
    assert_each_once(first + rest)
    # The reader elsewhere had no copy: a clean error and the end marker.
    assert error_of(outcome["b"])["type"] == "store_unavailable"

    # While Redis is away, a new stream is refused before the client is called.
    before = cluster.a.calls()["calls"]
    with cluster.a.client() as client:
        refused = client.post(cluster.stream_path, json=STORY_BODY)
        assert refused.status_code == 503
        assert refused.json()["error"]["type"] == "store_unavailable"
        assert client.get(url).status_code == 503
    assert cluster.a.calls()["calls"] == before

    cluster.redis.start()
    with (
        cluster.b.client() as client,
        connect_sse(client, "POST", cluster.stream_path, json=STORY_BODY) as source,
    ):
        assert text_of(list(sse(source))) == STORY


def test_unknown_expired_and_other_owners_streams_are_404(cluster: Cluster) -> None:
    with (
        cluster.a.client() as client,
        connect_sse(client, "POST", cluster.stream_path, json=STORY_BODY) as source,
    ):
        url = source.response.headers["indox-resume-url"]
        take(sse(source), 2)
    with cluster.b.client() as client:
        for headers in ({"X-User": "eve"}, {"X-User": ""}):
            assert client.get(url, headers=headers).status_code == 404
            assert client.delete(url, headers=headers).status_code == 404
        unknown = client.get("/llm/streams/AAAAAAAAAAAAAAAAAAAAAA")
        assert unknown.status_code == 404
        assert unknown.json() == {
            "error": {"type": "not_found", "message": "unknown or expired stream"}
        }
        assert client.get("/llm/streams/nope").status_code == 404
        bad = client.get(url, headers={"Last-Event-ID": "yesterday"})
        assert bad.status_code == 400
    if cluster.framework.startswith("django"):
        # Cancel is checked for CSRF as the POST is; a resume (GET) is not.
        with httpx.Client(base_url=cluster.b.url, headers=USER, timeout=30) as bare:
            assert bare.delete(url).status_code == 403
            assert bare.get(url).status_code == 200
    with cluster.b.client() as client:
        assert client.delete(url).status_code == 204


def test_a_stream_nobody_reads_is_cancelled_after_the_detach_timeout(cluster: Cluster) -> None:
    with (
        cluster.a.client() as client,
        connect_sse(client, "POST", cluster.stream_path, json=STORY_BODY) as source,
    ):
        url = source.response.headers["indox-resume-url"]
        first = take(sse(source), 3)
    # The story takes about 3.5 s; nobody reads it for more than DETACH.
    stream_id = unquote(url.rsplit("/", 1)[-1])
    deadline = time.monotonic() + DETACH + 10
    with contextlib.closing(RedisStore(cluster.redis.url)) as store:
        while (info := store.info(stream_id)) is not None and info.status == "running":
            assert time.monotonic() < deadline, "the stream nobody read was never ended"
            time.sleep(0.1)
    rest = resume(cluster.b, url, first[-1].id)
    error = error_of(rest)
    assert error["type"] == "cancelled" and "nobody read" in error["message"]
    assert len(text_of(first + rest)) < len(STORY)


def test_last_event_id_as_a_query_parameter(cluster: Cluster) -> None:
    with (
        cluster.a.client() as client,
        connect_sse(client, "POST", cluster.stream_path, json=STORY_BODY) as source,
    ):
        url = source.response.headers["indox-resume-url"]
        first = take(sse(source), 10)
    rest = resume(cluster.b, f"{url}?last_event_id={first[-1].id}")
    assert text_of(first) + text_of(rest) == STORY


@pytest.mark.parametrize("framework", ["fastapi", "flask", "django", "django-wsgi"])
def test_example_app_workers_share_streams_through_redis(framework: str) -> None:
    """``INDOX_REDIS_URL`` and ``--workers 2``: the app starts while Redis is down and
    answers 503 JSON until it is up; then every resume, on whichever worker, is exact."""
    with RedisServer() as redis:
        redis.stop()
        port = free_port()
        name, *extra = framework.split("-")
        command = [
            sys.executable,
            "-m",
            "example_apps",
            name,
            "--port",
            str(port),
            "--workers",
            "2",
        ]
        if extra:
            command.append("--wsgi")
        env = {"INDOX_REDIS_URL": redis.url, "INDOX_DEMO_DELAY": "0.005"}
        with (
            process_server(command, port, env) as base,
            httpx.Client(base_url=base, timeout=30) as client,
        ):
            client.cookies.set("csrftoken", CSRF)
            client.headers["X-CSRFToken"] = CSRF
            refused = client.post("/stream", json=STORY_BODY)
            assert refused.status_code == 503
            assert refused.json()["error"]["type"] == "store_unavailable"
            redis.start()
            with connect_sse(client, "POST", "/stream", json=STORY_BODY) as source:
                url = source.response.headers["indox-resume-url"]
                events = list(sse(source))
            assert text_of(events) == STORY
            for after in (events[5], events[40], events[-3]):
                with connect_sse(client, "GET", url, headers={"Last-Event-ID": after.id}) as source:
                    replay = triples(list(sse(source)))
                assert replay == triples(events[events.index(after) + 1 :])


# Real clients: the kit's JS in Node, and the AI SDK's own resume.

AI_PACKAGES = ("ai5", "ai-latest")


class DroppingProxy:
    """A TCP proxy: the first connection goes to ``first`` and is cut after ``cut`` bytes
    of its answer, as a network that drops; every later one goes to ``then``."""

    def __init__(self, first: int, then: int, cut: int) -> None:
        self.targets = [first, then]
        self.cut = cut
        self.connections = 0
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _accept(self) -> None:
        with contextlib.suppress(OSError):
            while True:
                client, _ = self.listener.accept()
                first = self.connections == 0
                self.connections += 1
                upstream = socket.create_connection(("127.0.0.1", self.targets[not first]))
                limit = self.cut if first else None
                threading.Thread(
                    target=self._pump, args=(client, upstream, None), daemon=True
                ).start()
                threading.Thread(
                    target=self._pump, args=(upstream, client, limit), daemon=True
                ).start()

    def _pump(self, source: socket.socket, target: socket.socket, limit: int | None) -> None:
        sent = 0
        with contextlib.suppress(OSError):
            while limit is None or sent < limit:
                data = source.recv(65536 if limit is None else min(65536, limit - sent))
                if not data:
                    break
                target.sendall(data)
                sent += len(data)
        for sock in (source, target):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def close(self) -> None:
        self.listener.close()


def node(script: str, *args: str) -> dict[str, Any]:
    done = subprocess.run(
        ["node", str(NODE / script), *args], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)  # type: ignore[no-any-return]


@pytest.mark.usefixtures("npm_clients")
def test_the_js_client_reconnects_to_the_other_process_after_a_drop(cluster: Cluster) -> None:
    proxy = DroppingProxy(cluster.a.port, cluster.b.port, cut=3000)
    try:
        headers = {"X-CSRFToken": CSRF, "Cookie": f"csrftoken={CSRF}", **USER}
        request = {
            "url": f"{proxy.url}{cluster.stream_path}",
            "body": STORY_BODY,
            "headers": headers,
        }
        result = node("indox-resume.mjs", json.dumps(request))
    finally:
        proxy.close()

    assert result["text"] == STORY and "".join(result["pieces"]) == STORY
    assert result["done"] and "error" not in result
    assert len(result["reconnects"]) >= 1 and proxy.connections >= 2
    assert result["resumeUrl"].startswith(f"{proxy.url}/llm/streams/")
    # A reloaded page continues with resumeStream from where it had got to.
    middle = {"resumeUrl": f"{cluster.b.url}{result['resumeUrl'][len(proxy.url):]}",
              "lastEventId": "20:0", "headers": headers}  # fmt: skip
    again = node("indox-resume.mjs", json.dumps(middle))
    assert STORY.endswith(again["text"]) and again["done"] and again["reconnects"] == []


@pytest.mark.parametrize("package", AI_PACKAGES)
@pytest.mark.usefixtures("npm_clients")
def test_the_ai_sdk_reconnects_to_the_running_chat_stream(cluster: Cluster, package: str) -> None:
    chat_id = f"chat-{package}"
    with (
        cluster.a.client() as client,
        connect_sse(client, "POST", "/api/chat", json=chat_body(chat_id)) as source,
    ):
        events = sse(source)
        take(events, 3)
        request = {"api": f"{cluster.b.url}/api/chat", "chatId": chat_id, "headers": USER}
        resumed = node("ai-sdk-resume.mjs", package, json.dumps(request))
        list(events)

    assert resumed["thrown"] is None and resumed["errors"] == []
    assert resumed["stream"] is True
    texts = [part["text"] for part in resumed["message"]["parts"] if part["type"] == "text"]
    assert texts == [STORY]
    assert resumed["chunks"][0]["type"] == "start" and resumed["chunks"][-1]["type"] == "finish"
    # No stream runs for the chat any more: the transport gets none.
    assert node("ai-sdk-resume.mjs", package, json.dumps(request))["stream"] is False


def test_a_view_of_ones_own_resumes_and_cancels_on_the_standalone_routes(cluster: Cluster) -> None:
    with (
        cluster.a.client() as client,
        connect_sse(client, "POST", "/own/ask", json=STORY_BODY) as source,
    ):
        headers = source.response.headers
        first = take(sse(source), 30)
    url = headers["indox-resume-url"]
    assert url == f"/own/streams/{headers['indox-stream-id']}"
    assert headers["x-own"] == "yes"  # the view's own header is on its stream's response

    rest = resume(cluster.b, url, first[-1].id)

    assert text_of(first) + text_of(rest) == STORY
    assert_each_once(first + rest)
    assert [e.event for e in rest[-3:]] == ["finish", "usage", "done"]
    with cluster.b.client() as client:
        # Someone else's stream, or none, is not found; a method the route lacks is named.
        assert client.get(url, headers={"X-User": "bob"}).status_code == 404
        missing = client.get("/own/streams/never-was")
        assert missing.status_code == 404 and missing.json()["error"]["type"]
        wrong = client.put(url)
        assert wrong.status_code == 405
        assert wrong.headers["content-type"].startswith("application/json")
        assert cluster.framework == "fastapi" or wrong.json()["error"]["field"] == "method"
    cancelled_midway(cluster, "/own/ask")


def test_an_async_django_view_resumes_with_an_owner_that_django_forbids_on_the_loop(
    cluster: Cluster,
) -> None:
    """``await asse_response(..., resumable=True)``: the store and a sync owner are asked
    off the event loop, and the stream resumes on the other process."""
    if not cluster.framework.startswith("django"):
        pytest.skip("asse_response is Django's")
    with (
        cluster.a.client() as client,
        connect_sse(client, "POST", "/own/ask-async", json=STORY_BODY) as source,
    ):
        assert source.response.status_code == 200, source.response.read()
        headers = source.response.headers
        first = take(sse(source), 30)
    url = headers["indox-resume-url"]
    assert url == f"/own/streams/{headers['indox-stream-id']}"
    assert headers["x-own"] == "yes"

    rest = resume(cluster.b, url, first[-1].id)

    assert text_of(first) + text_of(rest) == STORY
    assert_each_once(first + rest)
    with cluster.b.client() as client:
        assert client.get(url, headers={"X-User": "bob"}).status_code == 404
