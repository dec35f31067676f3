"""What a WSGI server can tell about its client, beyond the PEP 3333 interface."""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["abort", "client_gone", "discard_body"]

DRAIN_BYTES = 16 * 1024 * 1024
"""How much of a refused request body is read and dropped, at most."""
DRAIN_SECONDS = 5.0

# The connection, as gunicorn and Werkzeug expose it in the environ.
_SOCKET_KEYS = ("gunicorn.socket", "werkzeug.socket")


def client_gone(environ: Mapping[str, Any]) -> Callable[[], bool] | None:
    """A probe telling whether the client closed its connection, or ``None``.

    It peeks at the connection without consuming anything: an orderly close
    reads as end-of-file, a reset as an error; pending bytes (a pipelined
    request) or nothing yet mean the client is still there.
    """
    sock = next((environ[key] for key in _SOCKET_KEYS if key in environ), None)
    if not isinstance(sock, socket.socket) or not hasattr(socket, "MSG_DONTWAIT"):
        return None

    def probe() -> bool:
        try:
            return sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
        except (BlockingIOError, InterruptedError):
            return False
        except ValueError:  # TLS sockets refuse flags: no answer there
            return False
        except OSError:
            return True

    return probe


def discard_body(environ: Mapping[str, Any]) -> bool:
    """Read and drop the rest of a refused request body; ``True`` if it all went.

    With a ``Content-Length``, call it before reading any of the body.

    A response sent before the body was read leaves that body on the
    connection. gunicorn drains 64 KiB of it at most, then closes the
    connection it has just announced as kept alive, so the client's next
    request on it fails; a server that closes with unread bytes sends a reset,
    which can destroy the response before the client reads it. Draining keeps
    the connection usable, bounded by :data:`DRAIN_BYTES` and
    :data:`DRAIN_SECONDS`: past those the server closes it, as it would have.
    A WSGI app cannot ask for ``Connection: close`` itself (wsgiref refuses
    hop-by-hop headers, gunicorn drops them).
    """
    stream = environ.get("wsgi.input")
    try:
        length = int(environ.get("CONTENT_LENGTH") or "")
    except ValueError:  # no length: readable to the end only if the server ends it
        if stream is None or not environ.get("wsgi.input_terminated"):
            return True
        remaining = DRAIN_BYTES + 1
        chunked = True
    else:
        remaining = length
        if stream is None or remaining > DRAIN_BYTES:
            return remaining <= 0
        chunked = False
    deadline = time.monotonic() + DRAIN_SECONDS
    try:
        while remaining > 0:
            if time.monotonic() > deadline:
                return False
            part = stream.read(min(64 * 1024, remaining))
            if not part:
                return True
            remaining -= len(part)
    except (OSError, ValueError):  # the client left mid-body
        return False
    return not chunked


def abort(environ: Mapping[str, Any]) -> Callable[[], None] | None:
    """A way to drop the connection of a client that stopped reading, or ``None``.

    It shuts the server's socket down, so the write the server's thread is
    stuck in fails at once and the server closes the response, as it does for
    a client that left.
    """
    sock = next((environ[key] for key in _SOCKET_KEYS if key in environ), None)
    if not isinstance(sock, socket.socket):
        return None

    def shut() -> None:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)

    return shut
