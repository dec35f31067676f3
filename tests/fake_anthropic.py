"""A local server speaking Anthropic's Messages API (``POST /v1/messages``) for the real SDK.

with FakeAnthropic() as server:
    client = anthropic.Anthropic(api_key="test", base_url=server.url, max_retries=0)

A streamed answer is Anthropic's event sequence: ``message_start`` (input tokens),
a ``ping``, then per content block ``content_block_start`` / ``content_block_delta``
(``text_delta``, ``thinking_delta`` plus one ``signature_delta``, ``input_json_delta``)
/ ``content_block_stop``, then ``message_delta`` (stop reason, the cumulative
output tokens) and ``message_stop``.  Every event has an ``event:`` line naming
its type, as the SDK requires.  A :class:`Reply` scripts one answer per model.
"""

from __future__ import annotations

import json
import select
import time
from dataclasses import dataclass
from typing import Any, Literal

from fake_indoxrouter import (
    ClientGone,
    FakeServer,
    Script,
    StreamOutcome,
    StreamRecord,
    _Handler,
    _Stopped,
)

SIGNATURE = "EqQBCkYIARgCIkDfakesignature"

BlockKind = Literal["text", "thinking", "tool_use"]


@dataclass(frozen=True)
class Block:
    """One content block: its kind and the deltas it streams."""

    kind: BlockKind
    pieces: tuple[str, ...]
    name: str = ""
    id: str = ""


def text(*pieces: str) -> Block:
    return Block("text", pieces)


def thinking(*pieces: str) -> Block:
    return Block("thinking", pieces)


def tool_use(name: str, *pieces: str, id: str = "toolu_01") -> Block:
    """A tool call whose ``partial_json`` arrives in ``pieces`` (the first one empty, as real)."""
    return Block("tool_use", ("", *pieces), name=name, id=id)


@dataclass(frozen=True)
class Reply(Script):
    """A scripted Anthropic answer.  Without ``blocks`` it is one text block of ``texts``.

    ``error_after`` counts deltas over all blocks: after that many, an ``error``
    event (``error_type``, ``error_message``) ends the stream, as Anthropic's
    overloaded errors do.  ``delay``/``first_delay`` are silences before deltas,
    during which a ``ping`` event goes out every ``keepalive`` seconds.
    """

    blocks: tuple[Block, ...] = ()
    stop_reason: str = "end_turn"
    error_type: str = "overloaded_error"
    error_message: str = "Overloaded"
    input_tokens: int | None = None
    """``None``: the words of the system prompt and the messages."""


def input_tokens(body: dict[str, Any]) -> int:
    """A stable token count for a request: the words of its system prompt and messages."""
    system = body.get("system") or ""
    if not isinstance(system, str):
        system = " ".join(str(block.get("text", "")) for block in system)
    words = system.split()
    for message in body.get("messages") or []:
        content = message.get("content", "")
        words += (content if isinstance(content, str) else json.dumps(content)).split()
    return max(1, len(words))


def event(payload: dict[str, Any]) -> bytes:
    """One SSE event as Anthropic sends it: ``event: <type>`` then its JSON data."""
    return f"event: {payload['type']}\ndata: {json.dumps(payload)}\n\n".encode()


def _start_block(block: Block) -> dict[str, Any]:
    if block.kind == "text":
        return {"type": "text", "text": ""}
    if block.kind == "thinking":
        return {"type": "thinking", "thinking": "", "signature": ""}
    return {"type": "tool_use", "id": block.id, "name": block.name, "input": {}}


def _delta(block: Block, piece: str) -> dict[str, Any]:
    if block.kind == "text":
        return {"type": "text_delta", "text": piece}
    if block.kind == "thinking":
        return {"type": "thinking_delta", "thinking": piece}
    return {"type": "input_json_delta", "partial_json": piece}


