"""The scenarios.  Each one drives a running server and returns plain numbers;
every wait is cut at a time limit, so a contender that hangs costs a bounded time."""

from __future__ import annotations

import asyncio
import contextlib
import statistics
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import psutil

from bench.client import WIRES, EventCounter, check, make_client, now, read_stream, reset, stats
from bench.contenders import Contender
from bench.servers import Server

MiB = 1 << 20


@dataclass(frozen=True)
class Config:
    """Counts and time limits: :data:`FULL` for the published table, :data:`QUICK` to smoke-test."""

    throughput_chunks: int = 20_000
    throughput_reps: int = 3
    throughput_cut: float = 60.0
    concurrency: tuple[int, ...] = (200, 1000)
    concurrency_chunks: int = 20
    concurrency_delay: float = 0.05
    concurrency_cut: float = 60.0
    concurrency_early: float = 15.0
    """After this long, stop as soon as the projection passes twice the cut."""
    latency_streams: int = 3
    latency_chunks: int = 50
    latency_delay: float = 0.02
    disconnect_reps: int = 5
    disconnect_read_cut: float = 5.0
    disconnect_cut: float = 10.0
    disconnect_heartbeat: float = 1.0
    memory_streams: int = 1000
    memory_open_cut: float = 30.0
    memory_settle: float = 1.0
    slow_bytes: int = 50 * MiB
    slow_chunk: int = 8192
    slow_stall: float = 5.0
    slow_rcvbuf: int = 64 * 1024
    idle_streams: int = 5000
    idle_heartbeat: float = 1.0
    idle_open_cut: float = 60.0
    idle_hold: float = 10.0
    idle_connect_parallel: int = 200
    """Connections being opened at once (each until its first event)."""
    idle_close_cut: float = 15.0
    resume_reps: int = 20
    resume_chunks: int = 200
    resume_read: int = 100
    """Events read before the connection is dropped and the stream resumed."""
    resume_delay: float = 0.005
    isolate: bool = True
    scenario_limit: float = 150.0
    """A fresh server for each scenario but throughput + latency (else they share)."""


FULL = Config()
QUICK = Config(
    throughput_chunks=2_000,
    throughput_reps=1,
    throughput_cut=10.0,
    concurrency=(100,),
    concurrency_chunks=10,
    concurrency_cut=6.0,
    concurrency_early=2.0,
    latency_streams=1,
    latency_chunks=20,
    disconnect_reps=2,
    disconnect_read_cut=2.0,
    disconnect_cut=3.0,
    memory_streams=100,
    memory_open_cut=4.0,
    memory_settle=0.3,
    slow_bytes=10 * MiB,
    slow_stall=1.0,
    idle_streams=500,
    idle_open_cut=10.0,
    idle_hold=3.0,
    idle_close_cut=5.0,
    resume_reps=5,
    isolate=False,
    scenario_limit=30.0,
)

Result = dict[str, Any]


async def warm_up(server: Server, contender: Contender) -> None:
    """Run one short stream (imports, first-request caches), then zero the counters."""
    wire = WIRES[contender.protocol]
    async with make_client(server.url) as client:
        counter = wire.counter()
        await asyncio.wait_for(
            read_stream(client, wire, {"mode": contender.mode, "chunks": 5}, counter), 30.0
        )
        if counter.events != 5:
            raise RuntimeError(f"warm-up: expected 5 events, got {counter.events}")
        await reset(client)


async def throughput(server: Server, contender: Contender, cfg: Config) -> Result:
    """One stream of many chunks with no delay: chunks/s and MB/s (best of the reps)."""
    params = {"mode": contender.mode, "chunks": cfg.throughput_chunks, "size": 8}
    wire = WIRES[contender.protocol]
    best: Result | None = None
    async with make_client(server.url) as client:
        for _ in range(cfg.throughput_reps):
            counter = wire.counter()
            start = now()
            cut = False
            try:
                read = read_stream(client, wire, params, counter)
                await asyncio.wait_for(read, cfg.throughput_cut)
            except asyncio.TimeoutError:
                cut = True
            elapsed = now() - start
            run = {
                "chunks": cfg.throughput_chunks,
                "events": counter.events,
                "complete": counter.events == cfg.throughput_chunks and counter.done,
                "seconds": elapsed,
                "cut": cut,
                "chunks_per_s": counter.events / elapsed,
                "wire_mb_per_s": counter.bytes / elapsed / 1e6,
            }
            if best is None or run["chunks_per_s"] > best["chunks_per_s"]:
                best = run
            if cut:
                break
    assert best is not None
    return best


