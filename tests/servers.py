"""Real servers on 127.0.0.1 for the tests: uvicorn, Werkzeug, gunicorn, subprocesses."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import httpx
import pytest
from httpx_sse import ServerSentEvent, connect_sse

ROOT = Path(__file__).resolve().parent.parent
NODE = ROOT / "tests" / "node"
"""The npm clients' folder: its package.json pins them, tests/run.sh installs them."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(
    port: int, timeout: float = 20.0, process: subprocess.Popen[Any] | None = None
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout} s")


@contextlib.contextmanager
def uvicorn_thread(app: Any, **config: Any) -> Iterator[str]:
    """Serve an ASGI app with uvicorn in a thread of this process."""
    import uvicorn

    port = free_port()
    # The asyncio loop: uvloop can fail to close in a thread with handles still open.
    config.setdefault("loop", "asyncio")
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", **config)
    )
    server.install_signal_handlers = lambda: None  # type: ignore[method-assign]
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        wait_for_port(port)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


@contextlib.contextmanager
def werkzeug_thread(app: Any) -> Iterator[str]:
    """Serve a WSGI app with Werkzeug's threaded development server."""
    from werkzeug.serving import make_server

    port = free_port()
    server = make_server("127.0.0.1", port, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.shutdown()
        thread.join(10)


@contextlib.contextmanager
def process_server(
    argv: list[str], port: int, env: dict[str, str] | None = None, timeout: float = 30.0
) -> Iterator[str]:
    """Run a server command (gunicorn, uvicorn, ``python -m ...``) until the block ends."""
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    full_env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(ROOT), str(ROOT / "tests"), full_env.get("PYTHONPATH", "")) if p
    )
    with tempfile.TemporaryFile("w+") as log:
        process = subprocess.Popen(
            argv, cwd=ROOT, env=full_env, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
        try:
            try:
                wait_for_port(port, timeout, process)
            except Exception:
                log.seek(0)
                output = log.read()[-4000:]
                raise RuntimeError(f"{' '.join(argv)} did not start:\n{output}") from None
            yield f"http://127.0.0.1:{port}"
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(5)


def gunicorn_argv(app: str, port: int, *extra: str) -> list[str]:
    """gunicorn with threads: one process, many streams at once."""
    return [
        sys.executable, "-m", "gunicorn", app,
        "--bind", f"127.0.0.1:{port}",
        "--worker-class", "gthread", "--workers", "1", "--threads", "64",
        "--timeout", "120", "--log-level", "warning", *extra,
    ]  # fmt: skip


def uvicorn_argv(app: str, port: int, *extra: str) -> list[str]:
    return [
        sys.executable, "-m", "uvicorn", app, "--host", "127.0.0.1", "--port", str(port),
        "--log-level", "warning", *extra,
    ]  # fmt: skip


def django_site(
    tmp_path_factory: pytest.TempPathFactory, module: str, source: str
) -> dict[str, str]:
    """Write a Django site (``source``: settings, URLs, ``application`` and
    ``asgi_application``) as ``module`` in a fresh folder; the environment that loads it."""
    site = tmp_path_factory.mktemp(module)
    (site / f"{module}.py").write_text(source, encoding="utf-8")
    return {"PYTHONPATH": str(site), "DJANGO_SETTINGS_MODULE": module}


@contextlib.contextmanager
def django_server(kind: Literal["wsgi", "asgi"], env: dict[str, str]) -> Iterator[str]:
    """The site of ``env`` (see :func:`django_site`) under gunicorn or uvicorn, until the end."""
    module, port = env["DJANGO_SETTINGS_MODULE"], free_port()
    if kind == "wsgi":
        argv = gunicorn_argv(f"{module}:application", port)
    else:
        argv = uvicorn_argv(f"{module}:asgi_application", port)
    with process_server(argv, port, env) as url:
        yield url


def collect(
    base_url: str,
    path: str,
    body: dict[str, Any],
    headers: dict[str, str] | None = None,
    timeout: float = 30.0,
) -> tuple[httpx.Response, list[ServerSentEvent]]:
    """POST ``body`` and read the whole event stream with httpx-sse."""
    with (
        httpx.Client(base_url=base_url, timeout=timeout) as client,
        connect_sse(client, "POST", path, json=body, headers=dict(headers or {})) as source,
    ):
        return source.response, list(source.iter_sse())


def text_of(events: list[ServerSentEvent]) -> str:
    """The text the default (``message``) events carry, joined."""
    return "".join(e.data for e in events if e.event == "message")


def remote_tracker(base_url: str) -> dict[str, Any]:
    """A subprocess server's upstream Tracker snapshot, from its ``GET /_tracker``."""
    return httpx.get(f"{base_url}/_tracker").json()  # type: ignore[no-any-return]


def wait_closed(base_url: str, count: int = 1, timeout: float = 10.0) -> dict[str, Any]:
    """Poll ``/_tracker`` until ``count`` upstreams are closed (or time runs out)."""
    deadline = time.monotonic() + timeout
    while True:
        snapshot = remote_tracker(base_url)
        if snapshot["closed"] >= count or time.monotonic() > deadline:
            return snapshot
        time.sleep(0.05)
