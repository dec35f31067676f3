"""Sample a server under test with py-spy while a scenario runs, and sum up where its time went.

``python -m bench --profile concurrency-1000 --only kit-fastapi-sync`` attaches
``py-spy record --format raw`` to the serving process (gunicorn's worker, or
uvicorn) after the warm-up and detaches when the scenario ends; the collapsed
stacks go to ``bench/results/profiles/<contender>.<scenario>.txt`` and a
summary (``.summary.txt``, also in the JSON) ranks functions by their own time
and by the time spent under them, in percent of the samples and in
microseconds per chunk delivered.  ``python -m bench.profile FILE.txt
[CHUNKS]`` sums up a saved file again.

It samples only the thread that holds the GIL (``--gil``), without pausing
the server (``--nonblocking``): one stack per sample whatever the number of
threads (a gthread worker has 1,100; sampling them all, py-spy falls seconds
behind), and each sample stands for 1/rate s of the interpreter's time.  Time
spent with the GIL released (a blocking ``send()`` in a WSGI thread, the
kernel's side of a syscall) is not in the samples; compare the samples' total
with the scenario's measured server CPU.  uvloop and httptools are compiled:
their own time shows as that of the frame that called them (``Runner.run``).

py-spy is not a dependency of the package: ``pip install py-spy`` (or the
``bench`` extra).
"""

from __future__ import annotations

import contextlib
import marshal
import re
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

RATE = 250
"""Samples per second."""

_LINE = re.compile(r"^(?P<stack>.*) (?P<count>\d+)$")
_FRAME = re.compile(r"^(?P<function>.*?) \((?P<file>[^():]*)(?::\d+)?\)$")

# Where a frame's file puts it, first match wins: for the breakdown by layer.
LAYERS = (
    ("kit: pipeline (stream.py)", "indox_integrations/stream.py"),
    ("kit: feeds (concurrency.py)", "indox_integrations/concurrency.py"),
    ("kit: normalizer (chunks.py)", "indox_integrations/chunks.py"),
    ("kit: SSE encoder (sse.py)", "indox_integrations/sse.py"),
    ("kit: other", "indox_integrations/"),
    ("bench upstream", "bench/"),
    ("uvicorn", "uvicorn/"),
    ("starlette", "starlette/"),
    ("fastapi / pydantic", "fastapi/"),
    ("fastapi / pydantic", "pydantic"),
    ("anyio", "anyio/"),
    ("sse_starlette", "sse_starlette/"),
    ("gunicorn", "gunicorn/"),
    ("flask / werkzeug", "flask/"),
    ("flask / werkzeug", "werkzeug/"),
    ("django / asgiref", "django/"),
    ("django / asgiref", "asgiref/"),
    ("asyncio", "asyncio/"),
    ("threading", "threading.py"),
    ("logging", "logging/"),
)


def available() -> str | None:
    """Why profiling cannot run here, if it cannot."""
    if shutil.which("py-spy") is None:
        return 'py-spy is not installed: pip install py-spy (or "indox-integrations[bench]")'
    return None


class Profiler:
    """One ``py-spy record`` attached to a running process until :meth:`stop`."""

    def __init__(self, pid: int, output: Path, rate: int = RATE) -> None:
        output.parent.mkdir(parents=True, exist_ok=True)
        self.output = output
        self._log = output.with_suffix(".py-spy.log").open("w")
        self.process = subprocess.Popen(
            [
                "py-spy",
                "record",
                "--pid",
                str(pid),
                "--format",
                "raw",
                "--output",
                str(output),
                "--rate",
                str(rate),
                "--nonblocking",
                "--gil",
            ],  # fmt: skip
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        time.sleep(1.0)  # py-spy reads the process's symbols before its first sample

    def stop(self, timeout: float = 60.0) -> bool:
        """Detach (py-spy writes its file on SIGINT); True when the file is there."""
        with contextlib.suppress(ProcessLookupError):
            self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)
        self._log.close()
        return self.output.exists() and self.output.stat().st_size > 0


def _frame(frame: str) -> tuple[str, str]:
    match = _FRAME.match(frame)
    if match is None:
        return frame, ""
    return match["function"], match["file"]


LOOP = "event loop (uvloop's C code: epoll, socket writes, timers, handles)"


def _layer(function: str, file: str) -> str:
    if function in ("Runner.run", "BaseEventLoop.run_until_complete") and "asyncio/" in file:
        # uvloop is compiled: its own time shows as the Python frame that called it.
        return LOOP
    return next((name for name, part in LAYERS if part in file), "other")