async def latency(server: Server, contender: Contender, cfg: Config) -> Result:
    """Time to the first event and gaps between events, with a steady upstream delay.

    Events that arrive in one read share a timestamp: a gap near 0 with a long
    first-event time means something buffered the stream.
    """
    params = {"mode": contender.mode, "chunks": cfg.latency_chunks, "delay": cfg.latency_delay}
    wire = WIRES[contender.protocol]
    firsts: list[float] = []
    gaps: list[float] = []
    async with make_client(server.url) as client:
        for _ in range(cfg.latency_streams):
            counter = wire.counter()
            arrivals: list[float] = []
            start = now()

            async def read(counter: EventCounter, arrivals: list[float]) -> None:
                async with wire.stream(client, params) as response:
                    check(response)
                    async for piece in response.aiter_raw():
                        arrivals.extend([now()] * counter.feed(piece))

            limit = 30.0 + cfg.latency_chunks * cfg.latency_delay
            await asyncio.wait_for(read(counter, arrivals), limit)
            if arrivals:
                firsts.append(arrivals[0] - start)
                gaps.extend(b - a for a, b in zip(arrivals, arrivals[1:], strict=False))
    gaps.sort()
    return {
        "upstream_delay_ms": cfg.latency_delay * 1000,
        "first_event_ms": statistics.median(firsts) * 1000 if firsts else None,
        "gap_p50_ms": _quantile(gaps, 0.50) * 1000 if gaps else None,
        "gap_p99_ms": _quantile(gaps, 0.99) * 1000 if gaps else None,
        "gap_max_ms": gaps[-1] * 1000 if gaps else None,
        "events": len(gaps) + len(firsts),
        "expected": cfg.latency_chunks * cfg.latency_streams,
    }


def _quantile(ordered: list[float], q: float) -> float:
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def concurrency(server: Server, contender: Contender, cfg: Config, streams: int) -> Result:
    """``streams`` slow streams at once: wall time until all are read, with a cut, and
    the server's CPU time over the same span per chunk delivered."""
    params = {
        "mode": contender.mode,
        "chunks": cfg.concurrency_chunks,
        "delay": cfg.concurrency_delay,
    }
    expected = streams * cfg.concurrency_chunks
    wire = WIRES[contender.protocol]
    counters = [wire.counter() for _ in range(streams)]
    finished: list[float] = []
    errors: list[str] = []
    harness = psutil.Process()
    async with make_client(server.url, connections=streams) as client:
        cpu_before = server.cpu_times()
        client_before = _cpu(harness)
        start = now()

        async def one(counter: EventCounter) -> None:
            try:
                await read_stream(client, wire, params, counter)
                finished.append(now())
            except Exception as exc:
                errors.append(f"{type(exc).__name__}: {exc}")

        tasks = [asyncio.create_task(one(c)) for c in counters]
        cut = False
        pending: set[asyncio.Task[None]] = set(tasks)
        while pending:
            _, pending = await asyncio.wait(pending, timeout=0.25)
            elapsed = now() - start
            received = sum(c.events for c in counters)
            projected = elapsed * expected / received if received else float("inf")
            if pending and (
                elapsed >= cfg.concurrency_cut
                or (elapsed >= cfg.concurrency_early and projected > 2 * cfg.concurrency_cut)
            ):
                cut = True
                break
        elapsed = now() - start
        received = sum(c.events for c in counters)
        for task in pending:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        # Measured before anything else asks the server for work (the stats call).
        user, system = (b - a for a, b in zip(cpu_before, server.cpu_times(), strict=True))
        cpu = user + system
        client_cpu = _cpu(harness) - client_before
        counts = await stats(client, server.stats_url, timeout=2.0)
    complete = sum(1 for c in counters if c.events == cfg.concurrency_chunks and c.done)
    wall = (max(finished) - start) if not cut and finished else elapsed
    return {
        "streams": streams,
        "chunks": cfg.concurrency_chunks,
        "delay_ms": cfg.concurrency_delay * 1000,
        "wall_s": wall,
        "cut": cut,
        "projected_s": (elapsed * expected / received if received else None) if cut else wall,
        "complete": complete,
        "events": received,
        "expected": expected,
        "errors": len(errors),
        "first_error": errors[0] if errors else None,
        "max_active": counts["max_active"] if counts else None,
        "server_cpu_s": cpu,
        "server_system_s": system,
        "cpu_us_per_chunk": cpu / received * 1e6 if received else None,
        "client_cpu_s": client_cpu,
    }


def _cpu(process: psutil.Process) -> float:
    times = process.cpu_times()
    return float(times.user + times.system)


