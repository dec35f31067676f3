"""A local server speaking indoxRouter's HTTP API, for the real ``indoxrouter`` client.

The base class :class:`FakeServer` is shared with ``fake_openai.py``: a threaded
HTTP/1.1 server on 127.0.0.1 whose streams follow a :class:`Script` picked by the
request's model, and which records how each stream ended, in particular whether
the client closed the connection before the stream was over.
"""

from __future__ import annotations

import contextlib
import json
import select
import socket
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal
from urllib.parse import parse_qs

API_KEY = "test"
ACCESS_TOKEN = "fake-jwt-token"

StreamOutcome = Literal["completed", "client_closed", "server_stopped"]


@dataclass(frozen=True)
class Script:
    """What one streamed answer looks like on the wire."""

    texts: tuple[str, ...] = ("Hello", ", world", "!")
    delay: float = 0.0
    """Seconds of silence before each text after the first."""
    first_delay: float = 0.0
    """Seconds of silence before the first text."""
    error_after: int | None = None
    """Send an ``{"error": ...}`` chunk after this many texts (and then ``[DONE]``)."""
    error_message: str = "provider overloaded"
    keepalive: float | None = None
    """While silent, send a keep-alive every this many seconds."""
    keepalive_comment: bool = False
    """Keep-alive as an SSE comment line (clients yield nothing) instead of an empty chunk."""
    usage: bool = True
    status: int = 200
    """A non-200 status answers with a JSON error body instead."""

    @classmethod
    def words(cls, text: str, **options: Any) -> Script:
        """A script streaming ``text`` word by word (spaces kept)."""
        pieces = [word + " " for word in text.split(" ")]
        pieces[-1] = pieces[-1][:-1]
        return cls(texts=tuple(piece for piece in pieces if piece), **options)


@dataclass
class StreamRecord:
    """One streamed response, as the server saw it."""

    path: str
    model: str
    body: dict[str, Any]
    started: float
    sent: int = 0
    ended: float | None = None
    outcome: StreamOutcome | None = None

    @property
    def ended_early(self) -> bool:
        return self.outcome == "client_closed"


@dataclass(frozen=True)
class RecordedRequest:
    """One request as received; header names in lower case."""

    method: str
    path: str
    headers: dict[str, str]
    body: Any


