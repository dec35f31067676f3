"""The idle scenario: thousands of open streams that only heartbeat, on one uvicorn process.

The streams are held by raw asyncio sockets (one :class:`IdleStream` protocol
per connection, no HTTP client library), so the load generator stays cheap at
5,000 connections; its own CPU, memory and event-loop lag are reported next to
the server's, so a reader can tell whose delay a late heartbeat is.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import time
from typing import TYPE_CHECKING, Any

import httpx
import psutil

from bench.client import WIRES, Wire, stats

if TYPE_CHECKING:
    from bench.contenders import Contender
    from bench.scenarios import Config, Result
    from bench.servers import Server

MiB = 1 << 20
_PING = b": ping"
_DATA = b"data:"


class IdleStream(asyncio.Protocol):
    """One held stream: sends its request, notes the first event and every ping.

    Pings and the first event (``event``: the wire's chunk marker, or ``data:``)
    are found in the raw bytes (chunk-size lines of the chunked body cannot
    contain them); one split across two reads is found through the tail kept
    from the previous read.
    """

    __slots__ = (
        "_request", "_event", "_head", "_tail", "_before", "_opened", "status", "pings", "lost",
        "bytes",
    )  # fmt: skip

    def __init__(self, request: bytes, event: bytes, opened: asyncio.Future[float]) -> None:
        self._request = request
        self._event = event
        self._head: bytearray | None = bytearray()
        self._tail = b""
        self._before = b""  # until the first event: as much as could hold its start
        self._opened = opened
        self.status: int | None = None
        self.pings: list[float] = []
        self.lost: float | None = None
        self.bytes = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport.write(self._request)  # type: ignore[attr-defined]

    def data_received(self, data: bytes) -> None:
        at = time.monotonic()
        self.bytes += len(data)
        if self._head is not None:
            self._head += data
            end = self._head.find(b"\r\n\r\n")
            if end < 0:
                return
            head, data = bytes(self._head[:end]), bytes(self._head[end + 4 :])
            self._head = None
            try:
                self.status = int(head.split(b" ", 2)[1])
            except (IndexError, ValueError):
                self.status = -1
            if self.status != 200 and not self._opened.done():
                self._opened.set_exception(RuntimeError(f"expected 200, got {head[:80]!r}"))
        if not self._opened.done():
            before = self._before + data
            if self._event in before:
                self._opened.set_result(at)
            self._before = before[-(len(self._event) - 1) :]
        buf = self._tail + data
        count = buf.count(_PING)
        if count:
            self.pings.extend([at] * count)
        self._tail = buf[-(len(_PING) - 1) :]

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = time.monotonic()
        if not self._opened.done():
            self._opened.set_exception(ConnectionError(f"closed before the first event: {exc}"))


def _request(host: str, port: int, wire: Wire, params: dict[str, Any]) -> bytes:
    body = json.dumps(wire.body(params)).encode()
    head = (
        f"POST {wire.path} HTTP/1.1\r\nHost: {host}:{port}\r\n"
        "Content-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nAccept: text/event-stream\r\n\r\n"
    )
    return head.encode() + body


def _cpu(process: psutil.Process) -> float:
    times = process.cpu_times()
    return float(times.user + times.system)


def _q(ordered: list[float], q: float) -> float | None:
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else None


def _ms(value: float | None) -> float | None:
    return None if value is None else value * 1000


async def idle(server: Server, contender: Contender, cfg: Config) -> Result:
    """``idle_streams`` streams held open on a silent upstream: server memory per
    stream, heartbeat lateness, and what the load generator spent meanwhile."""
    n, beat = cfg.idle_streams, cfg.idle_heartbeat
    # One chunk at once (the stream is open), then silence far past the scenario:
    # a sync upstream is a response stream whose close() ends the wait.
    params = {
        "mode": contender.mode,
        "chunks": 2,
        "silent_after": 1,
        "silence": 3600.0,
        "kind": "response",
        "heartbeat": beat,
    }
    wire = WIRES[contender.protocol]
    request = _request("127.0.0.1", server.port, wire, params)
    event = wire.marker or _DATA
    loop = asyncio.get_running_loop()
    harness = psutil.Process()
    rss_before = server.rss()
    client_rss_before = harness.memory_info().rss
    streams: list[IdleStream] = []
    transports: list[asyncio.BaseTransport] = []
    errors: list[str] = []
    gate = asyncio.Semaphore(cfg.idle_connect_parallel)

    async def open_one() -> None:
        opened: asyncio.Future[float] = loop.create_future()
        async with gate:
            try:
                transport, stream = await loop.create_connection(
                    lambda: IdleStream(request, event, opened), "127.0.0.1", server.port
                )
                transports.append(transport)
                streams.append(stream)
                await opened
            except Exception as exc:
                errors.append(f"{type(exc).__name__}: {exc}")

    start = time.monotonic()
    openers = [asyncio.create_task(open_one()) for _ in range(n)]
    _, pending = await asyncio.wait(openers, timeout=cfg.idle_open_cut)
    open_s = time.monotonic() - start
    for task in pending:
        task.cancel()
    await asyncio.gather(*openers, return_exceptions=True)
    opened = [s for s in streams if s.status == 200 and s.lost is None and s.bytes]

    lags: list[float] = []
    sampling = True

    async def probe() -> None:
        # The harness's own event-loop lag: how late a 10 ms sleep wakes.
        while sampling:
            before = time.monotonic()
            await asyncio.sleep(0.01)
            lags.append(time.monotonic() - before - 0.01)

    result: Result
    window_start = window_end = 0.0
    try:
        # Every stream's heartbeat cycle is under way before the window opens.
        await asyncio.sleep(beat + 0.5)
        prober = asyncio.create_task(probe())
        rss_samples, client_samples, threads = [], [], server.threads()
        window_start = time.monotonic()
        cpu_before, client_cpu_before = server.cpu_seconds(), _cpu(harness)
        for _ in range(3):
            await asyncio.sleep(cfg.idle_hold / 3)
            rss_samples.append(server.rss())
            client_samples.append(harness.memory_info().rss)
        cpu = server.cpu_seconds() - cpu_before
        client_cpu = _cpu(harness) - client_cpu_before
        window_end = time.monotonic()
        sampling = False
        await prober
        # Before the clients leave: 5,000 disconnects keep the server busy for a while.
        gc_pauses = await _gc_pauses(server, window_start, window_end)
        held = len(opened)
        late: list[float] = []
        beats = 0
        without = 0
        for stream in opened:
            times = stream.pings
            inside = [t for t in times if window_start <= t < window_end]
            beats += len(inside)
            without += not inside
            late += [
                b - a - beat
                for a, b in zip(times, times[1:], strict=False)
                if window_start <= b < window_end
            ]
        late.sort()
        lags.sort()
        window = window_end - window_start
        rss_held = statistics.median(rss_samples)
        result = {
            "streams": n,
            "heartbeat_s": beat,
            "hold_s": window,
            "open": held,
            "open_s": open_s,
            "open_cut": bool(pending),
            "errors": len(errors),
            "first_error": errors[0] if errors else None,
            "rss_before_mb": rss_before / MiB,
            "rss_held_mb": rss_held / MiB,
            "kib_per_stream": (rss_held - rss_before) / held / 1024 if held else None,
            "server_threads": threads,
            "heartbeats": beats,
            "expected": int(held * window / beat),
            "streams_without_heartbeat": without,
            "late_p50_ms": _ms(_q(late, 0.50)),
            "late_p99_ms": _ms(_q(late, 0.99)),
            "late_max_ms": _ms(late[-1] if late else None),
            "server_cpu_pct": cpu / window * 100,
            "server_cpu_us_per_heartbeat": cpu / beats * 1e6 if beats else None,
            "client_cpu_pct": client_cpu / window * 100,
            "client_kib_per_stream": (
                (statistics.median(client_samples) - client_rss_before) / held / 1024
                if held
                else None
            ),
            "client_lag_p99_ms": _ms(_q(lags, 0.99)),
            "client_lag_max_ms": _ms(lags[-1] if lags else None),
            **gc_pauses,
        }
    finally:
        sampling = False
        for transport in transports:
            transport.close()
    result.update(await _closed(server, cfg))
    return result


async def _gc_pauses(server: Server, window_start: float, window_end: float) -> Result:
    """The server's garbage-collector pauses that began inside the window."""
    async with httpx.AsyncClient() as client:
        counts = await stats(client, server.stats_url, timeout=10.0)
    if counts is None:
        return {"gc_pauses": None}
    pauses = [p for p in counts["gc"]["pauses"] if window_start <= p[0] < window_end]
    return {
        "gc_pauses": len(pauses),
        "gc_pause_total_ms": sum(p[1] for p in pauses) * 1000,
        "gc_pause_max_ms": max((p[1] for p in pauses), default=0.0) * 1000,
        "gc_full_collections": sum(1 for p in pauses if p[2] == 2),
    }


async def _closed(server: Server, cfg: Config) -> Result:
    """How long until the server closed every upstream after the clients left."""
    start = time.monotonic()
    active = None
    out: Result = {"closed_s": None}
    async with httpx.AsyncClient() as client:
        while time.monotonic() - start < cfg.idle_close_cut:
            counts = await stats(client, server.stats_url, timeout=2.0)
            active = counts["active"] if counts else active
            if active == 0:
                out["closed_s"] = time.monotonic() - start
                break
            await asyncio.sleep(0.1)
    out["upstreams_left"] = active
    return out