async def disconnect(chatty: Server, silent: Server, contender: Contender, cfg: Config) -> Result:
    """Clients read 3 events and leave: when is the upstream closed, and how many
    chunks were pulled after leaving?  Chatty and silent upstreams run at once,
    each on its own server."""
    chatty_result, silent_result = await asyncio.gather(
        _disconnect(chatty, contender, cfg, "chatty"),
        _disconnect(silent, contender, cfg, "silent"),
    )
    return {"chatty": chatty_result, "silent": silent_result}


async def _disconnect(server: Server, contender: Contender, cfg: Config, variant: str) -> Result:
    params: dict[str, Any] = {"mode": contender.mode, "chunks": 400}
    if variant == "chatty":
        # A generator (indoxRouter's shape) producing a chunk every 50 ms for 20 s.
        params.update(delay=0.05, kind="gen")
    else:
        # Three chunks, then silence longer than the cut.  A sync upstream is a
        # response stream whose close() interrupts the wait, as closing an HTTP
        # response interrupts its read: only then can anyone close it early.
        silence = cfg.disconnect_read_cut + cfg.disconnect_cut + 5.0
        params.update(delay=0.02, silent_after=3, silence=silence, kind="response")
    heartbeat = None
    if contender.role == "kit" and contender.wsgi:
        heartbeat = params["heartbeat"] = cfg.disconnect_heartbeat
    left: dict[str, float] = {}
    wire = WIRES[contender.protocol]

    async with make_client(server.url, connections=cfg.disconnect_reps) as client:

        async def one(sid: str) -> None:
            counter = wire.counter()
            async with wire.stream(client, {**params, "sid": sid}) as response:
                check(response)
                async for piece in response.aiter_raw():
                    if counter.feed(piece) and counter.events >= 3:
                        left[sid] = now()
                        break

        sids = [f"{variant}-{i}" for i in range(cfg.disconnect_reps)]
        await asyncio.gather(
            *(_bounded(one(sid), cfg.disconnect_read_cut) for sid in sids), return_exceptions=True
        )
        counts: dict[str, Any] | None = None
        if left:
            deadline = max(left.values()) + cfg.disconnect_cut
            while now() < deadline:
                counts = await stats(client, server.stats_url, timeout=1.0) or counts
                records = counts["streams"] if counts else {}
                if all(records.get(sid, {}).get("closed") for sid in left):
                    break
                await asyncio.sleep(0.05)
        counts = await stats(client, server.stats_url, timeout=2.0) or counts
    records = counts["streams"] if counts else {}
    close_ms: list[float | None] = []
    pulled_after: list[int] = []
    for sid, t_left in left.items():
        record = records.get(sid)
        if record is None:
            continue
        closed = record.get("closed")
        in_time = closed is not None and closed - t_left <= cfg.disconnect_cut
        close_ms.append(max(0.0, closed - t_left) * 1000 if in_time else None)
        pulled_after.append(sum(1 for t in record["pulls"] if t > t_left))
    never = sum(1 for ms in close_ms if ms is None)
    closed_ms = sorted(ms for ms in close_ms if ms is not None)
    return {
        "streams": cfg.disconnect_reps,
        "measured": len(left),
        "answered": len(close_ms),
        "read_cut_s": cfg.disconnect_read_cut,
        "cut_s": cfg.disconnect_cut,
        "heartbeat_s": heartbeat,
        # A stream not closed within the cut counts as slower than every closed one.
        "close_median_ms": _median_or_never(close_ms),
        "close_max_ms": None if never or not closed_ms else closed_ms[-1],
        "not_closed": never,
        "pulled_after_median": statistics.median(pulled_after) if pulled_after else None,
        "pulled_after_max": max(pulled_after) if pulled_after else None,
    }


