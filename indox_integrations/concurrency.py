"""Pull an upstream iterator ahead of its consumer, and close it exactly once.

``ThreadFeed`` runs a sync iterator in a thread of its own: one per stream, not a
slot in a bounded pool (anyio's default limiter holds 40), so a hundred slow
upstreams all progress at once and none blocks the event loop; a finished
stream's thread waits a while for the next one.  ``TaskFeed`` does
the same for an async iterator with an asyncio task.  Both buffer a bounded
number of chunks (back-pressure) and hand over everything that is ready in one
batch, so a fast upstream costs one wake-up per batch rather than per chunk.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import inspect
import logging
import os
import threading
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

__all__ = [
    "FeedTimeout",
    "TaskFeed",
    "ThreadFeed",
    "close_async",
    "close_sync",
    "keep_running",
    "run_in_thread",
]

logger = logging.getLogger("indox_integrations")

MAX_BUFFERED = 64
MAX_BUFFERED_BYTES = 64 * 1024
"""A feed stops pulling at this many chunks, or this many characters or bytes."""

# Tasks hold no reference to themselves: keep each feed's task alive until it ends.
_tasks: set[asyncio.Task[Any]] = set()


def keep_running(task: asyncio.Task[Any]) -> asyncio.Task[Any]:
    """Hold a reference to ``task`` until it ends."""
    _tasks.add(task)
    task.add_done_callback(_tasks.discard)
    return task


class FeedTimeout(Exception):
    """Nothing arrived from the upstream within the wait."""


def close_sync(*objects: Any) -> None:
    """Call ``close()`` once on each distinct object that has one."""
    seen: list[int] = []
    for obj in objects:
        close = getattr(obj, "close", None)
        if id(obj) in seen or not callable(close):
            continue
        seen.append(id(obj))
        try:
            close()
        except Exception:
            logger.warning("closing the upstream failed", exc_info=True)


async def close_async(*objects: Any) -> None:
    """Call ``aclose()`` (or ``close()``, awaited if needed) once on each object."""
    seen: list[int] = []
    for obj in objects:
        close = getattr(obj, "aclose", None) or getattr(obj, "close", None)
        if id(obj) in seen or not callable(close):
            continue
        seen.append(id(obj))
        try:
            result = close()
            if inspect.isawaitable(result):
                await result
        except Exception:
            logger.warning("closing the upstream failed", exc_info=True)


class _Batches:
    """The consumer side shared by both feeds: a buffer and a way to wait on it."""

    def __init__(self) -> None:
        self._items: deque[Any] = deque()
        self._buffered = 0
        self._lock = threading.Lock()
        self._ready = threading.Condition(self._lock)
        self.done = False
        self.error: BaseException | None = None
        self._nudged = False
        self._sleepers = 0  # threads waiting on _ready: nobody to notify otherwise
        self.suspended = False
        """Set when a wait suspended the consumer (so the loop ran others meanwhile)."""
        self._waiter: asyncio.Future[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def _take(self) -> list[Any]:
        items = list(self._items)
        self._items.clear()
        self._buffered = 0
        if self._sleepers:
            self._ready.notify_all()
        return items

    def _full(self) -> bool:
        return len(self._items) >= MAX_BUFFERED or self._buffered >= MAX_BUFFERED_BYTES

    def _add(self, item: Any) -> None:
        self._items.append(item)
        if isinstance(item, (str, bytes, bytearray)):
            self._buffered += len(item)

    def _wake(self) -> None:
        """Wake an async consumer; call with the lock held."""
        if self._sleepers:
            self._ready.notify_all()
        waiter, self._waiter = self._waiter, None
        if waiter is not None and self._loop is not None:
            # A closed loop (server shut down) has nobody left to wake.
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(_resolve, waiter)

    def nudge(self) -> None:
        """End the current wait early (with :class:`FeedTimeout`): deadlines changed."""
        with self._lock:
            self._nudged = True
            self._wake()

    def _sleep(self, predicate: Callable[[], object], timeout: float | None = None) -> None:
        """Wait on ``_ready`` (with the lock held) until ``predicate`` holds."""
        self._sleepers += 1
        try:
            self._ready.wait_for(predicate, timeout)
        finally:
            self._sleepers -= 1

    def get(self, timeout: float | None) -> list[Any]:
        """Wait (blocking) for the next batch; ``[]`` once the upstream is done."""
        with self._lock:
            if not self._items and not self.done:
                self._sleep(lambda: self._items or self.done or self._nudged, timeout)
            self._nudged = False
            if not self._items and not self.done:
                raise FeedTimeout
            return self._take()

    async def aget(self, timeout: float | None) -> list[Any]:
        """Wait (async) for the next batch; ``[]`` once the upstream is done."""
        with self._lock:
            if self._items or self.done:
                return self._take()
            if self._nudged:
                self._nudged = False
                raise FeedTimeout
            self._loop = asyncio.get_running_loop()
            waiter = self._waiter = self._loop.create_future()
        # A timer resolves the same future: one handle per wait, and no
        # wait_for(), which before Python 3.12 can swallow a cancellation that
        # lands with the result (CPython gh-86296); Django's ASGI handler
        # cancels only once when the client leaves.
        timer = None if timeout is None else self._loop.call_later(timeout, _resolve, waiter)
        try:
            self.suspended = True
            await waiter
        finally:
            if timer is not None:
                timer.cancel()
            with self._lock:
                if self._waiter is waiter:
                    self._waiter = None
        with self._lock:
            self._nudged = False
            if not self._items and not self.done:
                raise FeedTimeout
            return self._take()


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


IDLE_SECONDS = 20.0
"""How long a sync upstream's thread, once done, waits for the next upstream before it ends."""
IDLE_NAME = "indox-idle"


