"""The WSGI client probe, on real loopback connections."""

from __future__ import annotations

import socket
import time

from indox_integrations.wsgi import client_gone


def connected_pair() -> tuple[socket.socket, socket.socket]:
    with socket.create_server(("127.0.0.1", 0)) as server:
        client = socket.create_connection(server.getsockname())
        accepted, _ = server.accept()
    return client, accepted


def test_probe_sees_an_orderly_close_and_a_reset() -> None:
    client, accepted = connected_pair()
    probe = client_gone({"gunicorn.socket": accepted})
    assert probe is not None and probe() is False
    client.close()
    time.sleep(0.05)
    assert probe() is True
    accepted.close()

    client, accepted = connected_pair()
    probe = client_gone({"werkzeug.socket": accepted})
    client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    client.close()  # linger 0: a reset
    time.sleep(0.05)
    assert probe is not None and probe() is True
    accepted.close()


def test_pending_bytes_are_not_a_close_and_are_not_consumed() -> None:
    client, accepted = connected_pair()
    probe = client_gone({"gunicorn.socket": accepted})
    client.sendall(b"GET / HTTP/1.1\r\n")
    time.sleep(0.05)
    assert probe is not None and probe() is False
    assert accepted.recv(100) == b"GET / HTTP/1.1\r\n"
    client.close()
    accepted.close()


def test_no_socket_in_the_environ_means_no_probe() -> None:
    assert client_gone({}) is None
    assert client_gone({"gunicorn.socket": object()}) is None
