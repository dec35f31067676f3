"""The resumable core (indox_integrations.resumable), in one process: MemoryStore and Redis."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest
from redis_server import RedisServer, redis_server, redis_url  # noqa: F401
from servers import free_port

from indox_integrations import DemoClient
from indox_integrations.demo import STORY, AsyncDemoClient
from indox_integrations.protocols import Reply
from indox_integrations.resumable import (
    Launch,
    Resumable,
    Served,
    abegin,
    acancel,
    aresume,
    begin,
    cancel,
    chat_id_of,
    configure,
    default_store,
    resume,
    resume_chat,
    resume_url,
)
from indox_integrations.stores import MemoryStore, RedisStore


def story(delay: float = 0.005) -> Any:
    return DemoClient(delay=delay).completion("x", model="demo/story", stream=True)


def make(**options: Any) -> Resumable:
    resumable = configure({"resumable": True, **options})
    assert resumable is not None
    return resumable


def launched(resumable: Resumable, owner: str | None = None, **create: Any) -> Launch:
    launch = begin(resumable, owner, **create)
    assert isinstance(launch, Launch)
    return launch


def blocks(body: Iterator[bytes]) -> list[tuple[str | None, bytes]]:
    """``(event id, block)`` of each event block a reader wrote; comments left out."""
    found = []
    for block in b"".join(body).split(b"\n\n"):
        lines = block.split(b"\n")
        if not block or all(line.startswith(b":") for line in lines):
            continue
        event_id = lines[0][4:].decode() if lines[0].startswith(b"id: ") else None
        found.append((event_id, b"\n".join(line for line in lines if not line.startswith(b"id: "))))
    return found


def text_of(found: list[tuple[str | None, bytes]]) -> str:
    """The text of the message events (a block's data lines join with a line feed)."""
    texts = []
    for _, block in found:
        lines = block.decode().split("\n")
        if not any(line.startswith("event:") for line in lines):
            texts.append("\n".join(line[6:] for line in lines if line.startswith("data: ")))
    return "".join(texts)


def served(answer: Served | Reply) -> Served:
    assert isinstance(answer, Served), answer
    return answer


# Options.


def test_configure_takes_the_resumable_options_out() -> None:
    options: dict[str, Any] = {"usage": "attach", "resumable": True, "detach_timeout": 5}
    resumable = configure(options)
    assert options == {"usage": "attach"}
    assert resumable is not None and resumable.detach_timeout == 5.0
    assert resumable.store is default_store()
    assert configure({"usage": "attach"}) is None
    assert configure({"resumable": False}) is None


@pytest.mark.parametrize(
    ("options", "error", "match"),
    [
        ({"store": MemoryStore()}, TypeError, "need resumable=True"),
        ({"resumable": True, "detach_timeout": 0}, ValueError, "detach_timeout must be"),
        ({"resumable": True, "detach_timeout": True}, ValueError, "detach_timeout must be"),
        ({"resumable": True, "store": object()}, TypeError, "store must be a MemoryStore"),
        ({"resumable": True, "owner": 3}, TypeError, "owner must be a function"),
    ],
)
def test_bad_resumable_options_name_the_fix(
    options: dict[str, Any], error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match):
        configure(options)


def test_owner_must_return_a_str() -> None:
    with pytest.raises(TypeError, match="owner\\(\\) must return a str or None, got int"):
        make(owner=lambda request: 7).owner_of(object())
    assert make(owner="fixed").owner_of(object()) == "fixed"


def test_an_async_owner_is_awaited_on_asyncio() -> None:
    async def owner(request: Any) -> Any:
        return request

    assert asyncio.run(make(owner=owner).aowner_of("ada")) == "ada"
    assert asyncio.run(make(owner=lambda request: "bob").aowner_of(None)) == "bob"
    with pytest.raises(TypeError, match="owner\\(\\) must return a str or None, got int"):
        asyncio.run(make(owner=owner).aowner_of(7))


@pytest.mark.parametrize(
    ("path", "route", "expected"),
    [
        ("/llm/stream", None, "/llm/streams/ID"),
        ("/llm/stream/", None, "/llm/streams/ID"),
        ("/stream", None, "/streams/ID"),
        ("/api/chat", "/chat", "/api/streams/ID"),
        ("/v1/chat/completions", "/chat/completions", "/v1/streams/ID"),
    ],
)
def test_the_resume_url_sits_next_to_the_route(path: str, route: str | None, expected: str) -> None:
    assert resume_url(path, route, "ID") == expected


def test_chat_id_of_an_ai_sdk_body() -> None:
    assert chat_id_of(b'{"id": "chat-1", "messages": []}') == "chat-1"
    for body in (b"not json", b"[]", b'{"id": 3}', b'{"id": ""}', b"{}"):
        assert chat_id_of(body) is None


# One process.


def test_the_first_reader_and_a_resume_read_the_same_events() -> None:
    resumable = make(store=MemoryStore())
    launch = launched(resumable, "ada")
    first = launch.start(story(), {"usage": "attach"}, "/streams/x")
    assert first.headers["Indox-Stream-Id"] == launch.stream_id
    assert first.headers["Indox-Resume-Url"] == "/streams/x"
    assert first.headers["Content-Type"].startswith("text/event-stream")
    everything = blocks(first.body)
    assert text_of(everything) == STORY
    assert everything[-1][1] == b"event: done\ndata: [DONE]"
    ids = [event_id for event_id, _ in everything]
    assert all(ids) and len(set(ids)) == len(ids)
    for k in (0, 7, len(everything) - 2):
        again = served(resume(resumable, launch.stream_id, owner="ada", last_event_id=ids[k]))
        assert blocks(again.body) == everything[k + 1 :]
    assert (
        blocks(served(resume(resumable, launch.stream_id, owner="ada", last_event_id=None)).body)
        == everything
    )


def test_other_owners_unknown_ids_and_bad_positions() -> None:
    resumable = make(store=MemoryStore())
    launch = launched(resumable, "ada")
    list(launch.start(story(), {}, "/s").body)
    for owner in ("eve", None):
        answer = resume(resumable, launch.stream_id, owner=owner, last_event_id=None)
        assert isinstance(answer, Reply) and answer.status == 404
        assert cancel(resumable, launch.stream_id, owner=owner).status == 404
    unknown = resume(resumable, "A" * 22, owner=None, last_event_id=None)
    assert isinstance(unknown, Reply) and unknown.status == 404
    assert unknown.body == {"error": {"type": "not_found", "message": "unknown or expired stream"}}
    bad = resume(resumable, launch.stream_id, owner="ada", last_event_id="soon")
    assert isinstance(bad, Reply) and bad.status == 400
    # A stream without an owner is anyone's who has its id.
    open_launch = launched(resumable, None)
    list(open_launch.start(story(), {}, "/s").body)
    assert isinstance(
        resume(resumable, open_launch.stream_id, owner="eve", last_event_id=None), Served
    )


def test_cancel_stops_the_generation_and_reports_usage_so_far() -> None:
    reports: list[Any] = []
    usages: list[Any] = []
    resumable = make(store=MemoryStore())
    launch = launched(resumable)
    options = {"on_complete": reports.append, "on_usage": usages.append}
    body = iter(launch.start(story(delay=0.05), options, "/s").body)
    next(body), next(body)
    assert cancel(resumable, launch.stream_id, owner=None).status == 204
    rest = blocks(body)
    assert (
        rest[-2][1]
        == b'event: error\ndata: {"type": "cancelled", "message": "the stream was cancelled"}'
    )
    assert len(text_of(rest)) < len(STORY)
    assert [report.outcome for report in reports] == ["cancelled"]
    assert len(usages) == 1 and usages[0]["completion_tokens"] > 0
    info = resumable.store.info(launch.stream_id)
    assert info is not None and info.status == "cancelled"


def test_nobody_reading_for_the_detach_timeout_cancels() -> None:
    reports: list[Any] = []
    resumable = make(store=MemoryStore(), detach_timeout=0.6)
    launch = launched(resumable)
    body = launch.start(story(delay=0.05), {"on_complete": reports.append}, "/s").body
    next(body), next(body)
    body.close()  # the client left
    deadline = time.monotonic() + 10
    while not reports and time.monotonic() < deadline:
        time.sleep(0.05)
    assert [report.outcome for report in reports] == ["cancelled"]
    rest = blocks(served(resume(resumable, launch.stream_id, owner=None, last_event_id=None)).body)
    assert b"nobody read the stream for 0.6 s" in rest[-2][1]


def test_a_reader_keeps_the_generation_going_past_the_detach_timeout() -> None:
    resumable = make(store=MemoryStore(), detach_timeout=1.0)
    launch = launched(resumable)
    found = blocks(launch.start(story(delay=0.02), {}, "/s").body)  # about 3.6 s
    assert text_of(found) == STORY


def test_a_client_failing_before_streaming_abandons_the_stream() -> None:
    resumable = make(store=MemoryStore())
    launch = launched(resumable)
    launch.abandon()
    info = resumable.store.info(launch.stream_id)
    assert info is not None and info.status == "failed"


def test_a_producer_no_thread_can_be_started_for_is_a_503(
    refuse_threads: Callable[[str], None],
) -> None:
    refuse_threads("indox-producer")
    closed = threading.Event()

    def upstream() -> Iterator[str]:
        try:
            yield from ["never", "read"]
        finally:
            closed.set()

    chunks = upstream()
    next(chunks)  # started: its close runs the finally
    resumable = make(store=MemoryStore())
    launch = launched(resumable)
    answer = launch.start(chunks, {}, "/streams/x")
    assert isinstance(answer, Reply) and answer.status == 503
    assert answer.body["error"]["type"] == "overloaded" and answer.headers["Retry-After"]
    assert closed.is_set()
    info = resumable.store.info(launch.stream_id)
    assert info is not None and info.status == "failed"


def test_heartbeats_fill_silences_and_are_not_stored() -> None:
    def slow() -> Iterator[str]:
        yield "a"
        time.sleep(0.5)
        yield "b"

    resumable = make(store=MemoryStore())
    launch = launched(resumable)
    raw = b"".join(launch.start(slow(), {"heartbeat": 0.1}, "/s").body)
    assert raw.startswith(b": stream open\n\n")
    assert raw.count(b": ping\n\n") >= 2
    replay = b"".join(
        served(resume(resumable, launch.stream_id, owner=None, last_event_id=None)).body
    )
    assert b": ping" not in replay
    assert blocks(iter([replay])) == blocks(iter([raw]))


def test_a_lapsed_lease_ends_readers_with_producer_lost() -> None:
    store = MemoryStore(lease=0.3)
    resumable = make(store=store)
    stream_id = store.create()  # a producer that appends once, then dies
    store.append(stream_id, [b"data: half\n\n"])
    found = blocks(served(resume(resumable, stream_id, owner=None, last_event_id=None)).body)
    assert found[0] == ("1:0", b"data: half")
    assert found[1][0] is None  # added by the reader: no id of its own
    assert found[1][1].startswith(b'event: error\ndata: {"type": "producer_lost"')
    assert found[2] == (None, b"event: done\ndata: [DONE]")


def test_the_ai_sdk_chat_resume_finds_the_running_stream() -> None:
    resumable = make(store=MemoryStore())
    launch = launched(resumable, "ada", chat_id="chat-9")
    body = iter(launch.start(story(delay=0.02), {"protocol": "ai-sdk"}, "/s").body)
    next(body)
    answer = served(resume_chat(resumable, "chat-9", owner="ada"))
    assert answer.headers["x-vercel-ai-ui-message-stream"] == "v1"
    replay = blocks(answer.body)
    assert replay[0][1].startswith(b'data: {"type":"start"')
    assert replay == blocks(body)  # the whole stream, from its start
    assert replay[-1][1] == b"data: [DONE]"
    for owner, chat in (("eve", "chat-9"), ("ada", "chat-8")):
        none = resume_chat(resumable, chat, owner=owner)
        assert isinstance(none, Reply) and none.status == 204
    finished = resume_chat(resumable, "chat-9", owner="ada")
    assert isinstance(finished, Reply) and finished.status == 204


# Asyncio.


def test_a_task_generation_with_async_readers() -> None:
    async def main() -> tuple[list[Any], list[Any], int]:
        resumable = make(store=MemoryStore())
        launch = await abegin(resumable, None)
        assert isinstance(launch, Launch)
        source = await AsyncDemoClient(delay=0.005).completion("x", stream=True)
        first = launch.start_task(source, {"usage": "attach"}, "/s")
        raw = [piece async for piece in first.body]
        everything = blocks(iter(raw))
        after = everything[5][0]
        again = await aresume(resumable, launch.stream_id, owner=None, last_event_id=after)
        assert isinstance(again, Served)
        rest = blocks(iter([piece async for piece in again.body]))
        return everything, rest, (await acancel(resumable, launch.stream_id, owner=None)).status

    everything, rest, status = asyncio.run(main())
    assert text_of(everything) == STORY
    assert rest == everything[6:]
    assert status == 204


def test_async_cancel_stops_a_task_generation() -> None:
    async def main() -> list[Any]:
        resumable = make(store=MemoryStore())
        launch = await abegin(resumable, None)
        assert isinstance(launch, Launch)

        async def endless() -> AsyncIterator[str]:
            while True:
                await asyncio.sleep(0.02)
                yield "tick "

        body = launch.start_task(endless(), {}, "/s").body
        pieces = [await body.__anext__(), await body.__anext__()]
        await acancel(resumable, launch.stream_id, owner=None)
        pieces += [piece async for piece in body]
        return blocks(iter(pieces))

    found = asyncio.run(main())
    assert found[-2][1].startswith(b'event: error\ndata: {"type": "cancelled"')


# Redis.


def test_an_unreachable_store_is_a_503_before_anything_starts() -> None:
    resumable = make(store=RedisStore(f"redis://127.0.0.1:{free_port()}/0", connect_timeout=0.5))
    answer = begin(resumable, None)
    assert isinstance(answer, Reply) and answer.status == 503
    assert answer.body["error"]["type"] == "store_unavailable"
    assert answer.headers["Retry-After"] == "1"
    assert asyncio.run(abegin(resumable, None)).status == 503  # type: ignore[union-attr]


def test_a_resumable_starlette_response_keeps_its_status_headers_and_background() -> None:
    from starlette.applications import Starlette
    from starlette.background import BackgroundTask
    from starlette.routing import Route
    from starlette.testclient import TestClient

    from indox_integrations.starlette import sse_response

    ran: list[str] = []
    away = RedisStore(f"redis://127.0.0.1:{free_port()}/0", connect_timeout=0.5)

    async def ask(request: Any) -> Any:
        store = away if "away" in request.query_params else MemoryStore()
        return sse_response(
            iter(["Hel", "lo"]),
            resumable=True,
            store=store,
            status_code=201,
            headers={"X-Own": "yes"},
            background=BackgroundTask(ran.append, request.url.query),
        )

    with TestClient(Starlette(routes=[Route("/ask", ask, methods=["POST"])])) as client:
        streamed = client.post("/ask")
        refused = client.post("/ask?away")

    assert streamed.status_code == 201 and streamed.headers["x-own"] == "yes"
    assert "data: Hel\n\nid: 1:1\ndata: lo\n" in streamed.text
    # The store's answer is the store's: not the stream's status nor its headers.
    assert refused.status_code == 503 and "x-own" not in refused.headers
    assert ran == [""]  # the stream's task, after the stream


def test_redis_killed_mid_stream_the_reader_here_gets_the_rest(
    redis_server: RedisServer,  # noqa: F811
    redis_url: str,  # noqa: F811
) -> None:
    store = RedisStore(redis_url)
    try:
        resumable = make(store=store)
        launch = launched(resumable)
        body = iter(launch.start(story(delay=0.01), {"usage": "attach"}, "/s").body)
        head = [next(body) for _ in range(10)]
        redis_server.kill()
        found = blocks(iter(head + list(body)))
        assert text_of(found) == STORY
        assert found[-1][1] == b"event: done\ndata: [DONE]"
        ids = [event_id for event_id, _ in found]
        assert all(ids) and len(set(ids)) == len(ids)
    finally:
        redis_server.start()
        join_producers()
        store.close()


def join_producers() -> None:
    """Until the generations of this process have finished with their store."""
    for thread in threading.enumerate():
        if thread.name == "indox-producer":
            thread.join(15)


def test_a_cancel_through_another_redis_client_reaches_the_producer(
    redis_url: str,  # noqa: F811
) -> None:
    producer_store, other_store = RedisStore(redis_url), RedisStore(redis_url)
    try:
        resumable = make(store=producer_store)
        launch = launched(resumable)
        ended = threading.Event()
        body = iter(
            launch.start(story(delay=0.05), {"on_complete": lambda r: ended.set()}, "/s").body
        )
        next(body), next(body)
        assert cancel(make(store=other_store), launch.stream_id, owner=None).status == 204
        assert ended.wait(5)
        assert b'"type": "cancelled"' in b"".join(body)
    finally:
        join_producers()
        producer_store.close()
        other_store.close()
