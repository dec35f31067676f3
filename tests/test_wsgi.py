"""The WSGI client probe, on real loopback connections, and the refused-body drain."""

from __future__ import annotations

import io
import socket
import time

from indox_integrations.wsgi import DRAIN_BYTES, client_gone, discard_body


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


def test_discard_body_reads_exactly_the_declared_rest_and_no_further() -> None:
    stream = io.BytesIO(b"x" * 300_000 + b"GET /next HTTP/1.1\r\n")
    assert discard_body({"wsgi.input": stream, "CONTENT_LENGTH": "300000"}) is True
    assert stream.read() == b"GET /next HTTP/1.1\r\n"


def test_discard_body_reads_a_terminated_chunked_body_to_its_end() -> None:
    stream = io.BytesIO(b"y" * 200_000)
    environ = {"wsgi.input": stream, "wsgi.input_terminated": True}
    assert discard_body(environ) is True
    assert stream.read() == b""


def test_discard_body_gives_up_past_its_bound_and_leaves_the_close_to_the_server() -> None:
    declared = io.BytesIO(b"z" * 10)
    environ = {"wsgi.input": declared, "CONTENT_LENGTH": str(DRAIN_BYTES + 1)}
    assert discard_body(environ) is False
    assert declared.tell() == 0  # too large to be worth reading: not a byte read

    class Endless:
        served = 0

        def read(self, size: int) -> bytes:
            self.served += size
            return b"z" * size

    endless = Endless()
    assert discard_body({"wsgi.input": endless, "wsgi.input_terminated": True}) is False
    assert endless.served == DRAIN_BYTES + 1


def test_discard_body_never_reads_an_unframed_body() -> None:
    # No Content-Length and a server that does not end the stream: reading could block.
    class Untouchable:
        def read(self, size: int) -> bytes:
            raise AssertionError("read past what PEP 3333 allows")

    assert discard_body({"wsgi.input": Untouchable()}) is True
    assert discard_body({"CONTENT_LENGTH": "0", "wsgi.input": Untouchable()}) is True
