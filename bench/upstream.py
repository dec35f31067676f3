"""The fake LLM upstream every contender streams: sync and async, counted.

Each server process holds one :data:`TRACKER`.  It counts streams active at
once, chunks pulled, and when each stream was closed; a stream given an ``sid``
also keeps the time of every pull, so the harness can tell how many chunks were
pulled after its client left.  ``time.monotonic()`` is the system-wide
``CLOCK_MONOTONIC`` on Linux, so those times compare with the client's.

Parameters (JSON body or query string, see :class:`Params`): ``chunks``,
``size`` (characters per chunk), ``delay`` (seconds between chunks),
``silent_after`` + ``silence`` (go quiet after that many chunks), ``kind``
(``gen``: a generator, like indoxRouter's ``return_generator=True``;
``response``: an iterator whose ``close()`` interrupts a pending read, like an
HTTP response stream), ``mode`` (``sync`` or ``async`` upstream), ``sid``,
``heartbeat`` (passed to the kit, sse-starlette and the floor).  ``BENCH_HEARTBEAT``
in the environment sets the heartbeat of apps that fix it when they start
(the kit's FastAPI router, FastAPI's own SSE): see :data:`HEARTBEAT`.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import json
import os
import resource
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal

from bench import cprof

Kind = Literal["gen", "response"]
Mode = Literal["sync", "async"]

HEARTBEAT = float(os.environ.get("BENCH_HEARTBEAT") or 15.0)
"""The heartbeat of a server whose request does not say (15 s: the kit's default)."""
PING = b": ping\n\n"


def raise_fd_limit() -> tuple[int, int]:
    """Raise this process's open-file limit as far as allowed; the (soft, hard) limits."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)


@dataclass(frozen=True)
class Params:
    """What the fake upstream should produce for one request."""

    chunks: int = 20
    size: int = 8
    delay: float = 0.0
    silent_after: int | None = None
    silence: float = 0.0
    kind: Kind = "gen"
    mode: Mode = "sync"
    sid: str = ""
    heartbeat: float | None = None

    @classmethod
    def parse(cls, *sources: Mapping[str, Any]) -> Params:
        """Merge query and body mappings (later ones win) into checked parameters."""
        raw: dict[str, Any] = {}
        for source in sources:
            raw.update(source)
        try:
            silent_after = raw.get("silent_after")
            heartbeat = raw.get("heartbeat")
            params = cls(
                chunks=int(raw.get("chunks", 20)),
                size=int(raw.get("size", 8)),
                delay=float(raw.get("delay", 0.0)),
                silent_after=None if silent_after in (None, "") else int(silent_after),
                silence=float(raw.get("silence", 0.0)),
                kind=str(raw.get("kind", "gen")),  # type: ignore[arg-type]
                mode=str(raw.get("mode", "sync")),  # type: ignore[arg-type]
                sid=str(raw.get("sid", "")),
                heartbeat=None if heartbeat in (None, "") else float(heartbeat),
            )
        except (TypeError, ValueError) as exc:
            raise ValueError(f"bad upstream parameters {raw!r}: {exc}") from None
        if params.kind not in ("gen", "response") or params.mode not in ("sync", "async"):
            raise ValueError(f"expected kind gen|response and mode sync|async, got {raw!r}")
        if not (0 <= params.chunks <= 10_000_000 and 1 <= params.size <= 1 << 20):
            raise ValueError(f"expected 0 <= chunks <= 1e7 and 1 <= size <= 1 MiB, got {raw!r}")
        return params

    def wait_before(self, index: int) -> float:
        """Seconds of silence before chunk ``index``."""
        if index == 0:
            return 0.0
        if self.silent_after is not None and index == self.silent_after:
            return self.silence
        return self.delay


@dataclass
class _Record:
    started: float
    pulls: list[float] = field(default_factory=list)
    closed: float | None = None
    finished: bool = False


class GCWatch:
    """The cyclic garbage collector's pauses in this process (``gc.callbacks``): with
    thousands of streams a full collection stops every stream at once."""

    def __init__(self, keep: int = 500) -> None:
        self._started = 0.0
        self.pauses: deque[tuple[float, float, int]] = deque(maxlen=keep)
        """(start, seconds, generation) of the latest collections."""
        self.count = 0
        self.total = 0.0

    def __call__(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._started = time.monotonic()
            return
        took = time.monotonic() - self._started
        self.count += 1
        self.total += took
        self.pauses.append((self._started, took, int(info.get("generation", -1))))

    def install(self) -> None:
        if self not in gc.callbacks:
            gc.callbacks.append(self)

    def snapshot(self) -> dict[str, Any]:
        # Copied in one C call first: a collection (and this callback) can run
        # in the middle of any Python-level loop over the deque.
        pauses = list(self.pauses)
        return {
            "count": self.count,
            "total_s": self.total,
            "max_s": max((p[1] for p in pauses), default=0.0),
            "pauses": [list(p) for p in pauses],
        }


GC = GCWatch()


class Tracker:
    """Counters shared by every upstream of one server process."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        with self._lock:
            self.active = self.max_active = self.started = 0
            self.closed = self.completed = self.pulled = self.pulled_bytes = 0
            self.records: dict[str, _Record] = {}

    def enter(self, sid: str) -> _Record | None:
        with self._lock:
            self.started += 1
            self.active += 1
            self.max_active = max(self.max_active, self.active)
            if not sid:
                return None
            record = self.records[sid] = _Record(time.monotonic())
            return record

    def pull(self, record: _Record | None, size: int) -> None:
        with self._lock:
            self.pulled += 1
            self.pulled_bytes += size
            if record is not None:
                record.pulls.append(time.monotonic())

    def leave(self, record: _Record | None, finished: bool) -> None:
        with self._lock:
            self.active -= 1
            self.closed += 1
            self.completed += finished
            if record is not None:
                record.closed = time.monotonic()
                record.finished = finished

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {
                "now": time.monotonic(),
                "active": self.active,
                "max_active": self.max_active,
                "started": self.started,
                "closed": self.closed,
                "completed": self.completed,
                "pulled": self.pulled,
                "pulled_bytes": self.pulled_bytes,
                "threads": threading.active_count(),
                "nofile": resource.getrlimit(resource.RLIMIT_NOFILE)[0],
                "gc": GC.snapshot(),
                "streams": {
                    sid: {
                        "started": r.started,
                        "pulls": list(r.pulls),
                        "closed": r.closed,
                        "finished": r.finished,
                    }
                    for sid, r in self.records.items()
                },
            }


TRACKER = Tracker()


class _StatsHandler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self._reply(TRACKER.snapshot() if self.path == "/stats" else None)

    def do_POST(self) -> None:
        if self.path == "/reset":
            TRACKER.reset()
            self._reply({"ok": True})
        elif self.path in ("/profile/mark", "/profile/dump") and cprof.PROFILES is not None:
            if self.path == "/profile/mark":
                cprof.PROFILES.mark()
                self._reply({"ok": True})
            else:
                self._reply({"path": cprof.PROFILES.dump()})
        else:
            self._reply(None)

    def _reply(self, data: dict[str, Any] | None) -> None:
        body = json.dumps(data).encode()
        self.send_response(200 if data is not None else 404)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


def serve_stats(port: int) -> None:
    """Serve ``/stats`` and ``/reset`` from a thread of their own on ``port``: the
    harness reads the counters there, so a contender whose event loop a stream
    blocks (the naive FastAPI code) can still be measured."""
    server = ThreadingHTTPServer(("127.0.0.1", port), _StatsHandler)
    threading.Thread(target=server.serve_forever, name="bench-stats", daemon=True).start()


if os.environ.get("BENCH_STATS_PORT"):  # a server process the harness started
    raise_fd_limit()
    GC.install()
    if os.environ.get("BENCH_CPROFILE"):
        cprof.install(os.environ["BENCH_CPROFILE"])
    serve_stats(int(os.environ["BENCH_STATS_PORT"]))


@functools.lru_cache(maxsize=16)
def text(size: int) -> str:
    """One chunk's text; every chunk of a stream is this same string, so the
    upstream holds O(size) memory however long the stream is."""
    return ("tok " * (size // 4 + 1))[:size]


@functools.lru_cache(maxsize=16)
def encoded(size: int) -> bytes:
    """The floor's pre-encoded event for one chunk."""
    return b"data: " + text(size).encode() + b"\n\n"


def sync_chunks(params: Params) -> Iterator[str]:
    """A sync upstream of ``params.chunks`` text chunks."""
    if params.kind == "response":
        return ResponseStream(params)
    return _sync_generator(params)


def _sync_generator(params: Params) -> Iterator[str]:
    record = TRACKER.enter(params.sid)
    chunk = text(params.size)
    finished = False
    try:
        for index in range(params.chunks):
            wait = params.wait_before(index)
            if wait:
                time.sleep(wait)
            TRACKER.pull(record, params.size)
            yield chunk
        finished = True
    finally:
        TRACKER.leave(record, finished)


class ResponseStream:
    """A sync upstream shaped like an HTTP response stream: ``close()`` from any
    thread ends a pending wait at once (as closing a socket ends a blocked read)."""

    def __init__(self, params: Params) -> None:
        self._params = params
        self._chunk = text(params.size)
        self._index = 0
        self._closed = threading.Event()
        self._lock = threading.Lock()
        self._left = False
        self._record = TRACKER.enter(params.sid)

    def __iter__(self) -> ResponseStream:
        return self

    def __next__(self) -> str:
        if self._index >= self._params.chunks:
            self._leave(finished=True)
            raise StopIteration
        wait = self._params.wait_before(self._index)
        if (wait and self._closed.wait(wait)) or self._closed.is_set():
            raise StopIteration
        self._index += 1
        TRACKER.pull(self._record, self._params.size)
        return self._chunk

    def close(self) -> None:
        self._closed.set()
        self._leave(finished=False)

    def _leave(self, finished: bool) -> None:
        with self._lock:
            if self._left:
                return
            self._left = True
        TRACKER.leave(self._record, finished)


async def async_chunks(params: Params) -> AsyncIterator[str]:
    """The async twin of :func:`sync_chunks` (always an async generator)."""
    record = TRACKER.enter(params.sid)
    chunk = text(params.size)
    finished = False
    try:
        for index in range(params.chunks):
            wait = params.wait_before(index)
            if wait:
                await asyncio.sleep(wait)
            TRACKER.pull(record, params.size)
            yield chunk
        finished = True
    finally:
        TRACKER.leave(record, finished)


async def encoded_chunks(params: Params) -> AsyncIterator[bytes]:
    """The floor's upstream: async, already SSE-encoded, nothing left to do per chunk.

    Given a ``heartbeat``, it also writes a ping after each heartbeat of
    silence, with one sleep per ping: the least a heartbeat can cost."""
    record = TRACKER.enter(params.sid)
    chunk = encoded(params.size)
    heartbeat = params.heartbeat
    finished = False
    try:
        for index in range(params.chunks):
            wait = params.wait_before(index)
            while heartbeat and wait > heartbeat:
                await asyncio.sleep(heartbeat)
                wait -= heartbeat
                yield PING
            if wait:
                await asyncio.sleep(wait)
            TRACKER.pull(record, params.size)
            yield chunk
        finished = True
        yield b"data: [DONE]\n\n"
    finally:
        TRACKER.leave(record, finished)


def chunks_for(params: Params) -> Iterator[str] | AsyncIterator[str]:
    """The upstream ``params.mode`` asks for."""
    return async_chunks(params) if params.mode == "async" else sync_chunks(params)
