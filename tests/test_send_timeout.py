"""A reader that stops reading but keeps its socket open is dropped after ``send_timeout``:
its upstream closed, outcome ``client_stalled``, on every framework, ASGI and WSGI."""

from __future__ import annotations

import socket
import time

import httpx
import pytest
from servers import free_port, gunicorn_argv, process_server, uvicorn_argv

SERVERS = {
    "fastapi": lambda port: uvicorn_argv("stall_apps:fastapi_app", port),
    "flask": lambda port: gunicorn_argv("stall_apps:flask_app", port),
    "django-asgi": lambda port: uvicorn_argv("stall_apps:django_asgi", port),
    "django-wsgi": lambda port: gunicorn_argv("stall_apps:django_wsgi", port),
}


@pytest.mark.parametrize("server", list(SERVERS))
def test_a_reader_that_stops_reading_is_dropped(server: str) -> None:
    port = free_port()
    with process_server(SERVERS[server](port), port) as url:
        sock = socket.socket()
        # A small window: the server's writes stop making progress soon.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.connect(("127.0.0.1", port))
        try:
            sock.sendall(b"GET /flood HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            assert sock.recv(64).startswith(b"HTTP/1.1 200")
            # ... and then nothing more is read, while the socket stays open.
            deadline = time.monotonic() + 10
            while True:
                state = httpx.get(f"{url}/_flood").json()
                # The outcome is reported as the stream is dropped; a sync upstream is
                # closed a moment later, by its own thread.
                if (state["outcomes"] and state["closed"]) or time.monotonic() > deadline:
                    break
                time.sleep(0.1)
            assert state["outcomes"] == ["client_stalled"], state
            assert state["closed"] == 1, state
            pulled = state["pulled"]
            time.sleep(0.5)
            assert httpx.get(f"{url}/_flood").json()["pulled"] == pulled  # nothing more
        finally:
            sock.close()
        # The server serves on.
        assert httpx.get(f"{url}/_flood").status_code == 200
