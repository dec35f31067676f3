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
import math
import os
import threading
import weakref
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

__all__ = [
    "FeedTimeout",
    "OutOfThreads",
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


class OutOfThreads(RuntimeError):
    """No thread could be started for a sync upstream: the process is at its limit."""


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


class _LoopBell:
    """Wakes futures of one event loop from other threads, many with one loop wake-up.

    ``call_soon_threadsafe`` per chunk per stream costs a self-pipe write and a
    loop iteration each; a thousand sync feeds instead share one pending call
    that resolves every future that became ready since the loop last ran it.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._lock = threading.Lock()
        self._ready: list[asyncio.Future[None]] = []

    def ring(self, future: asyncio.Future[None]) -> None:
        with self._lock:
            self._ready.append(future)
            if len(self._ready) > 1:
                return  # a call is pending already
        # A closed loop (server shut down) has nobody left to wake.
        with contextlib.suppress(RuntimeError):
            self._loop.call_soon_threadsafe(self._run)

    def _run(self) -> None:
        with self._lock:
            ready, self._ready = self._ready, []
        for future in ready:
            _resolve(future)


_loop_bells: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopBell] = (
    weakref.WeakKeyDictionary()
)


def _loop_bell(loop: asyncio.AbstractEventLoop) -> _LoopBell:
    bell = _loop_bells.get(loop)
    if bell is None:
        bell = _loop_bells[loop] = _LoopBell(loop)
    return bell


def _rung_bell() -> threading.Lock:
    """A held lock: a waiting thread blocks on ``acquire()`` until another ``release()``s it,
    one C call on each side where a ``Condition`` takes a fresh lock and a list per wait."""
    bell = threading.Lock()
    bell.acquire()
    return bell


class _Batches:
    """The consumer side shared by both feeds: a buffer and a way to wait on it."""

    # Slots, a list and no events: a thousand open streams hold a thousand feeds.
    __slots__ = (
        "__weakref__",
        "_buffered",
        "_bell",
        "_consumer_bell",
        "_deadline",
        "_items",
        "_lock",
        "_loop",
        "_loop_bell",
        "_nudged",
        "_timer",
        "_timer_at",
        "_waiter",
        "closed",
        "done",
        "error",
        "suspended",
    )

    def __init__(self) -> None:
        self._items: list[Any] = []
        self._buffered = 0
        self._lock = threading.Lock()
        self.done = False
        self.closed = False
        """Set once the upstream is closed."""
        self.error: BaseException | None = None
        self._nudged = False
        self.suspended = False
        """Set when a wait suspended the consumer (so the loop ran others meanwhile)."""
        # A thread consumer waits on its bell, an async one on a future; the
        # producer wakes whichever is set, with the lock held.
        self._bell: threading.Lock | None = None
        self._consumer_bell: threading.Lock | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_bell: _LoopBell | None = None
        # One timer per async consumer, moved only when a wait must end sooner.
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = 0.0
        self._deadline = 0.0

    def _take(self) -> list[Any]:
        items, self._items = self._items, []
        self._buffered = 0
        return items

    def _full(self) -> bool:
        return len(self._items) >= MAX_BUFFERED or self._buffered >= MAX_BUFFERED_BYTES

    def _add(self, item: Any) -> None:
        self._items.append(item)
        if isinstance(item, (str, bytes, bytearray)):
            self._buffered += len(item)

    def _wake(self) -> None:
        """Wake the consumer, from any thread; call with the lock held."""
        bell, self._bell = self._bell, None
        if bell is not None:
            bell.release()
        waiter, self._waiter = self._waiter, None
        if waiter is not None and self._loop_bell is not None:
            self._loop_bell.ring(waiter)

    def nudge(self) -> None:
        """End the current wait early (with :class:`FeedTimeout`): deadlines changed."""
        with self._lock:
            self._nudged = True
            self._wake()

    def get(self, timeout: float | None) -> list[Any]:
        """Wait (blocking) for the next batch; ``[]`` once the upstream is done."""
        with self._lock:
            if self._items or self.done:
                return self._take()
            if self._nudged:
                self._nudged = False
                raise FeedTimeout
            if self._consumer_bell is None:
                self._consumer_bell = _rung_bell()
            bell = self._bell = self._consumer_bell
        rung = bell.acquire(True, -1 if timeout is None else timeout)
        with self._lock:
            if not rung:
                if self._bell is bell:
                    self._bell = None
                else:  # rung just after the timeout: hold it again for the next wait
                    bell.acquire(False)
            self._nudged = False
            if not self._items and not self.done:
                raise FeedTimeout
            return self._take()

    async def aget(self, timeout: float | None) -> list[Any]:
        """Wait (async) for the next batch; ``[]`` once the upstream is done."""
        with self._lock:
            if self._items or self.done:
                if self.done:
                    self._disarm()
                return self._take()
            if self._nudged:
                self._nudged = False
                raise FeedTimeout
            if self._loop_bell is None:
                self._loop = asyncio.get_running_loop()
                self._loop_bell = _loop_bell(self._loop)
            loop = self._loop
            assert loop is not None
            waiter = self._waiter = loop.create_future()
        # The timer resolves the same future: no wait_for(), which before Python 3.12
        # can swallow a cancellation that lands with the result (CPython gh-86296);
        # Django's ASGI handler cancels only once when the client leaves.
        if timeout is None:
            self._disarm()
            self._deadline = math.inf
        else:
            self._deadline = deadline = loop.time() + timeout
            if self._timer is None or self._timer_at > deadline:
                self._disarm()
                self._timer_at = deadline
                self._timer = loop.call_at(deadline, self._on_timer)
        try:
            self.suspended = True
            await waiter
        except BaseException:
            self._disarm()  # cancelled: nobody waits any more
            raise
        finally:
            with self._lock:
                if self._waiter is waiter:
                    self._waiter = None
        with self._lock:
            self._nudged = False
            if not self._items and not self.done:
                raise FeedTimeout
            if self.done:
                self._disarm()
            return self._take()

    def _on_timer(self) -> None:
        """The timer is due: end the wait if its deadline came, else wait on for it."""
        self._timer = None
        waiter, loop = self._waiter, self._loop
        if waiter is None or loop is None or self.done:
            return  # no wait now: the next one arms a timer for itself
        if loop.time() >= self._deadline - 0.001:
            with self._lock:
                if self._waiter is waiter:
                    self._waiter = None
            _resolve(waiter)
        else:
            self._timer_at = self._deadline
            self._timer = loop.call_at(self._deadline, self._on_timer)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


IDLE_SECONDS = 20.0
"""How long a sync upstream's thread, once done, waits for the next upstream before it ends."""
IDLE_NAME = "indox-idle"


Refused = Callable[[OutOfThreads], object]
_Job = tuple[Callable[[], object], str, Refused | None]


class _Idle:
    """A worker waiting for a job: its bell is released once a job is set."""

    __slots__ = ("bell", "job")

    def __init__(self) -> None:
        self.bell = _rung_bell()
        self.job: _Job | None = None


class _Workers:
    """Threads for sync upstreams, one per running upstream, reused; never a bounded pool.

    ``Thread.start()`` waits until the new thread runs, and a new thread must
    first win the GIL from every thread already busy: with a thousand open
    streams, one start can hold the event loop's thread for seconds, and with
    it every stream. So the caller only hands the job over: to the idle
    worker that finished last (its bell rung, one C call), or to a new one
    that a spawner thread starts.  Each new worker first starts up to two
    more of those still wanted, so a burst of a thousand streams waits for
    about ten starts in a row, not a thousand.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._spawn_wanted = threading.Condition(self._lock)
        self._jobs: deque[_Job] = deque()
        self._idle: list[_Idle] = []  # the last one to finish is at the end: its stack is warm
        self._spawning = 0  # workers asked for, not yet running a job
        self._to_start = 0  # of those, the ones the spawner has yet to start
        self._spawner: threading.Thread | None = None

    def run(self, job: Callable[[], object], name: str, refused: Refused | None) -> None:
        """Run ``job`` in a thread of its own (named ``name``), never waiting for one to start;
        ``refused`` is called instead (from another thread) if no thread can be started."""
        spawner = None
        with self._lock:
            if self._idle:
                idle = self._idle.pop()
                idle.job = (job, name, refused)
                idle.bell.release()
                return
            self._jobs.append((job, name, refused))
            if len(self._jobs) > self._spawning:
                self._spawning += 1
                self._to_start += 1
                self._spawn_wanted.notify()
                if self._spawner is None:
                    spawner = self._spawner = threading.Thread(
                        target=self._spawn, name="indox-spawner", daemon=True
                    )
        if spawner is not None:  # once per process
            spawner.start()

    def _spawn(self) -> None:
        while True:
            with self._lock:
                self._spawn_wanted.wait_for(lambda: self._to_start > 0)
            self._start_workers()

    def _start_workers(self) -> None:
        """Start up to two of the workers still wanted."""
        with self._lock:
            count = min(2, self._to_start)
            self._to_start -= count
        for started in range(count):
            try:
                threading.Thread(target=self._work, name=IDLE_NAME, daemon=True).start()
            except RuntimeError as exc:
                logger.error("could not start a thread for a sync upstream: %s", exc)
                self._refuse(count - started, exc)
                return

    def _refuse(self, unstarted: int, cause: RuntimeError) -> None:
        """The jobs no thread is coming for fail now rather than wait, unread, for a
        busy worker to finish a stream (minutes, for a model's answer)."""
        with self._lock:
            self._spawning -= unstarted
            orphans = [self._jobs.pop() for _ in range(len(self._jobs) - self._spawning)]
        error = OutOfThreads(f"no thread could be started for the upstream ({cause})")
        for _, name, refused in orphans:
            if refused is None:
                logger.error("%s dropped: %s", name, error)
                continue
            try:
                refused(error)
            except Exception:
                logger.exception("refusing %s failed", name)

    def _next(self, idle: _Idle, spawned: bool) -> _Job | None:
        """The next job: one queued, else the one handed over while idle; None: time to end."""
        with self._lock:
            if spawned:
                self._spawning -= 1
            if self._jobs:
                return self._jobs.popleft()
            self._idle.append(idle)
        if idle.bell.acquire(True, IDLE_SECONDS):
            job, idle.job = idle.job, None
            return job
        with self._lock:
            if idle in self._idle:
                self._idle.remove(idle)
                return None
        idle.bell.acquire()  # a job came just after the wait ended: it is set already
        job, idle.job = idle.job, None
        return job

    def _work(self) -> None:
        self._start_workers()
        thread = threading.current_thread()
        idle = _Idle()
        spawned = True
        while (job := self._next(idle, spawned)) is not None:
            spawned = False
            run, thread.name, _ = job
            try:
                run()
            except BaseException:  # a job handles its own errors; the worker must live on
                logger.exception("%s failed", thread.name)
            thread.name = IDLE_NAME


_workers = _Workers()


def run_in_thread(job: Callable[[], object], name: str, refused: Refused | None = None) -> None:
    """Run ``job`` in a thread of its own, named ``name`` while it runs; safe on the event loop.

    The thread is one of the kit's reusable threads, never a slot in a
    bounded pool; the caller never waits for a thread to start.  If none can be
    started (the process is at its thread limit), ``refused`` gets an
    :class:`OutOfThreads` instead, from another thread, and ``job`` never runs.
    """
    _workers.run(job, name, refused)


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

    __slots__ = (
        "_closing",
        "_context",
        "_exiting",
        "_iterator",
        "_source",
        "_space",
        "_space_bell",
        "_started",
        "_stopping",
    )

    def __init__(self, source: Any) -> None:
        super().__init__()
        self._source = source
        self._iterator: Iterator[Any] = iter(source)
        self._stopping = False
        self._closing = False
        self._exiting = False
        """The thread has reached its own close: a failed close in stop() must retry."""
        self._context = contextvars.copy_context()
        self._started = False
        self._space_bell = _rung_bell()
        self._space: threading.Lock | None = None
        """The space bell while the thread waits for the consumer to take a batch."""

    def start(self) -> None:
        self._started = True
        run_in_thread(
            functools.partial(self._context.run, self._run), "indox-upstream", self._refused
        )

    def _run(self) -> None:
        try:
            while True:
                with self._lock:
                    if self._stopping:
                        return
                    space = None
                    if self._full():
                        space = self._space = self._space_bell
                if space is not None:
                    space.acquire()  # until the consumer takes a batch, or stop()
                    continue
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
            self._end()

    def _refused(self, error: OutOfThreads) -> None:
        # As the thread would end: the consumer gets the error, the upstream is closed.
        self.error = error
        self._end()

    def _end(self) -> None:
        self._close()
        with self._lock:
            self.done = True
            self._wake()

    def _take(self) -> list[Any]:
        space, self._space = self._space, None
        if space is not None:
            space.release()
        return super()._take()

    def _close(self) -> None:
        with self._lock:
            self._exiting = True
            if self._closing:
                return
            self._closing = True
        close_sync(self._iterator, self._source)
        self.closed = True

    def stop(self) -> None:
        """Pull nothing more; the upstream is closed as soon as it can be."""
        with self._lock:
            self._stopping = True
            space, self._space = self._space, None
            if space is not None:
                space.release()
            if (
                self._closing
                or not self._started
                or self.done
                or inspect.isgenerator(self._source)
                or not callable(getattr(self._source, "close", None))
            ):
                return
            self._closing = True
        try:
            self._source.close()
        except ValueError:
            # Its own code is running in our thread: that thread closes it next,
            # unless it got there while this close was failing.
            with self._lock:
                self._closing = False
                exiting = self._exiting
            if exiting:
                self._close()
            return
        except Exception:
            logger.warning("closing the upstream failed", exc_info=True)
        self.closed = True


class TaskFeed(_Batches):
    """Iterate an async iterator in an asyncio task of its own."""

    __slots__ = ("_iterator", "_source", "_space", "_stopped", "_task")

    def __init__(self, source: Any) -> None:
        super().__init__()
        self._source = source
        self._iterator: AsyncIterator[Any] = source.__aiter__()
        self._space: asyncio.Future[None] | None = None
        """Awaited by the task while the buffer is full; resolved when a batch is taken."""
        self._task: asyncio.Task[None] | None = None
        self._stopped = False

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._task = keep_running(self._loop.create_task(self._run()))

    def _take(self) -> list[Any]:
        space, self._space = self._space, None
        if space is not None:
            _resolve(space)
        return super()._take()

    async def _run(self) -> None:
        loop = self._loop
        assert loop is not None
        try:
            while True:
                while self._full():
                    self._space = loop.create_future()
                    await self._space
                try:
                    item = await self._iterator.__anext__()
                except StopAsyncIteration:
                    return
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    self.error = exc
                    return
                if self._stopped:
                    # The upstream dropped the cancel: an asyncio.wait_for() in it,
                    # before Python 3.12, can drop one that lands with its result.
                    return
                with self._lock:
                    self._add(item)
                    waiter, self._waiter = self._waiter, None
                if waiter is not None:
                    _resolve(waiter)
        finally:
            await close_async(self._iterator, self._source)
            self.closed = True
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
            self._disarm()
            self._cancel(task)
        else:
            # Django's ASGI handler calls close() via sync_to_async, off the loop's thread.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(self._cancel, task)

    def _cancel(self, task: asyncio.Task[None]) -> None:
        # Marked with the cancel, on the loop: a chunk that comes after it means the
        # upstream dropped the cancel, and no cancel is left to cut the close short.
        self._stopped = True
        task.cancel()
