"""Graceful shutdown: open streams end cleanly when the server is told to stop.

uvicorn and gunicorn stop accepting on SIGTERM and wait for open responses,
and an LLM stream can outlast their grace period, to be cut mid-answer with no
end marker and no usage recorded.  The kit chains its own SIGTERM handler in
front of the server's (never replacing it): from then on, every open stream
has its ``shutdown_grace`` seconds to finish, then ends with an
``error`` event of type ``shutdown`` and the end marker, its upstream closed
and its usage reported.
"""

from __future__ import annotations

import signal
import threading
import time
import weakref
from collections.abc import Callable
from types import FrameType
from typing import Any

__all__ = ["begin", "install", "reset", "started", "watch"]

_lock = threading.Lock()
_started: float | None = None
_wakers: weakref.WeakSet[Any] = weakref.WeakSet()


def started() -> float | None:
    """When shutdown began (``time.monotonic()``), or ``None`` while serving."""
    return _started


def begin() -> None:
    """Start shutting down: every open stream recomputes its deadline at once.

    Safe in a signal handler: the stream locks the handler may have
    interrupted are taken in a thread of its own.
    """
    global _started
    if _started is None:
        _started = time.monotonic()
    threading.Thread(target=_nudge_all, name="indox-shutdown", daemon=True).start()


def _nudge_all() -> None:
    with _lock:
        wakers = list(_wakers)
    for waker in wakers:
        waker.nudge()


def reset() -> None:
    """Serve again (for tests and for servers that restart in-process)."""
    global _started
    with _lock:
        _started = None


def watch(feed: Any) -> None:
    """Nudge ``feed`` (anything with ``nudge()``) when shutdown begins."""
    with _lock:
        _wakers.add(feed)


def install() -> bool:
    """Chain the kit's SIGTERM handler in front of the current one, once.

    Only the main thread can do it; elsewhere this does nothing and says so.
    """
    if threading.current_thread() is not threading.main_thread():
        return False
    previous = signal.getsignal(signal.SIGTERM)
    if getattr(previous, "indox_shutdown", False):
        return True
    signal.signal(signal.SIGTERM, _chained(previous))
    return True


def _chained(previous: Any) -> Callable[[int, FrameType | None], None]:
    def handler(signum: int, frame: FrameType | None) -> None:
        begin()
        if callable(previous):
            previous(signum, frame)
        elif previous != signal.SIG_IGN:
            # Nobody else handles it: terminate, as the default would have.
            signal.signal(signum, signal.SIG_DFL)
            signal.raise_signal(signum)

    handler.indox_shutdown = True  # type: ignore[attr-defined]
    return handler
