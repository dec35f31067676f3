"""The fault suite: hostile requests, clients that vanish, upstreams that fail.

Every part runs against real servers on 127.0.0.1: the example apps (FastAPI
under uvicorn and Flask under Werkzeug in this process, Django under uvicorn
and gunicorn in a subprocess whose counts ``GET /_faults`` reports) and the
kit's routes on the recording upstreams of ``fault_apps.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import random
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
from fault_apps import FAULTS, HANG, CountingClient, FaultClient, fastapi_app, flask_app
from httpx_sse import ServerSentEvent, connect_sse
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from servers import (
    free_port,
    gunicorn_argv,
    process_server,
    text_of,
    uvicorn_argv,
    uvicorn_thread,
    werkzeug_thread,
)

from example_apps import fastapi_app as fastapi_example
from example_apps import flask_app as flask_example
from indox_integrations import (
    DemoClient,
    Limits,
    RequestError,
    parse_chat,
    parse_completion,
    read_json_body,
)

SEED = 20260827
PROBES = 1_000
LIMIT = Limits().max_body_bytes
MODELS = DemoClient.models
ROLES = ("system", "user", "assistant")
FIELDS = {"prompt", "messages", "model", "temperature", "max_tokens"}
ECHO = "still streaming after the storm 🙂\nsecond line, [DONE] and data: as text"
JSON = "application/json"
CLIENT_TIMEOUT = httpx.Timeout(15.0)
# No provider keys: the Django project's page and URLs offer the demo models.
DJANGO_ENV = {"INDOX_ROUTER_API_KEY": "", "OPENAI_API_KEY": "", "DJANGO_DEBUG": ""}
EXAMPLES = ["fastapi", "flask", "django-asgi", "django-wsgi"]


# Servers.


@dataclasses.dataclass
class App:
    """A running server and how to ask it how often its upstream was called."""

    name: str
    url: str
    calls: Callable[[], int]
    headers: dict[str, str]
    cookies: dict[str, str]

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=CLIENT_TIMEOUT, cookies=self.cookies)


def csrf_cookie(url: str) -> dict[str, str]:
    """Django's CSRF cookie from the page, so that the fuzzing reaches the views."""
    with httpx.Client(base_url=url, timeout=CLIENT_TIMEOUT) as client:
        page = client.get("/")
        assert page.status_code == 200
        return {"csrftoken": client.cookies["csrftoken"]}


def django_calls(url: str) -> Callable[[], int]:
    def calls() -> int:
        return int(httpx.get(f"{url}/_faults", timeout=CLIENT_TIMEOUT).json()["calls"])

    return calls


@contextlib.contextmanager
def django_server(kind: str) -> Iterator[str]:
    port = free_port()
    if kind == "asgi":
        argv = uvicorn_argv("fault_apps:django_asgi", port, "--factory")
    else:
        argv = gunicorn_argv("fault_apps:django_wsgi()", port)
    with process_server(argv, port, env=DJANGO_ENV) as url:
        yield url


@pytest.fixture(scope="module")
def django_asgi() -> Iterator[str]:
    with django_server("asgi") as url:
        yield url


@pytest.fixture(scope="module")
def django_wsgi() -> Iterator[str]:
    with django_server("wsgi") as url:
        yield url


@pytest.fixture
def example(request: pytest.FixtureRequest) -> Iterator[App]:
    """One example app with an upstream that counts its calls."""
    name = request.param
    if name in ("django-asgi", "django-wsgi"):
        url = request.getfixturevalue(name.replace("-", "_"))
        cookies = csrf_cookie(url)
        yield App(name, url, django_calls(url), {"X-CSRFToken": cookies["csrftoken"]}, cookies)
        return
    counting = CountingClient()
    if name == "fastapi":
        server = uvicorn_thread(fastapi_example.create_app(counting.upstream()))
    else:
        server = werkzeug_thread(flask_example.create_app(counting.upstream()))
    with server as url:
        yield App(name, url, lambda: counting.calls, {}, {})


# Hostile requests, generated once with a fixed seed.


@dataclasses.dataclass(frozen=True)
class Probe:
    """One malformed request; ``kind`` says what makes it invalid."""

    kind: str
    method: str
    path: str
    content_type: str | None
    body: bytes
    chunked: bool

    def describe(self) -> str:
        return (
            f"{self.kind}: {self.method} {self.path} content-type={self.content_type!r} "
            f"chunked={self.chunked} body[{len(self.body)}]={self.body[:160]!r}"
        )