def _median_or_never(values: list[float | None]) -> float | None:
    if not values:
        return None
    ordered = sorted(values, key=lambda v: float("inf") if v is None else v)
    return ordered[(len(ordered) - 1) // 2]


async def _bounded(awaitable: Awaitable[None], seconds: float) -> None:
    with contextlib.suppress(asyncio.TimeoutError):
        await asyncio.wait_for(awaitable, seconds)


async def _sample_rss(server: Server, count: int = 3, gap: float = 0.3) -> int:
    samples = []
    for i in range(count):
        if i:
            await asyncio.sleep(gap)
        samples.append(server.rss())
    return int(statistics.median(samples))


async def memory(server: Server, contender: Contender, cfg: Config) -> Result:
    """Server RSS per open stream, with many slow streams held open."""
    n = cfg.memory_streams
    params = {"mode": contender.mode, "chunks": 100_000, "delay": 1.0}
    wire = WIRES[contender.protocol]
    before = await _sample_rss(server)
    opened = 0
    all_open = asyncio.Event()

    async with make_client(server.url, connections=n) as client:

        async def hold() -> None:
            nonlocal opened
            counter = wire.counter()
            async with wire.stream(client, params) as response:
                check(response)
                first = True
                async for piece in response.aiter_raw():
                    if counter.feed(piece) and first:
                        first = False
                        opened += 1
                        if opened == n:
                            all_open.set()

        tasks = [asyncio.create_task(hold()) for _ in range(n)]
        start = now()
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(all_open.wait(), cfg.memory_open_cut)
        open_s = now() - start
        await asyncio.sleep(cfg.memory_settle)
        held = await _sample_rss(server)
        counts = await stats(client, server.stats_url, timeout=2.0)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    return {
        "streams": n,
        "open": opened,
        "open_s": open_s,
        "rss_before_mb": before / MiB,
        "rss_held_mb": held / MiB,
        "kib_per_stream": (held - before) / opened / 1024 if opened else None,
        "server_threads": counts["threads"] if counts else None,
        "upstreams_active": counts["active"] if counts else None,
    }


async def slow_reader(server: Server, contender: Contender, cfg: Config) -> Result:
    """A client stops reading while a fast upstream could produce ``slow_bytes``:
    peak server RSS growth, and how far the upstream got ahead."""
    chunks = cfg.slow_bytes // cfg.slow_chunk
    params = {"mode": contender.mode, "chunks": chunks, "size": cfg.slow_chunk}
    before = await _sample_rss(server)
    peak = before
    sampling = True

    async def sample() -> None:
        nonlocal peak
        while sampling:
            peak = max(peak, server.rss())
            await asyncio.sleep(0.05)

    sampler = asyncio.create_task(sample())
    counts = None
    try:
        async with (
            make_client(server.url, rcvbuf=cfg.slow_rcvbuf) as reader,
            make_client(server.url) as watcher,
            WIRES[contender.protocol].stream(reader, params) as response,
        ):
            check(response)
            await asyncio.sleep(cfg.slow_stall)
            counts = await stats(watcher, server.stats_url, timeout=2.0)
    finally:
        sampling = False
        await sampler
    return {
        "upstream_mb": chunks * cfg.slow_chunk / MiB,
        "chunk_bytes": cfg.slow_chunk,
        "stall_s": cfg.slow_stall,
        "rss_before_mb": before / MiB,
        "peak_growth_mb": (peak - before) / MiB,
        "pulled_mb": counts["pulled_bytes"] / MiB if counts else None,
    }


Scenario = Callable[[Server, Contender, Config], Awaitable[Result]]


async def resume(server: Server, contender: Contender, cfg: Config) -> Result:
    """Resumable contenders: a stream read for ``resume_read`` events and dropped, then
    resumed by ``GET`` with ``Last-Event-ID``.  The latency is from sending the GET to
    its first replayed event; the replay must be exactly the rest of the stream."""
    params = {"mode": contender.mode, "chunks": cfg.resume_chunks, "delay": cfg.resume_delay}
    wire = WIRES[contender.protocol]
    latencies: list[float] = []
    exact = 0
    async with make_client(server.url) as client:
        for _ in range(cfg.resume_reps):
            seen, last_id, url = 0, b"", ""
            async with wire.stream(client, params) as response:
                check(response)
                url = response.headers["indox-resume-url"]
                buffer = b""
                async for piece in response.aiter_raw():
                    *blocks, buffer = (buffer + piece).split(b"\n\n")
                    for block in blocks:
                        event = block.startswith(b"id: ") and b"\ndata:" in block
                        if event and not block.endswith(b"[DONE]"):
                            seen += 1
                            last_id = block[4 : block.index(b"\n")]
                    if seen >= cfg.resume_read:
                        break
            counter = wire.counter()
            first: float | None = None
            start = now()
            headers = {"Last-Event-ID": last_id.decode()}
            async with client.stream("GET", url, headers=headers) as response:
                check(response)
                async for piece in response.aiter_raw():
                    if counter.feed(piece) and first is None:
                        first = now() - start
            if first is not None:
                latencies.append(first)
            exact += seen + counter.events == cfg.resume_chunks and counter.done
    latencies.sort()
    return {
        "reps": cfg.resume_reps,
        "exact": exact,
        "resume_ms_p50": _quantile(latencies, 0.50) * 1000 if latencies else None,
        "resume_ms_p90": _quantile(latencies, 0.90) * 1000 if latencies else None,
        "resume_ms_max": latencies[-1] * 1000 if latencies else None,
    }
