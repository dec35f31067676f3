"""What a WSGI server can tell about its client, beyond the PEP 3333 interface."""

from __future__ import annotations

import socket
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["client_gone"]

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
