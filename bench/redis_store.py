"""Producers appending to Redis: ``RedisStore`` against a pipeline per call.

    python -m bench.redis_store [--producers 1000] [--threads 300] [--appends 20] [--gap 0.05]

Each producer appends one block per step, ``gap`` seconds apart, and checks for a
cancel every fourth step, as the kit's resumable producers do: tasks of one event
loop (ASGI), then threads (WSGI).  *RedisStore* is the kit's store (an append is one
script; calls made while another is on its way share a pipeline).  *a pipeline per
call* does the same work the plain way: each append a ``MULTI`` of the existence
check, ``XADD``, the lease and the TTLs; each cancel check an ``EXISTS`` of its own.
Both run in this process against a private ``redis-server``, one after the other,
each also with a single producer and no gap (one stream's speed).  CPU is this
process's, per append.
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any

import redis
import redis.asyncio as redis_asyncio

from bench.apps.kit_resumable import private_redis
from indox_integrations.stores import RedisStore

Append = Callable[[str, int], Awaitable[Any]]
Cancelled = Callable[[str], Awaitable[Any]]


def cpu_seconds() -> float:
    """This process's CPU time so far, user and system."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def queue_append(pipe: Any, name: str, seq: int) -> None:
    """An append's commands, as ``RedisStore``'s script runs them, into a ``MULTI``."""
    pipe.exists(f"{name}:meta")
    pipe.xadd(f"{name}:events", {"0": b"data: tok\n\n"}, id=f"{seq}-0", maxlen=10_000)
    pipe.set(f"{name}:lease", 1, px=8000)
    pipe.pexpire(f"{name}:meta", 3_600_000)
    pipe.pexpire(f"{name}:events", 3_600_000)


class PipelinePerCall:
    """The same keys and commands as ``RedisStore``, one round trip per call."""

    def __init__(self, url: str) -> None:
        self.client = redis_asyncio.Redis.from_url(url, protocol=2, max_connections=10_000)

    async def create(self, name: str) -> str:
        await self.client.hset(f"{name}:meta", "status", "running")
        return name

    async def append(self, name: str, seq: int) -> Any:
        async with self.client.pipeline(transaction=True) as pipe:
            queue_append(pipe, name, seq)
            return await pipe.execute()

    async def cancelled(self, name: str) -> bool:
        return bool(await self.client.exists(f"{name}:cancel"))


class BlockingPipelinePerCall:
    """:class:`PipelinePerCall` for threads."""

    def __init__(self, url: str) -> None:
        self.client = redis.Redis.from_url(url, protocol=2, max_connections=10_000)

    def create(self, name: str) -> str:
        self.client.hset(f"{name}:meta", "status", "running")
        return name

    def append(self, name: str, seq: int) -> Any:
        with self.client.pipeline(transaction=True) as pipe:
            queue_append(pipe, name, seq)
            return pipe.execute()

    def cancelled(self, name: str) -> bool:
        return bool(self.client.exists(f"{name}:cancel"))


def measure_threads(
    kind: str, url: str, producers: int, steps: int, gap: float
) -> tuple[float, float]:
    """:func:`measure` with a thread per producer and the blocking clients."""
    append: Callable[[str, int], Any]
    cancelled: Callable[[str], Any]
    if kind == "kit":
        store = RedisStore(url)
        streams = [store.create() for _ in range(producers)]
        append, cancelled = (lambda s, seq: store.append(s, [b"data: tok\n\n"])), store.cancelled
    else:
        plain = BlockingPipelinePerCall(url)
        streams = [
            plain.create(f"bench:t{kind}:{time.monotonic_ns()}:{n}") for n in range(producers)
        ]
        append, cancelled = plain.append, plain.cancelled

    def produce_blocking(stream: str) -> None:
        for step in range(steps):
            append(stream, step + 1)
            if step % 4 == 0:
                cancelled(stream)
            time.sleep(gap)

    threads = [threading.Thread(target=produce_blocking, args=(s,)) for s in streams]
    cpu, started = cpu_seconds(), time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall, cpu = time.monotonic() - started, cpu_seconds() - cpu
    (store if kind == "kit" else plain.client).close()
    return wall, cpu / (producers * steps) * 1e6


async def produce(
    stream: str, append: Append, cancelled: Cancelled, steps: int, gap: float
) -> None:
    for step in range(steps):
        await append(stream, step + 1)
        if step % 4 == 0:
            await cancelled(stream)
        await asyncio.sleep(gap)


async def measure(
    kind: str, url: str, producers: int, steps: int, gap: float
) -> tuple[float, float]:
    """Wall seconds and CPU µs per append for ``producers`` producers of ``kind``."""
    append: Append
    cancelled: Cancelled
    if kind == "kit":
        store = RedisStore(url)
        streams = [await store.acreate() for _ in range(producers)]

        async def kit_append(stream: str, seq: int) -> Any:
            return await store.aappend(stream, [b"data: tok\n\n"])

        append, cancelled = kit_append, store.acancelled
    else:
        plain = PipelinePerCall(url)
        streams = [
            await plain.create(f"bench:{kind}:{time.monotonic_ns()}:{n}") for n in range(producers)
        ]
        append, cancelled = plain.append, plain.cancelled
    cpu, started = cpu_seconds(), time.monotonic()
    await asyncio.gather(*(produce(s, append, cancelled, steps, gap) for s in streams))
    wall, cpu = time.monotonic() - started, cpu_seconds() - cpu
    if kind == "kit":
        await store.aclose()
    else:
        await plain.client.aclose()
    return wall, cpu / (producers * steps) * 1e6


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--producers", type=int, default=1000, help="tasks on one loop")
    parser.add_argument("--threads", type=int, default=300, help="threads (the blocking half)")
    parser.add_argument("--appends", type=int, default=20)
    parser.add_argument("--gap", type=float, default=0.05)
    args = parser.parse_args()
    url = private_redis()
    print("| producers | store | wall | CPU per append | vs a pipeline per call (wall / CPU) |")
    print("| --- | --- | --- | --- | --- |")
    runs: list[tuple[str, int, int, float]] = [
        ("tasks", args.producers, args.appends, args.gap),
        ("task", 1, 5000, 0.0),
        ("threads", args.threads, args.appends, args.gap),
        ("thread", 1, 5000, 0.0),
    ]
    for what, producers, steps, gap in runs:
        if what.startswith("task"):
            plain = asyncio.run(measure("plain", url, producers, steps, gap))
            kit = asyncio.run(measure("kit", url, producers, steps, gap))
        else:
            plain = measure_threads("plain", url, producers, steps, gap)
            kit = measure_threads("kit", url, producers, steps, gap)
        label = f"{producers:,} {what} x {steps:,}, {gap * 1000:g} ms apart"
        print(f"| {label} | a pipeline per call | {plain[0]:.2f} s | {plain[1]:.0f} µs | |")
        print(
            f"| {label} | RedisStore | {kit[0]:.2f} s | {kit[1]:.0f} µs "
            f"| {kit[0] / plain[0]:.2f}x / {kit[1] / plain[1]:.2f}x |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
