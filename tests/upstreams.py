"""Fake upstreams that record what the kit does to them."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

TRICKY_TEXTS = [
    "line one\nline two",
    "two\n\nblank lines",
    "trailing newline\n",
    "\nleading newline",
    " leading space",
    "  two leading spaces",
    "NUL\x00inside",
    "[DONE]",
    "data: [DONE]",
    "data: not a field",
    "event: usage",
    ": not a comment",
    "id: 7",
    "emoji 🙂👩‍👩‍👧 and CJK 漢字",
    "tab\tand\u2028line separator\x0bvertical tab",
    "x" * 1_000_000,
]
"""Texts that must survive the wire exactly (no CR: CR and CRLF arrive as LF)."""

GUIDE_USAGE = {
    "is_usage_info": True,
    "usage": {"tokens_prompt": 12, "tokens_completion": 80, "tokens_total": 92},
    "cost": 0.000184,
    "model": "openai/gpt-4o-mini",
    "provider": "openai",
    "finish_reason": "stop",
}
"""The usage chunk of indoxRouter's streaming guide."""

GUIDE_NORMALIZED = {
    "prompt_tokens": 12,
    "completion_tokens": 80,
    "total_tokens": 92,
    "cost": 0.000184,
    "model": "openai/gpt-4o-mini",
    "provider": "openai",
    "finish_reason": "stop",
}
"""What the kit makes of it."""


@dataclass
class Tracker:
    """Counts streams: active at once, chunks pulled, when each was closed."""

    active: int = 0
    max_active: int = 0
    started: int = 0
    pulled: int = 0
    closed: list[float] = field(default_factory=list)
    completed: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def enter(self) -> None:
        with self.lock:
            self.started += 1
            self.active += 1
            self.max_active = max(self.max_active, self.active)

    def pull(self) -> None:
        with self.lock:
            self.pulled += 1

    def leave(self, finished: bool) -> None:
        with self.lock:
            self.active -= 1
            self.closed.append(time.monotonic())
            self.completed += finished

    def snapshot(self) -> dict[str, Any]:
        with self.lock:
            return {
                "active": self.active,
                "max_active": self.max_active,
                "started": self.started,
                "pulled": self.pulled,
                "closed": len(self.closed),
                "completed": self.completed,
                "last_closed": self.closed[-1] if self.closed else None,
            }

    def reset(self) -> None:
        with self.lock:
            self.active = self.max_active = self.started = self.pulled = self.completed = 0
            self.closed.clear()


def sync_upstream(
    tracker: Tracker,
    chunks: list[Any] | int = 20,
    delay: float = 0.05,
    first_delay: float = 0.0,
    fail_after: int | None = None,
    silent_step: float | None = None,
) -> Iterator[Any]:
    """A sync generator of text chunks; ``silent_step`` yields ``""`` while waiting."""
    tracker.enter()
    finished = False
    items = [f"tok{i} " for i in range(chunks)] if isinstance(chunks, int) else chunks
    try:
        if first_delay:
            yield from _silence(first_delay, silent_step)
        for index, item in enumerate(items):
            if index and delay:
                yield from _silence(delay, silent_step)
            if fail_after is not None and index == fail_after:
                raise RuntimeError("upstream exploded with secret sk-test-123")
            tracker.pull()
            yield item
        finished = True
    finally:
        tracker.leave(finished)


def _silence(seconds: float, step: float | None) -> Iterator[str]:
    if step is None:
        time.sleep(seconds)
        return
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        time.sleep(min(step, max(0.0, deadline - time.monotonic())))
        yield ""


async def async_upstream(
    tracker: Tracker,
    chunks: list[Any] | int = 20,
    delay: float = 0.05,
    first_delay: float = 0.0,
    fail_after: int | None = None,
    swallow_cancel: bool = False,
) -> AsyncIterator[Any]:
    """The async twin of :func:`sync_upstream`; with ``swallow_cancel``, a cancel that
    comes while it waits between chunks is dropped, as an ``asyncio.wait_for()`` in an
    upstream can drop one that lands with its result (before Python 3.12)."""
    tracker.enter()
    finished = False
    items = [f"tok{i} " for i in range(chunks)] if isinstance(chunks, int) else chunks
    try:
        if first_delay:
            await asyncio.sleep(first_delay)
        for index, item in enumerate(items):
            if index and delay:
                try:
                    await asyncio.sleep(delay)
                except asyncio.CancelledError:
                    if not swallow_cancel:
                        raise
            if fail_after is not None and index == fail_after:
                raise RuntimeError("upstream exploded with secret sk-test-123")
            tracker.pull()
            yield item
        finished = True
    finally:
        tracker.leave(finished)
