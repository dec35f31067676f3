"""One thread that watches every open stream's writes.

Back-pressure bounds what a stream buffers, but a client that stops reading
while keeping its socket open would still hold a stream, a server thread and
an upstream forever.  A stream hands each piece to the server and notes the
time; the server asks for the next piece once the write is done.  A piece
still unwritten after the stream's ``send_timeout`` means a frozen reader: the
watchdog tells the stream, which drops it (see ``SSEStream.stalled``).
"""

from __future__ import annotations

import threading
import time
import weakref
from typing import Any, Protocol

__all__ = ["Watched", "watch"]


class Watched(Protocol):
    """A stream the watchdog checks: ``sent_at`` is ``None`` while nothing is pending."""

    sent_at: float | None
    send_timeout: float

    def stalled(self) -> None: ...


_lock = threading.Lock()
_tick = threading.Condition(_lock)
_streams: weakref.WeakSet[Any] = weakref.WeakSet()
_interval = 1.0
_thread: threading.Thread | None = None


def watch(stream: Watched) -> None:
    """Check ``stream`` from now on, until it is garbage."""
    global _interval, _thread
    with _lock:
        _streams.add(stream)
        # A check every quarter of the shortest timeout: a stall is seen within 1.25x.
        interval = min(1.0, max(0.02, stream.send_timeout / 4))
        if interval < _interval:
            _interval = interval
            _tick.notify()
        if _thread is None:
            _thread = threading.Thread(target=_run, name="indox-watchdog", daemon=True)
            _thread.start()


def _run() -> None:
    while True:
        with _lock:
            _tick.wait(_interval)
            streams = list(_streams)
        now = time.monotonic()
        for stream in streams:
            sent = stream.sent_at
            if sent is not None and now - sent >= stream.send_timeout:
                stream.sent_at = None
                stream.stalled()
