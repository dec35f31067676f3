"""Start one contender's server as a subprocess on 127.0.0.1, and measure its memory."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil

from bench.contenders import Contender

ROOT = Path(__file__).resolve().parent.parent
GUNICORN_THREADS = 1100  # one per open stream: the memory scenario holds 1,000
_LIVE: set[Server] = set()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def argv_for(contender: Contender, port: int) -> list[str]:
    if contender.server == "gunicorn":
        return [
            sys.executable, "-m", "gunicorn", contender.target,
            "--bind", f"127.0.0.1:{port}", "--worker-class", "gthread", "--workers", "1",
            "--threads", str(GUNICORN_THREADS), "--worker-connections", "2000",
            "--backlog", "2048", "--timeout", "120", "--graceful-timeout", "1",
            "--log-level", "warning",
        ]  # fmt: skip
    return [
        sys.executable, "-m", "uvicorn", contender.target, "--host", "127.0.0.1",
        "--port", str(port), "--http", "httptools", "--log-level", "warning",
        "--no-access-log", "--timeout-graceful-shutdown", "1",
    ]  # fmt: skip


class Server:
    """A running contender server; ``pid`` is the process that serves requests
    (gunicorn's worker, not its arbiter)."""

    def __init__(
        self,
        contender: Contender,
        log_dir: Path,
        label: str,
        env: dict[str, str] | None = None,
    ) -> None:
        self.contender = contender
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.stats_port = free_port()
        self.stats_url = f"http://127.0.0.1:{self.stats_port}/stats"
        log_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = log_dir / f"{contender.name}.{label}.log"
        self._log = self.log_path.open("w")
        self.env = {**dict(contender.env), **(env or {})}
        env = {**os.environ, "PYTHONUNBUFFERED": "1", **self.env}
        env["BENCH_STATS_PORT"] = str(self.stats_port)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
        self.process = subprocess.Popen(
            argv_for(contender, self.port),
            cwd=ROOT,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.pid = self.process.pid
        _LIVE.add(self)

    def wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.contender.name} exited:\n{self.log_tail()}")
            with contextlib.suppress(httpx.HTTPError):
                if all(
                    httpx.get(url, timeout=2.0).status_code == 200
                    for url in (f"{self.url}/stats", self.stats_url)
                ):
                    self.pid = self._serving_pid()
                    return
            time.sleep(0.1)
        raise TimeoutError(f"{self.contender.name} not ready after {timeout} s:\n{self.log_tail()}")

    def _serving_pid(self) -> int:
        if self.contender.server != "gunicorn":
            return self.process.pid
        children = psutil.Process(self.process.pid).children()
        if len(children) != 1:
            raise RuntimeError(f"expected one gunicorn worker, got {len(children)}")
        return int(children[0].pid)

    def rss(self) -> int:
        """Resident memory of the serving process, in bytes (VmRSS)."""
        return int(psutil.Process(self.pid).memory_info().rss)

    def cpu_seconds(self) -> float:
        """User + system CPU of the server so far: every thread of the serving
        process, and for gunicorn the arbiter too (threads that ended included)."""
        return sum(self.cpu_times())

    def cpu_times(self) -> tuple[float, float]:
        """The same, as (user, system) seconds."""
        user = system = 0.0
        with contextlib.suppress(psutil.NoSuchProcess):
            root = psutil.Process(self.process.pid)
            for proc in [root, *root.children(recursive=True)]:
                with contextlib.suppress(psutil.NoSuchProcess):
                    times = proc.cpu_times()
                    user += times.user
                    system += times.system
        return user, system

    def threads(self) -> int | None:
        """Threads of the serving process now."""
        try:
            return int(psutil.Process(self.pid).num_threads())
        except psutil.NoSuchProcess:
            return None

    def log_tail(self, limit: int = 3000) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")[-limit:]

    def stop(self) -> None:
        _LIVE.discard(self)
        if self._log.closed:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(1.5)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(5)
        self._log.close()


def stop_all() -> None:
    """Stop every server still running (the run was interrupted)."""
    for server in list(_LIVE):
        server.stop()