class FakeAnthropic(FakeServer):
    """The Messages API: the key as ``x-api-key`` (or as a bearer token, as recent SDKs
    send it), JSON errors in Anthropic's shape, SSE streams.

    ``streams`` records each stream and how it ended (``client_closed`` when the
    client hung up the HTTP connection before the end); ``sent`` counts deltas.
    """

    def handle(self, handler: _Handler, path: str, body: Any) -> None:
        if path != "/v1/messages":
            self.send_error(handler, 404, "not_found_error", f"no route {path}")
        elif self.api_key not in (
            handler.headers.get("x-api-key"),
            (handler.headers.get("Authorization") or "").removeprefix("Bearer "),
        ):
            self.send_error(handler, 401, "authentication_error", "invalid x-api-key")
        elif not handler.headers.get("anthropic-version"):
            self.send_error(handler, 400, "invalid_request_error", "anthropic-version missing")
        else:
            script = self.reply_for(str(body.get("model")))
            if script.status != 200:
                kind = {404: "not_found_error", 429: "rate_limit_error"}.get(
                    script.status, "api_error" if script.status >= 500 else "invalid_request_error"
                )
                self.send_error(handler, script.status, kind, script.error_message)
            elif body.get("stream"):
                self.stream_reply(handler, path, body, script)
            else:
                handler.send_json(200, self.full_message(body, script))

    def send_error(self, handler: _Handler, status: int, kind: str, message: str) -> None:
        payload = {"type": "error", "error": {"type": kind, "message": message}}
        handler.send_json(status, payload, {"request-id": "req_fake"})

    def reply_for(self, model: str) -> Reply:
        script = self.script_for(model)
        if isinstance(script, Reply):
            return script
        return Reply(
            texts=script.texts,
            delay=script.delay,
            first_delay=script.first_delay,
            error_after=script.error_after,
            keepalive=script.keepalive,
            status=script.status,
        )

    def message(self, body: dict[str, Any], script: Reply) -> dict[str, Any]:
        prompt = script.input_tokens if script.input_tokens is not None else input_tokens(body)
        return {
            "id": "msg_fake",
            "type": "message",
            "role": "assistant",
            "model": body.get("model"),
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {
                "input_tokens": prompt,
                "cache_creation_input_tokens": 0,
                "cache_read_input_tokens": 0,
                "output_tokens": 1,
            },
        }

    def stream_reply(
        self, handler: _Handler, path: str, body: dict[str, Any], script: Reply
    ) -> None:
        """Stream ``script``'s events, recording how the stream ended."""
        model = str(body.get("model"))
        record = StreamRecord(path, model, body, time.monotonic())
        with self._changed:
            self.streams.append(record)
            self._changed.notify_all()
        blocks = script.blocks or (text(*script.texts),)
        outcome: StreamOutcome = "client_closed"
        try:
            handler.start_stream()
            handler.write_chunk(
                event({"type": "message_start", "message": self.message(body, script)})
            )
            handler.write_chunk(event({"type": "ping"}))
            failed = False
            for index, block in enumerate(blocks):
                start = {"type": "content_block_start", "index": index}
                handler.write_chunk(event({**start, "content_block": _start_block(block)}))
                for piece in block.pieces:
                    if script.error_after is not None and record.sent == script.error_after:
                        failed = True
                        break
                    self._wait(
                        handler, script, script.first_delay if record.sent == 0 else script.delay
                    )
                    delta = {"type": "content_block_delta", "index": index}
                    handler.write_chunk(event({**delta, "delta": _delta(block, piece)}))
                    record.sent += 1
                if failed:
                    break
                if block.kind == "thinking":
                    signature = {"type": "signature_delta", "signature": SIGNATURE}
                    handler.write_chunk(
                        event({"type": "content_block_delta", "index": index, "delta": signature})
                    )
                handler.write_chunk(event({"type": "content_block_stop", "index": index}))
            if failed or script.error_after is not None:
                error = {"type": script.error_type, "message": script.error_message}
                handler.write_chunk(event({"type": "error", "error": error}))
            else:
                usage = {"output_tokens": record.sent}
                stop = {"stop_reason": script.stop_reason, "stop_sequence": None}
                handler.write_chunk(event({"type": "message_delta", "delta": stop, "usage": usage}))
                handler.write_chunk(event({"type": "message_stop"}))
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

    def _wait(self, handler: _Handler, script: Reply, seconds: float) -> None:
        """Stay silent ``seconds`` (pinging every ``keepalive``), noticing a client that leaves."""
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
                handler.write_chunk(event({"type": "ping"}))
                next_ping = now + (script.keepalive or 0)
            wake = min(deadline, next_ping or deadline) - now
            select.select([handler.connection], [], [], min(max(wake, 0.0), 0.05))

    def full_message(self, body: dict[str, Any], script: Reply) -> dict[str, Any]:
        """The non-streamed answer: the same blocks, complete."""
        content: list[dict[str, Any]] = []
        for block in script.blocks or (text(*script.texts),):
            joined = "".join(block.pieces)
            if block.kind == "text":
                content.append({"type": "text", "text": joined})
            elif block.kind == "thinking":
                content.append({"type": "thinking", "thinking": joined, "signature": SIGNATURE})
            else:
                content.append(
                    {
                        "type": "tool_use",
                        "id": block.id,
                        "name": block.name,
                        "input": json.loads(joined),
                    }
                )
        message = self.message(body, script)
        deltas = sum(len(block.pieces) for block in script.blocks or (text(*script.texts),))
        message["usage"]["output_tokens"] = deltas
        return {**message, "content": content, "stop_reason": script.stop_reason}
