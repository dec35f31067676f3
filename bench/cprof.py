"""cProfile in every thread of a server under test, read through the side port.

With ``BENCH_CPROFILE=<file>`` in its environment a server process profiles
its main thread (the event loop, or gunicorn's acceptor) and every thread
started after it (request threads, the kit's feed threads) with
``time.thread_time`` as the clock: a function's time is CPU time of its own
thread, so threads waiting for the GIL or preempted by a busy machine do not
count, and call counts are exact.  ``POST /profile/mark`` on the side port
notes the totals so far (after the warm-up), ``POST /profile/dump`` writes
the totals since the mark to the file in :mod:`pstats` form.  Every call pays
two clock reads, so a profiled server runs several times slower: read call
counts and shares, not its wall time.
"""

from __future__ import annotations

import cProfile
import marshal
import sys
import threading
import time
from pathlib import Path
from types import FrameType
from typing import Any

Key = tuple[str, int, str]
Totals = dict[Key, list[float]]
"""(file, line, function) -> [primitive calls, calls, own time, inclusive time]."""


class AllThreads:
    """One ``cProfile.Profile`` per thread, merged on demand."""

    def __init__(self, output: Path) -> None:
        self.output = output
        self._lock = threading.Lock()
        self._profiles: list[cProfile.Profile] = []
        self._mark: Totals = {}

    def install(self) -> None:
        self._start()
        threading.setprofile(self._first_event)

    def _first_event(self, frame: FrameType, event: str, arg: Any) -> None:
        sys.setprofile(None)
        name = threading.current_thread().name
        # Not the side port's own threads: reading the totals is not the server's work.
        if name != "bench-stats" and "process_request_thread" not in name:
            self._start()

    def _start(self) -> None:
        profile = cProfile.Profile(time.thread_time)
        with self._lock:
            self._profiles.append(profile)
        profile.enable()

    def totals(self) -> Totals:
        """Every thread's counts so far (read under the GIL, between its calls)."""
        with self._lock:
            profiles = list(self._profiles)
        merged: Totals = {}
        for profile in profiles:
            profile.snapshot_stats()  # reads, unlike create_stats(), which would disable
            for key, (cc, nc, tt, ct, _callers) in profile.stats.items():  # type: ignore[attr-defined]
                row = merged.setdefault(key, [0, 0, 0.0, 0.0])
                row[0] += cc
                row[1] += nc
                row[2] += tt
                row[3] += ct
        return merged

    def mark(self) -> None:
        self._mark = self.totals()

    def dump(self) -> str:
        now = self.totals()
        stats: dict[Key, tuple[float, float, float, float, dict[Any, Any]]] = {}
        for key, (cc, nc, tt, ct) in now.items():
            base = self._mark.get(key, [0, 0, 0.0, 0.0])
            if nc - base[1] > 0:
                stats[key] = (cc - base[0], nc - base[1], tt - base[2], ct - base[3], {})
        self.output.parent.mkdir(parents=True, exist_ok=True)
        self.output.write_bytes(marshal.dumps(stats))
        return str(self.output)


PROFILES: AllThreads | None = None


def install(output: str) -> None:
    global PROFILES
    PROFILES = AllThreads(Path(output))
    PROFILES.install()
