"""A real redis-server on a free loopback port, persistence off, for the store tests.

Use the fixtures by importing them into a test module (they are shared: one server
for the whole session, however many modules import them)::

    from redis_server import RedisServer, redis_server, redis_url  # noqa: F401

``redis_url`` gives each test an empty database on a running server; a test may
``stop()``, ``kill()`` and ``start()`` the server (Redis-goes-away faults), and the
next test gets it running again.  ``RedisServer()`` alone starts a private server.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from servers import free_port, wait_for_port

__all__ = ["RedisServer", "redis_server", "redis_url"]


class RedisServer:
    """One ``redis-server`` process on 127.0.0.1, restartable on the same port."""

    def __init__(self, port: int | None = None) -> None:
        executable = shutil.which("redis-server")
        if executable is None:
            pytest.fail(
                "redis-server not found: bash tests/run.sh installs it"
                " (apt-get install redis-server)"
            )
        self.executable = executable
        self.port = port or free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self._dir = tempfile.TemporaryDirectory(prefix="indox-redis-")
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self) -> None:
        if self.running:
            return
        argv = [
            self.executable, "--port", str(self.port), "--bind", "127.0.0.1",
            "--save", "", "--appendonly", "no", "--dir", self._dir.name,
            "--loglevel", "warning",
        ]  # fmt: skip
        self._process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for_port(self.port, 10.0, self._process)
        with self.client() as client:
            client.ping()

    def stop(self) -> None:
        """Shut down (SIGTERM): clients see refused connections until ``start()``."""
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)

    def kill(self) -> None:
        """Die at once (SIGKILL), as on a crash."""
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.kill()
            process.wait(5)

    def restart(self) -> None:
        """Stop and start again on the same port, with no data (persistence is off)."""
        self.stop()
        self.start()

    def client(self, **options: Any) -> redis.Redis:
        """A plain redis-py client of this server, for looking at keys and TTLs."""
        return redis.Redis.from_url(self.url, **options)

    def flush(self) -> None:
        with self.client() as client:
            client.flushall()

    def close(self) -> None:
        self.stop()
        self._dir.cleanup()

    def __enter__(self) -> RedisServer:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


_shared: RedisServer | None = None


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """The session's redis-server (started once, stopped at the end)."""
    global _shared
    if _shared is None:
        _shared = RedisServer()
        _shared.start()
    yield _shared
    # Each importing module's copy of this fixture ends at the end of the session.
    with contextlib.suppress(Exception):
        _shared.close()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """The URL of an empty database on the running session server."""
    redis_server.start()
    redis_server.flush()
    return redis_server.url