class ClientGone(Exception):
    """The client closed the connection."""


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _HTTPServer

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def setup(self) -> None:
        # Tests count the threads of the code under test: these are not.
        threading.current_thread().name = "fake-upstream"
        super().setup()

    def do_GET(self) -> None:
        self._dispatch(None)

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        body: Any = raw.decode("utf-8", "replace")
        ctype = self.headers.get("Content-Type", "")
        if "json" in ctype and raw:
            body = json.loads(raw)
        elif "form" in ctype:
            body = {k: v[0] for k, v in parse_qs(body).items()}
        self._dispatch(body)

    def _dispatch(self, body: Any) -> None:
        fake = self.server.fake
        path = self.path.split("?", 1)[0]
        headers = {name.lower(): value for name, value in self.headers.items()}
        fake.record_request(RecordedRequest(self.command, path, headers, body))
        try:
            fake.handle(self, path, body)
        except ClientGone:
            self.close_connection = True

    def send_json(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def start_stream(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream; charset=utf-8")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        self.wfile.flush()

    def write_chunk(self, data: bytes) -> None:
        try:
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
            self.wfile.flush()
        except OSError as exc:
            raise ClientGone from exc

    def end_stream(self) -> None:
        with contextlib.suppress(OSError):
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()

    def client_gone(self) -> bool:
        """True once the client closed its end (the socket reads EOF)."""
        sock: socket.socket = self.connection
        try:
            readable, _, _ = select.select([sock], [], [], 0)
            return bool(readable) and sock.recv(1, socket.MSG_PEEK) == b""
        except OSError:
            return True


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128
    fake: FakeServer

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that resets a kept-alive connection is not a server failure.
        if not isinstance(sys.exc_info()[1], OSError):
            super().handle_error(request, client_address)


class FakeServer:
    """A threaded HTTP server on 127.0.0.1, started by ``with``; subclasses speak a protocol.

    ``scripts`` maps a model name to its :class:`Script`; other models get
    ``default``.  ``streams`` records every streamed response.
    """

    def __init__(self, api_key: str = API_KEY, default: Script | None = None) -> None:
        self.api_key = api_key
        self.default = default or Script()
        self.scripts: dict[str, Script] = {}
        self.streams: list[StreamRecord] = []
        self.requests: list[RecordedRequest] = []
        self._changed = threading.Condition()
        self._stopping = threading.Event()
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle -------------------------------------------------------------

    def __enter__(self) -> FakeServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        httpd = self._httpd = _HTTPServer(("127.0.0.1", 0), _Handler)
        httpd.fake = self
        self._thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(10)

    @property
    def url(self) -> str:
        assert self._httpd is not None, "start the server first"
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    # -- records ---------------------------------------------------------------

    def record_request(self, request: RecordedRequest) -> None:
        with self._changed:
            self.requests.append(request)

    def paths(self) -> list[str]:
        with self._changed:
            return [request.path for request in self.requests]

    def wait_ended(
        self, count: int = 1, timeout: float = 10.0, model: str | None = None
    ) -> list[StreamRecord]:
        """Wait until ``count`` streams (of ``model``, if given) have ended; return them all."""

        def matching() -> list[StreamRecord]:
            return [s for s in self.streams if model is None or s.model == model]

        def enough() -> bool:
            return sum(s.ended is not None for s in matching()) >= count

        with self._changed:
            if not self._changed.wait_for(enough, timeout):
                raise AssertionError(
                    f"expected {count} ended streams within {timeout} s, got {matching()}"
                )
            return matching()

    def script_for(self, model: str) -> Script:
        return self.scripts.get(model, self.default)

    # -- protocol (subclasses) -------------------------------------------------

    def handle(self, handler: _Handler, path: str, body: Any) -> None:
        raise NotImplementedError

    def text_chunk(self, kind: str, model: str, text: str) -> dict[str, Any]:
        raise NotImplementedError

    def closing_chunks(self, kind: str, model: str, usage: dict[str, int] | None) -> list[Any]:
        raise NotImplementedError

    def error_chunk(self, message: str) -> dict[str, Any]:
        return {"error": message}

    def opening_chunks(self, kind: str, model: str) -> list[Any]:
        return []

    def include_usage(self, body: dict[str, Any]) -> bool:
        return True

    # -- streaming -------------------------------------------------------------

    def stream(self, handler: _Handler, path: str, kind: str, body: dict[str, Any]) -> None:
        """Answer with the script's SSE stream, recording how it ended."""
        model = str(body.get("model"))
        script = self.script_for(model)
        record = StreamRecord(path, model, body, time.monotonic())
        with self._changed:
            self.streams.append(record)
            self._changed.notify_all()
        outcome: StreamOutcome = "client_closed"
        try:
            handler.start_stream()
            for chunk in self.opening_chunks(kind, model):
                handler.write_chunk(sse(chunk))
            for index, text in enumerate(script.texts):
                if script.error_after is not None and index == script.error_after:
                    break
                pause = script.first_delay if index == 0 else script.delay
                self._silence(handler, script, kind, model, pause)
                handler.write_chunk(sse(self.text_chunk(kind, model, text)))
                record.sent += 1
            if script.error_after is not None:
                handler.write_chunk(sse(self.error_chunk(script.error_message)))
            else:
                wanted = script.usage and self.include_usage(body)
                usage = usage_of(body, record.sent) if wanted else None
                for chunk in self.closing_chunks(kind, model, usage):
                    handler.write_chunk(sse(chunk))
            handler.write_chunk(b"data: [DONE]\n\n")
            handler.end_stream()
            outcome = "completed"
        except _Stopped:
            outcome = "server_stopped"
            handler.close_connection = True
        except ClientGone:
            handler.close_connection = True
        finally:
            with self._changed:
                record.ended = time.monotonic()
                record.outcome = outcome
                self._changed.notify_all()

    def _silence(
        self, handler: _Handler, script: Script, kind: str, model: str, seconds: float
    ) -> None:
        """Wait ``seconds``, sending keep-alives, and notice at once when the client leaves."""
        deadline = time.monotonic() + seconds
        next_ping = time.monotonic() + script.keepalive if script.keepalive else None
        while True:
            if handler.client_gone():
                raise ClientGone
            if self._stopping.is_set():
                raise _Stopped
            now = time.monotonic()
            if now >= deadline:
                return
            if next_ping is not None and now >= next_ping:
                ping = (
                    b": keep-alive\n\n"
                    if script.keepalive_comment
                    else sse(self.text_chunk(kind, model, ""))
                )
                handler.write_chunk(ping)
                next_ping = now + (script.keepalive or 0)
            wake = min(deadline, next_ping or deadline) - now
            select.select([handler.connection], [], [], min(max(wake, 0.0), 0.05))


class _Stopped(Exception):
    pass


def sse(payload: Any) -> bytes:
    return b"data: " + json.dumps(payload).encode() + b"\n\n"


def prompt_tokens(body: dict[str, Any]) -> int:
    """A stable token count for the request: its words."""
    if "messages" in body:
        text = " ".join(str(m.get("content", "")) for m in body["messages"])
    else:
        text = str(body.get("prompt", ""))
    return max(1, len(text.split()))


def usage_of(body: dict[str, Any], completion: int) -> dict[str, int]:
    prompt = prompt_tokens(body)
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }


class FakeIndoxRouter(FakeServer):
    """indoxRouter's API: key exchange, ``chat/completions`` and ``completions``.

    with FakeIndoxRouter() as server:
        client = indoxrouter.Client(api_key="test", base_url=server.url)
    """

    provider = "openai"
    cost_per_token = 0.000002
    usage_style: Literal["chunk", "is_usage_info"] = "chunk"
    """``chunk``: a final ``{"usage": ..., "model", "provider", "cost"}`` chunk;
    ``is_usage_info``: the streaming guide's ``{"is_usage_info": true, ...}`` record."""

    def handle(self, handler: _Handler, path: str, body: Any) -> None:
        if path == "/api/v1/auth/api-key":
            if handler.headers.get("X-API-Key") == self.api_key:
                handler.send_json(
                    200,
                    {"access_token": ACCESS_TOKEN, "token_type": "bearer"},
                    {"Set-Cookie": f"access_token={ACCESS_TOKEN}; Path=/; HttpOnly"},
                )
            else:
                handler.send_json(401, {"detail": "Invalid API key"})
        elif path == "/api/v1/auth/token":
            handler.send_json(401, {"detail": "Incorrect username or password"})
        elif path in ("/api/v1/chat/completions", "/api/v1/completions"):
            if handler.headers.get("Authorization") != f"Bearer {ACCESS_TOKEN}":
                handler.send_json(401, {"detail": "Not authenticated"})
                return
            kind = "chat" if "chat" in path else "completion"
            script = self.script_for(str(body.get("model")))
            if script.status != 200:
                handler.send_json(script.status, {"detail": script.error_message})
            elif body.get("stream"):
                self.stream(handler, path, kind, body)
            else:
                handler.send_json(200, self.full_response(body, script))
        else:
            handler.send_json(404, {"detail": "Not Found"})

    def text_chunk(self, kind: str, model: str, text: str) -> dict[str, Any]:
        choice: dict[str, Any] = (
            {"index": 0, "delta": {"content": text}, "finish_reason": None}
            if kind == "chat"
            else {"index": 0, "text": text, "finish_reason": None}
        )
        return {
            "id": "chunk-1",
            "object": "chat.completion.chunk" if kind == "chat" else "text_completion",
            "model": model,
            "provider": self.provider,
            "choices": [choice],
        }

    def closing_chunks(self, kind: str, model: str, usage: dict[str, int] | None) -> list[Any]:
        finish: dict[str, Any] = (
            {"index": 0, "delta": {}, "finish_reason": "stop"}
            if kind == "chat"
            else {"index": 0, "text": "", "finish_reason": "stop"}
        )
        chunks: list[Any] = [
            {"id": "chunk-1", "model": model, "provider": self.provider, "choices": [finish]}
        ]
        if usage is not None:
            cost = round(usage["total_tokens"] * self.cost_per_token, 8)
            if self.usage_style == "is_usage_info":
                chunks.append(
                    {
                        "is_usage_info": True,
                        "usage": {
                            "tokens_prompt": usage["prompt_tokens"],
                            "tokens_completion": usage["completion_tokens"],
                            "tokens_total": usage["total_tokens"],
                        },
                        "cost": cost,
                        "model": model,
                        "provider": self.provider,
                    }
                )
            else:
                chunks.append(
                    {"usage": usage, "cost": cost, "model": model, "provider": self.provider}
                )
        return chunks

    def full_response(self, body: dict[str, Any], script: Script) -> dict[str, Any]:
        """indoxRouter's non-streamed answer: ``data`` holds the text, ``usage`` the counts."""
        usage = usage_of(body, len(script.texts))
        return {
            "request_id": str(uuid.uuid4()),
            "created_at": "2025-01-01T00:00:00Z",
            "duration_ms": 12.5,
            "provider": self.provider,
            "model": body.get("model"),
            "success": True,
            "message": "",
            "usage": {
                "tokens_prompt": usage["prompt_tokens"],
                "tokens_completion": usage["completion_tokens"],
                "tokens_total": usage["total_tokens"],
                "cost": round(usage["total_tokens"] * self.cost_per_token, 8),
            },
            "data": "".join(script.texts),
            "finish_reason": "stop",
        }