class _Workers:
    """Threads for sync upstreams, one per running upstream, reused; never a bounded pool.

    ``Thread.start()`` waits until the new thread runs, and a new thread must
    first win the GIL from every thread already busy: with a thousand open
    streams, one start can hold the event loop's thread for seconds, and with
    it every stream. So the caller only queues the job: an idle worker takes
    it, or a spawner thread starts a new one.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._job_ready = threading.Condition(self._lock)
        self._spawn_wanted = threading.Condition(self._lock)
        self._jobs: deque[tuple[Callable[[], object], str]] = deque()
        self._waiting = 0  # workers waiting for a job
        self._spawning = 0  # workers asked for, not yet waiting
        self._to_start = 0  # of those, the ones the spawner has yet to start
        self._spawner: threading.Thread | None = None

    def run(self, job: Callable[[], object], name: str) -> None:
        """Run ``job`` in a thread of its own (named ``name``), never waiting for one to start."""
        spawner = None
        with self._lock:
            self._jobs.append((job, name))
            if len(self._jobs) > self._waiting + self._spawning:
                self._spawning += 1
                self._to_start += 1
                self._spawn_wanted.notify()
                if self._spawner is None:
                    spawner = self._spawner = threading.Thread(
                        target=self._spawn, name="indox-spawner", daemon=True
                    )
            self._job_ready.notify()
        if spawner is not None:  # once per process
            spawner.start()

    def _spawn(self) -> None:
        while True:
            with self._lock:
                self._spawn_wanted.wait_for(lambda: self._to_start > 0)
                count, self._to_start = self._to_start, 0
            for _ in range(count):
                threading.Thread(target=self._work, name=IDLE_NAME, daemon=True).start()

    def _work(self) -> None:
        thread = threading.current_thread()
        spawned = True
        while True:
            with self._lock:
                if spawned:
                    self._spawning -= 1
                    spawned = False
                self._waiting += 1
                found = self._job_ready.wait_for(lambda: self._jobs, IDLE_SECONDS)
                self._waiting -= 1
                if not found:
                    return
                job, name = self._jobs.popleft()
            thread.name = name
            try:
                job()
            except BaseException:  # a job handles its own errors; the worker must live on
                logger.exception("%s failed", name)
            thread.name = IDLE_NAME


_workers = _Workers()


def run_in_thread(job: Callable[[], object], name: str) -> None:
    """Run ``job`` in a thread of its own, named ``name`` while it runs; safe on the event loop.

    The thread is one of the kit's reusable threads, never a slot in a
    bounded pool; the caller never waits for a thread to start.
    """
    _workers.run(job, name)


def _forked() -> None:
    # A forked child (a gunicorn worker after a preloaded app) has none of the
    # parent's threads: start from nothing.
    global _workers
    _workers = _Workers()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forked)


class ThreadFeed(_Batches):
    """Iterate a sync iterator in a dedicated thread, closing it from that thread.

    A generator cannot be closed from another thread while it runs, so
    ``stop()`` only asks: the thread closes the upstream as soon as its current
    ``next()`` returns, and pulls nothing more.  Objects that are not
    generators but have ``close()`` (HTTP response streams) are closed at once,
    which also interrupts a read that is waiting on the network.
    """

    def __init__(self, source: Any) -> None:
        super().__init__()
        self._source = source
        self._iterator: Iterator[Any] = iter(source)
        self._stopping = False
        self._closed = False
        self.closed = threading.Event()
        self._context = contextvars.copy_context()
        self._started = False

    def start(self) -> None:
        self._started = True
        run_in_thread(functools.partial(self._context.run, self._run), "indox-upstream")

    def _run(self) -> None:
        try:
            while True:
                with self._lock:
                    self._sleep(lambda: not self._full() or self._stopping)
                    if self._stopping:
                        return
                try:
                    item = next(self._iterator)
                except StopIteration:
                    return
                except BaseException as exc:
                    self.error = exc
                    return
                with self._lock:
                    if self._stopping:
                        return
                    self._add(item)
                    self._wake()
        finally:
            self._close()
            with self._lock:
                self.done = True
                self._wake()

    def _close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
        close_sync(self._iterator, self._source)
        self.closed.set()

    def stop(self) -> None:
        """Pull nothing more; the upstream is closed as soon as it can be."""
        with self._lock:
            self._stopping = True
            self._ready.notify_all()
            if (
                self._closed
                or not self._started
                or self.done
                or inspect.isgenerator(self._source)
                or not callable(getattr(self._source, "close", None))
            ):
                return
            self._closed = True
        try:
            self._source.close()
        except ValueError:
            # Its own code is running in our thread: that thread closes it next.
            with self._lock:
                self._closed = False
            return
        except Exception:
            logger.warning("closing the upstream failed", exc_info=True)
        self.closed.set()


class TaskFeed(_Batches):
    """Iterate an async iterator in an asyncio task of its own."""

    def __init__(self, source: Any) -> None:
        super().__init__()
        self._source = source
        self._iterator: AsyncIterator[Any] = source.__aiter__()
        self._space: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self.closed = asyncio.Event()

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._space = asyncio.Event()
        self._task = keep_running(self._loop.create_task(self._run()))

    def _take(self) -> list[Any]:
        if self._space is not None:
            self._space.set()
        return super()._take()

    async def _run(self) -> None:
        assert self._space is not None
        try:
            while True:
                while self._full():
                    self._space.clear()
                    await self._space.wait()
                try:
                    item = await self._iterator.__anext__()
                except StopAsyncIteration:
                    return
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    self.error = exc
                    return
                with self._lock:
                    self._add(item)
                    waiter, self._waiter = self._waiter, None
                if waiter is not None:
                    _resolve(waiter)
        finally:
            await close_async(self._iterator, self._source)
            self.closed.set()
            with self._lock:
                self.done = True
                waiter, self._waiter = self._waiter, None
            if waiter is not None:
                _resolve(waiter)

    def stop(self) -> None:
        """Cancel the task; the upstream is closed in its ``finally``. Safe from any thread."""
        task, loop = self._task, self._loop
        if task is None or loop is None or task.done():
            return
        try:
            on_loop = asyncio.get_running_loop() is loop
        except RuntimeError:
            on_loop = False
        if on_loop:
            task.cancel()
        else:
            # Django's ASGI handler calls close() via sync_to_async, off the loop's thread.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(task.cancel)
