"""The kit on FastAPI in resumable mode: ``create_router(client, resumable=True, store=...)``.

``BENCH_STORE`` picks the store: ``memory`` (the process's ``MemoryStore``) or ``redis``
(a ``RedisStore`` on ``BENCH_REDIS_URL``; without one, this process starts a private
``redis-server`` on a free port, persistence off, and stops it at exit).  Otherwise the
same app as ``kit_fastapi``: the harness sends the upstream parameters as the prompt.
"""

from __future__ import annotations

import atexit
import os
import shutil
import socket
import subprocess
import tempfile
import time
from typing import Any

from fastapi import FastAPI

from bench.apps.common import STATS_ROUTES
from bench.apps.kit_fastapi import client
from bench.upstream import HEARTBEAT
from indox_integrations.fastapi import create_router
from indox_integrations.stores import MemoryStore, RedisStore


def private_redis() -> str:
    """A private redis-server on a free port, persistence off, stopped at exit: its URL."""
    executable = shutil.which("redis-server")
    if executable is None:
        raise RuntimeError("BENCH_STORE=redis needs redis-server (apt-get install redis-server)")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    workdir = tempfile.mkdtemp(prefix="bench-redis-")
    process = subprocess.Popen(
        [executable, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no", "--dir", workdir, "--loglevel", "warning"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    atexit.register(process.terminate)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            break
        except OSError:
            time.sleep(0.05)
    return f"redis://127.0.0.1:{port}/0"


def _store() -> Any:
    if os.environ.get("BENCH_STORE", "memory") == "memory":
        return MemoryStore()
    return RedisStore(os.environ.get("BENCH_REDIS_URL") or private_redis())


app = FastAPI()
app.router.routes.extend(STATS_ROUTES)
app.include_router(
    create_router(
        client, usage="skip", serve_static=False, heartbeat=HEARTBEAT, resumable=True,
        store=_store(),
    )
)  # fmt: skip