def dumps(value: Any, ascii_only: bool = True) -> bytes:
    # Python's json writes NaN and Infinity, and a lone surrogate without
    # ensure_ascii: both are things a hostile client can send.
    return json.dumps(value, ensure_ascii=ascii_only).encode("utf-8", "surrogatepass")


def kit_rejects(probe: Probe) -> bool:
    """The shared rules (``indox_integrations.requests``) refuse ``probe``."""
    if probe.method != "POST":
        return True
    limits = Limits(models=MODELS, default_model="demo/story")
    try:
        data = read_json_body(probe.body, probe.content_type, limits)
        (parse_chat if probe.path == "/chat" else parse_completion)(data, limits)
    except RequestError:
        return True
    return False


odd_texts = st.lists(
    st.sampled_from(["\ud800", "\udfff", "\x00", "\u2028", "🙂", "漢", "\r\n", " ", "a", '"']),
    max_size=6,
).map("".join)
texts = st.text(max_size=24) | odd_texts
scalars = st.none() | st.booleans() | st.integers() | st.floats() | texts
containers = st.lists(scalars, max_size=3) | st.dictionaries(texts, scalars, max_size=3)
json_values = scalars | containers
non_strings = st.booleans() | st.integers() | st.floats() | containers
non_numbers = st.booleans() | texts | containers
non_objects = scalars | st.lists(scalars, max_size=3)
prompts = st.text(min_size=1, max_size=40).filter(str.strip)
options = st.fixed_dictionaries(
    {},
    optional={
        "model": st.sampled_from(MODELS),
        "temperature": st.floats(0, 2),
        "max_tokens": st.integers(1, Limits().max_tokens),
    },
)
messages = st.lists(
    st.fixed_dictionaries({"role": st.sampled_from(ROLES), "content": st.text(max_size=40)}),
    min_size=1,
    max_size=3,
)
huge_texts = st.builds(
    lambda piece, size: piece * (size // len(piece) + 1),
    st.sampled_from(["x", "漢字", "🙂", "data: [DONE]\n\n"]),
    st.integers(100_000, 400_000),
)
bad_prompts = non_strings | st.sampled_from(["", " ", "\n\t", "\u3000"])
bad_models = (
    non_strings
    | st.sampled_from(["", "   ", "\t", "gpt-4o", "demo/ECHO", "demo/echo ", "x" * 201])
    | texts.filter(lambda v: v not in MODELS)
)
bad_temperatures = (
    non_numbers
    | st.floats(max_value=-1e-6)
    | st.floats(min_value=2.000001)
    | st.integers(max_value=-1)
    | st.integers(min_value=3)
    | st.sampled_from([float("nan"), float("inf"), float("-inf")])
)
bad_max_tokens = (
    non_numbers
    | st.floats()
    | st.integers(max_value=0)
    | st.integers(min_value=Limits().max_tokens + 1)
)
bad_messages = (
    st.booleans()
    | st.integers()
    | texts
    | st.dictionaries(texts, scalars, max_size=3)
    | st.just([])
    | st.builds(lambda n: [{"role": "user", "content": "hi"}] * n, st.integers(501, 2_000))
)
bad_message = (
    scalars
    | st.lists(scalars, max_size=3)
    | st.fixed_dictionaries(
        {"role": non_strings | texts.filter(lambda v: v not in ROLES), "content": texts}
    )
    | st.fixed_dictionaries({"role": st.sampled_from(ROLES), "content": non_strings | st.none()})
    | st.fixed_dictionaries({"role": st.sampled_from(ROLES)})
    | st.fixed_dictionaries({"content": texts})
)
# What Django's CSRF middleware would parse as a form before any view runs is
# covered by test_multipart_bodies instead.
bad_content_types = st.sampled_from(
    [
        None,
        "",
        "text/plain",
        "text/json",
        "application/jsonx",
        "application/json-seq",
        "application/x-ndjson",
        "application/x-www-form-urlencoded",
        "application/xml",
        "text/event-stream",
        "json",
        "*/*",
        "application/json+x",
        "application/ json",
    ]
) | st.text(st.characters(min_codepoint=33, max_codepoint=126), max_size=30)
bad_bytes = st.sampled_from(
    [b"\xff", b"\xfe", b"\x80", b"\xc0\xaf", b"\xed\xa0\x80", b"\xf8\x88\x80\x80\x80", b"\xc3("]
)
JSON_TYPES = [JSON, JSON, "application/json; charset=utf-8", "Application/JSON", "x/vnd.a+json"]
ONE_IN_10 = [False] * 9 + [True]
ONE_IN_30 = [False] * 29 + [True]
# Weights: mostly broken fields, the layer with the most rules.
KINDS = ["field"] * 9 + ["method", "content-type", "content-type", "utf-8", "utf-8"] + [
    "syntax", "syntax", "top-level", "oversize"
]  # fmt: skip


def is_json_type(content_type: str | None) -> bool:
    media_type = (content_type or "").split(";")[0].strip().lower()
    return media_type == JSON or media_type.endswith("+json")


@st.composite
def probes(draw: st.DrawFn) -> Probe:
    path = draw(st.sampled_from(["/stream", "/chat"]))
    field = "prompt" if path == "/stream" else "messages"
    body: dict[str, Any] = {
        **draw(st.dictionaries(texts.filter(lambda k: k not in FIELDS), json_values, max_size=3)),
        field: draw(prompts if field == "prompt" else messages),
        **draw(options),
    }
    if draw(st.sampled_from(ONE_IN_30)):  # a huge field beside the broken one
        huge = draw(huge_texts)
        if field == "prompt":
            body["prompt"] = huge
        else:
            body["messages"][0]["content"] = huge
    method, chunked = "POST", draw(st.sampled_from(ONE_IN_10))
    content_type: str | None = draw(st.sampled_from(JSON_TYPES))
    ascii_only = draw(st.booleans())
    kind = draw(st.sampled_from(KINDS))
    if kind == "field":
        target = draw(st.sampled_from([field, field, "model", "temperature", "max_tokens"]))
        if target == "prompt":
            if draw(st.booleans()):
                del body["prompt"]
            else:
                body["prompt"] = draw(bad_prompts)
        elif target == "messages":
            if draw(st.booleans()):
                body["messages"] = draw(bad_messages)
            else:
                body["messages"][draw(st.integers(0, len(body["messages"]) - 1))] = draw(
                    bad_message
                )
        else:
            body[target] = draw(
                {"model": bad_models, "temperature": bad_temperatures}.get(target, bad_max_tokens)
            )
        raw = dumps(body, ascii_only)
    elif kind == "method":
        method, raw = draw(st.sampled_from(["GET", "PUT", "PATCH", "DELETE"])), dumps(body)
    elif kind == "content-type":
        raw = dumps(body, ascii_only)
        content_type = draw(
            bad_content_types.filter(
                lambda ct: not is_json_type(ct) and not (ct or "").startswith("multipart/")
            )
        )
    elif kind == "utf-8":
        text = json.dumps(body, ensure_ascii=ascii_only)
        if draw(st.booleans()):
            codec = draw(st.sampled_from(["utf-16", "utf-16-be", "utf-32", "utf-32-le"]))
            raw = text.encode(codec, "surrogatepass")
        else:
            at = draw(st.integers(0, len(text)))
            raw = (
                text[:at].encode("utf-8", "surrogatepass")
                + draw(bad_bytes)
                + text[at:].encode("utf-8", "surrogatepass")
            )
    elif kind == "syntax":
        raw = dumps(body, ascii_only)
        how = draw(st.sampled_from(["truncate", "trail", "garbage", "nest", "single-quotes"]))
        if how == "truncate":
            raw = raw[: draw(st.integers(0, len(raw) - 1))]
        elif how == "trail":
            raw += draw(st.sampled_from([b",", b"}", b" x", b"{}", b"\x00", b"]"]))
        elif how == "garbage":
            raw = draw(st.binary(max_size=64))
        elif how == "nest":
            raw = b'{"prompt": ' + b"[" * draw(st.integers(900, 200_000))
        else:
            raw = raw.replace(b'"', b"'")
    elif kind == "top-level":
        raw = dumps(draw(non_objects), ascii_only)
    else:
        raw = dumps({**body, "padding": "p" * (LIMIT + 1)})
    return Probe(kind, method, path, content_type, raw, chunked)


def generate(count: int) -> list[Probe]:
    """``count`` probes, the same on every run."""
    found: list[Probe] = []

    @settings(
        max_examples=count,
        derandomize=True,
        database=None,
        deadline=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(probes())
    def collect(probe: Probe) -> None:
        found.append(probe)

    collect()
    return found


@pytest.fixture(scope="module")
def hostile() -> list[Probe]:
    found = generate(PROBES)
    assert len(found) == PROBES
    accepted = [p.describe() for p in found if not kit_rejects(p)]
    assert not accepted, f"the generator made valid requests: {accepted[:3]}"
    return found


def send(client: httpx.Client, app: App, probe: Probe) -> str | None:
    """Send ``probe``; what is wrong with the reply, or None."""
    headers = dict(app.headers)
    if probe.content_type is not None:
        headers["Content-Type"] = probe.content_type
    if len(probe.body) > 64 * 1024:
        # A body refused unread (too large, wrong method) is drained by gunicorn
        # up to 64 KiB; past that it drops the kept-alive connection.
        headers["Connection"] = "close"
    content: Any = probe.body
    if probe.chunked:
        content = iter([probe.body[i : i + 65_536] for i in range(0, len(probe.body), 65_536)])
    try:
        reply = client.request(probe.method, probe.path, content=content, headers=headers)
    except httpx.HTTPError as exc:
        return f"{probe.describe()}\n  -> {type(exc).__name__}: {exc}"
    problems = []
    if not 400 <= reply.status_code < 500:
        problems.append(f"status {reply.status_code}")
    if not reply.headers.get("content-type", "").startswith(JSON):
        problems.append(f"content-type {reply.headers.get('content-type')!r}")
    try:
        json.loads(reply.content)
    except ValueError:
        problems.append("a body that is not JSON")
    if b"Traceback" in reply.content or b'File "' in reply.content:
        problems.append("a traceback in the body")
    if not problems:
        return None
    return f"{probe.describe()}\n  -> {', '.join(problems)}: {reply.content[:300]!r}"


def streams_echo(app: App) -> None:
    """A valid request streams the exact text, then the end marker."""
    with (
        app.client() as client,
        connect_sse(
            client,
            "POST",
            "/stream",
            json={"prompt": ECHO, "model": "demo/echo"},
            headers=app.headers,
        ) as source,
    ):
        assert source.response.status_code == 200
        events = list(source.iter_sse())
    assert text_of(events) == ECHO
    assert (events[-1].event, events[-1].data) == ("done", "[DONE]")


@pytest.mark.parametrize("example", EXAMPLES, indirect=True)
def test_hostile_requests_get_json_4xx_and_never_reach_the_upstream(
    example: App, hostile: list[Probe]
) -> None:
    calls = example.calls()
    with example.client() as client, ThreadPoolExecutor(8) as pool:
        problems = [p for p in pool.map(lambda probe: send(client, example, probe), hostile) if p]
    assert not problems, f"{len(problems)} bad replies from {example.name}:\n" + "\n".join(
        problems[:10]
    )
    assert example.calls() == calls
    streams_echo(example)
    assert example.calls() == calls + 1


@pytest.mark.parametrize("example", EXAMPLES, indirect=True)
def test_multipart_bodies(example: App) -> None:
    """Forms are refused with a 4xx, never a 5xx, a traceback or a call to the upstream.

    Django's CSRF middleware parses a multipart POST before any view runs: a
    form it can parse reaches the view (415, JSON); one without a usable
    boundary is refused there, by Django, with the project's 400 page.
    """
    form = b'--xyz\r\nContent-Disposition: form-data; name="prompt"\r\n\r\nhi\r\n--xyz--\r\n'
    cases = [
        ("multipart/form-data; boundary=xyz", form, 415),
        ("multipart/form-data; boundary=xyz", b"--xyz\r\nno headers", 415),
        ("multipart/form-data", b'{"prompt": "hi"}', 400),
        ("multipart/form-data; boundary=", b'{"prompt": "hi"}', 400),
    ]
    calls = example.calls()
    with example.client() as client:
        for content_type, body, django_status in cases:
            reply = client.post(
                "/stream", content=body, headers={**example.headers, "Content-Type": content_type}
            )
            assert b"Traceback" not in reply.content and b'File "' not in reply.content
            if example.name.startswith("django") and django_status != 415:
                assert reply.status_code == django_status, (content_type, reply.text)
                continue
            assert reply.status_code == 415, (content_type, reply.status_code, reply.text)
            assert reply.headers["content-type"].startswith(JSON)
            assert reply.json()["error"]["field"] == "body"
    assert example.calls() == calls
    streams_echo(example)


# Clients that vanish at random points.


@pytest.fixture(scope="module")
def fastapi_faults() -> Iterator[tuple[str, FaultClient]]:
    client = FaultClient()
    with uvicorn_thread(fastapi_app(client)) as url:
        yield url, client


@pytest.fixture(scope="module")
def flask_faults() -> Iterator[tuple[str, FaultClient]]:
    client = FaultClient()
    with werkzeug_thread(flask_app(client)) as url:
        yield url, client


@dataclasses.dataclass(frozen=True)
class Plan:
    """Where one client leaves: mid-request, after the headers, after some events..."""

    path: str
    model: str
    upstream: dict[str, Any]
    stage: str
    amount: float
    reset: bool

    def request(self) -> bytes:
        text = json.dumps(self.upstream)
        payload: dict[str, Any] = (
            {"prompt": text, "model": self.model}
            if self.path == "/stream"
            else {"messages": [{"role": "user", "content": text}], "model": self.model}
        )
        body = json.dumps(payload).encode()
        head = (
            f"POST {self.path} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        )
        return head.encode() + body


def plans(seed: int, count: int, models: list[str]) -> list[Plan]:
    rng = random.Random(seed)
    out = []
    for _ in range(count):
        upstream = {
            "chunks": rng.randint(3, 40),
            "delay": rng.choice([0.0, 0.002, 0.01, 0.03]),
            "first_delay": rng.choice([0.0, 0.0, 0.0, 0.3]),
        }
        stage = rng.choices(["request", "headers", "events", "idle", "end"], [1, 2, 5, 2, 2])[0]
        amount = {"events": rng.randint(1, 30), "idle": rng.uniform(0.0, 0.3)}.get(stage, 0.0)
        plan = Plan(
            rng.choice(["/stream", "/chat"]),
            rng.choice(models),
            upstream,
            stage,
            amount,
            rng.random() < 0.3,
        )
        if stage == "request":
            plan = dataclasses.replace(plan, amount=rng.randint(1, len(plan.request()) - 1))
        out.append(plan)
    return out


async def vanish(port: int, plan: Plan) -> None:
    """Play ``plan``: send (part of) the request, read some of the answer, leave."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        request = plan.request()
        if plan.stage == "request":
            writer.write(request[: int(plan.amount)])
            await writer.drain()
            return
        writer.write(request)
        await writer.drain()
        if plan.stage == "idle":
            await asyncio.sleep(plan.amount)
            return
        seen = b""
        while chunk := await reader.read(4096):
            seen += chunk
            if plan.stage == "headers" and b"\r\n\r\n" in seen:
                return
            if plan.stage == "events" and seen.count(b"\n\n") >= plan.amount:
                return
            if b"data: [DONE]\n\n" in seen:  # the whole stream: leave before keep-alive ends
                return
    finally:
        if plan.reset:  # an abortive close: RST instead of FIN
            sock = writer.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


async def crowd(port: int, plans: list[Plan], parallel: int = 25) -> None:
    gate = asyncio.Semaphore(parallel)

    async def one(plan: Plan) -> None:
        async with gate:
            await asyncio.wait_for(vanish(port, plan), 20)

    await asyncio.gather(*(one(plan) for plan in plans))


def settle(check: Callable[[], bool], timeout: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def busy_threads() -> list[str]:
    """Threads at work: the kit's reusable ones wait a while for the next stream once
    theirs is done (indox-idle), beside the one that starts them and the watchdog."""
    own = ("indox-idle", "indox-spawner", "indox-watchdog")
    return [t.name for t in threading.enumerate() if t.name not in own]


def server_tasks(url: str) -> int:
    return int(httpx.get(f"{url}/_tasks", timeout=CLIENT_TIMEOUT).json()["tasks"])


@pytest.mark.parametrize("skin", ["fastapi", "flask"])
def test_clients_that_vanish_leave_no_upstream_thread_or_task_behind(
    skin: str, request: pytest.FixtureRequest
) -> None:
    url, client = request.getfixturevalue(f"{skin}_faults")
    models = ["track/sync", "track/async"] if skin == "fastapi" else ["track/sync"]
    warm = {"prompt": json.dumps({"chunks": 2, "delay": 0.0}), "model": models[-1]}
    assert httpx.post(f"{url}/stream", json=warm, timeout=CLIENT_TIMEOUT).status_code == 200
    assert settle(lambda: client.snapshot()["active"] == 0)
    client.reset()
    threads = len(busy_threads())
    tasks = server_tasks(url) if skin == "fastapi" else 0

    asyncio.run(crowd(int(url.rpartition(":")[2]), plans(SEED, 200, models)))

    def quiet() -> bool:
        snapshot = client.snapshot()
        return snapshot["active"] == 0 and 0 not in snapshot["closes"]

    assert settle(quiet), client.snapshot()
    snapshot = client.snapshot()
    # Every upstream the client handed out was closed, once; every generator ran its finally.
    assert snapshot["closes"] == [1] * client.calls
    assert snapshot["closed"] == snapshot["started"]
    assert client.calls >= 150
    # Most clients left before the end of their stream, the server noticed.
    assert snapshot["started"] - snapshot["completed"] >= 50
    assert settle(lambda: len(busy_threads()) <= threads), (threads, busy_threads())
    if skin == "fastapi":
        assert settle(lambda: server_tasks(url) <= tasks), (server_tasks(url), tasks)


# Upstreams that fail.

ERROR_TYPES = {
    "raise": "upstream_error",
    "hang": "timeout",
    "garbage-object": "invalid_chunk",
    "garbage-int": "invalid_chunk",
    "garbage-dict": "invalid_chunk",
}
# (skin, model family): async upstreams where the server runs an event loop.
ROUTES = [
    ("fastapi", "fault"),
    ("fastapi", "afault"),
    ("flask", "fault"),
    ("django-asgi", "fault"),
    ("django-asgi", "afault"),
    ("django-wsgi", "fault"),
]


@dataclasses.dataclass
class Target:
    url: str
    path: str
    headers: dict[str, str]
    cookies: dict[str, str]
    snapshot: Callable[[], dict[str, Any]]


@pytest.fixture
def target(request: pytest.FixtureRequest) -> Target:
    skin = request.param
    if skin.startswith("django"):
        url = request.getfixturevalue(skin.replace("-", "_"))
        cookies = csrf_cookie(url)

        def snapshot() -> dict[str, Any]:
            reply = httpx.get(f"{url}/_faults", timeout=CLIENT_TIMEOUT)
            return dict(reply.json()["faults"])

        return Target(
            url, "/faults/stream", {"X-CSRFToken": cookies["csrftoken"]}, cookies, snapshot
        )
    url, client = request.getfixturevalue(f"{skin}_faults")
    return Target(url, "/stream", {}, {}, client.snapshot)


def events_of(target: Target, model: str) -> list[ServerSentEvent]:
    with (
        httpx.Client(base_url=target.url, timeout=CLIENT_TIMEOUT, cookies=target.cookies) as http,
        connect_sse(
            http, "POST", target.path, json={"prompt": "go", "model": model}, headers=target.headers
        ) as source,
    ):
        assert source.response.status_code == 200
        assert source.response.headers["content-type"] == "text/event-stream; charset=utf-8"
        return list(source.iter_sse())


@pytest.mark.parametrize("fault", FAULTS)
@pytest.mark.parametrize(("target", "family"), ROUTES, indirect=["target"])
def test_failing_upstreams_end_with_the_error_event_and_the_end_marker(
    target: Target, family: str, fault: str
) -> None:
    started = target.snapshot()["started"]
    events = events_of(target, f"{family}/{fault}")
    hung = target.snapshot()
    assert [e.event for e in events] == ["message", "message", "error", "done"]
    assert [e.data for e in events[:2]] == ["before ", "the fault "]
    error = json.loads(events[2].data)
    assert set(error) == {"type", "message"}
    assert error["type"] == ERROR_TYPES[fault]
    assert isinstance(error["message"], str) and error["message"]
    assert "sk-test-123" not in error["message"] and "Traceback" not in error["message"]
    assert events[3].data == "[DONE]"
    if (family, fault) == ("fault", "hang"):
        # The stream ended while the upstream was still stuck in its call.
        assert hung["active"] >= 1
    assert settle(lambda: target.snapshot()["active"] == 0, HANG + 10), target.snapshot()
    after = target.snapshot()
    assert after["started"] == started + 1 and after["closed"] == after["started"]


@pytest.mark.parametrize(("target", "family"), ROUTES, indirect=["target"])
def test_a_lone_surrogate_in_a_chunk_still_ends_with_the_end_marker(
    target: Target, family: str
) -> None:
    events = events_of(target, f"{family}/garbage-surrogate")
    assert [e.data for e in events[:2]] == ["before ", "the fault "]
    assert (events[-1].event, events[-1].data) == ("done", "[DONE]")