def summarize(
    path: Path,
    chunks: int | None = None,
    cpu_us_per_chunk: float | None = None,
    rate: int = RATE,
    top: int = 25,
) -> dict[str, Any]:
    """Rank functions by own and inclusive samples; per chunk too, given ``chunks``."""
    own: Counter[str] = Counter()
    under: Counter[str] = Counter()
    layers: Counter[str] = Counter()
    total = 0
    for line in path.read_text(errors="replace").splitlines():
        match = _LINE.match(line)
        if match is None:
            continue
        count = int(match["count"])
        frames = [_frame(f) for f in match["stack"].split(";") if f]
        if not frames:
            continue
        total += count
        function, file = frames[-1]
        own[f"{function} ({file})"] += count
        # The innermost frame's layer: asyncio called from the kit counts as asyncio.
        layers[_layer(function, file)] += count
        for name in {f"{fn} ({fl})" for fn, fl in frames}:
            under[name] += count

    def rows(counts: Counter[str]) -> list[dict[str, Any]]:
        out = []
        for name, count in counts.most_common(top):
            share = count / total if total else 0.0
            row: dict[str, Any] = {"function": name, "samples": count, "share": share}
            if chunks:
                row["us_per_chunk"] = count / rate / chunks * 1e6
            out.append(row)
        return out

    return {
        "file": str(path),
        "samples": total,
        "rate": rate,
        "chunks": chunks,
        "gil_us_per_chunk": total / rate / chunks * 1e6 if chunks else None,
        "cpu_us_per_chunk": cpu_us_per_chunk,
        "layers": rows(layers),
        "own": rows(own),
        "inclusive": rows(under),
    }


def summarize_pstats(path: Path, chunks: int | None = None, top: int = 30) -> dict[str, Any]:
    """The same from a :mod:`bench.cprof` dump: thread CPU time and calls per chunk."""
    stats: dict[tuple[str, int, str], tuple[Any, ...]] = marshal.loads(path.read_bytes())
    total = sum(row[2] for row in stats.values())
    per = 1e6 / chunks if chunks else None
    layers: Counter[str] = Counter()
    named = []
    for (file, line, function), (_cc, calls, own, inclusive, _) in stats.items():
        layers[_layer(function, file)] += own
        name = f"{function} ({_short(file)}:{line})"
        named.append((name, calls, own, inclusive))

    def row(name: str, calls: int | None, own: float, inclusive: float | None) -> dict[str, Any]:
        out: dict[str, Any] = {"function": name, "share": own / total if total else 0.0}
        if per is not None:
            out["us_per_chunk"] = own * per
            if calls is not None:
                out["calls_per_chunk"] = calls / chunks if chunks else None
            if inclusive is not None:
                out["inclusive_us_per_chunk"] = inclusive * per
        return out

    by_own = sorted(named, key=lambda r: r[2], reverse=True)[:top]
    by_inclusive = sorted(named, key=lambda r: r[3], reverse=True)[:top]
    by_calls = sorted(named, key=lambda r: r[1], reverse=True)[:top]
    return {
        "file": str(path),
        "clock": "thread CPU time (cProfile, time.thread_time)",
        "chunks": chunks,
        "own_us_per_chunk": total * per if per is not None else None,
        "layers": [row(n, None, t, None) for n, t in layers.most_common()],
        "own": [row(n, c, t, i) for n, c, t, i in by_own],
        "inclusive": [row(n, c, t, i) for n, c, t, i in by_inclusive],
        "calls": [row(n, c, t, i) for n, c, t, i in by_calls],
    }


def _short(file: str) -> str:
    for marker in ("site-packages/", "/lib/python3", "/work/main/"):
        if marker in file:
            tail = file.split(marker, 1)[1]
            return tail.split("/", 1)[1] if marker == "/lib/python3" and "/" in tail else tail
    return file


def render(summary: dict[str, Any]) -> str:
    """The summary as plain text tables."""
    if "samples" in summary:
        lines = [f"{summary['file']}: {summary['samples']:,} samples at {summary['rate']} Hz"]
        if summary["gil_us_per_chunk"] is not None:
            lines[0] += (
                f" over {summary['chunks']:,} chunks: {summary['gil_us_per_chunk']:.0f} µs"
                " per chunk with the GIL held"
            )
    else:
        lines = [f"{summary['file']}: {summary['clock']}"]
        if summary["own_us_per_chunk"] is not None:
            lines[0] += (
                f" over {summary['chunks']:,} chunks: {summary['own_us_per_chunk']:.0f} µs"
                " per chunk in profiled code"
            )
    if summary.get("cpu_us_per_chunk") is not None:
        lines[0] += f" (server CPU measured: {summary['cpu_us_per_chunk']:.0f} µs per chunk)"
    sections = [("by layer (innermost frame)", "layers"), ("own time", "own"),
                ("inclusive time", "inclusive"), ("most calls", "calls")]  # fmt: skip
    for title, key in sections:
        if key not in summary:
            continue
        lines += ["", f"{title}:"]
        for row in summary[key]:
            us = f"{row['us_per_chunk']:7.1f} µs" if "us_per_chunk" in row else ""
            if "inclusive_us_per_chunk" in row:
                us += f" {row['inclusive_us_per_chunk']:7.1f} µs incl."
            if row.get("calls_per_chunk") is not None:
                us += f" {row['calls_per_chunk']:6.2f} calls/chunk"
            lines.append(f"  {row['share'] * 100:5.1f}% {us}  {row['function']}")
    return "\n".join(lines)


if __name__ == "__main__":
    if len(sys.argv) not in (2, 3):
        raise SystemExit("usage: python -m bench.profile FILE.txt|FILE.pstats [CHUNKS]")
    target = Path(sys.argv[1])
    delivered = int(sys.argv[2]) if len(sys.argv) == 3 else None
    if target.suffix == ".pstats":
        print(render(summarize_pstats(target, delivered, top=40)))
    else:
        print(render(summarize(target, delivered, top=40)))
