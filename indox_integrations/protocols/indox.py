"""The kit's own wire (``protocol="indox"``, the default).

Raw text ``data:`` lines, so the guide's line readers keep working, then
named events for everything else::

    : stream open
    data: Once upon a time
    event: reasoning / tool_call_delta / tool_call
    event: finish        {"reason": "stop"}
    event: usage         with usage="attach"
    event: error         {"type": ..., "message": ...}
    event: done          data: [DONE]
"""

from __future__ import annotations

import json
from typing import Any

from ..events import Event, FinishReason, ReasoningEvent, ToolCallDeltaEvent, ToolCallEvent
from ..sse import encode_comment, encode_data, encode_event
from . import StreamProtocol

__all__ = ["IndoxProtocol"]

OPEN = encode_comment("stream open")
PING = encode_comment("ping")
DONE = encode_event("[DONE]", event="done")


class IndoxProtocol(StreamProtocol):
    """``message`` events of raw text; ``reasoning``, ``tool_call_delta``, ``tool_call``,
    ``finish``, ``usage``, ``error`` events of JSON; ``done`` last."""

    name = "indox"

    def open(self) -> bytes:
        return OPEN

    def text(self, text: str) -> bytes:
        return encode_data(text)

    def encode(self, event: Event) -> bytes:
        if type(event) is ReasoningEvent:
            return encode_event(event.text, event="reasoning")
        if type(event) is ToolCallDeltaEvent:
            delta = {
                "index": event.index,
                "id": event.id,
                "name": event.name,
                "arguments": event.arguments,
            }
            return encode_event(json.dumps(delta), event="tool_call_delta")
        if type(event) is ToolCallEvent:
            call: dict[str, Any] = {
                "index": event.index,
                "id": event.id,
                "name": event.name,
                "arguments": event.arguments,
            }
            if not event.valid:
                call["invalid_arguments"] = True
            return encode_event(json.dumps(call), event="tool_call")
        raise TypeError(f"the indox protocol does not encode {type(event).__name__}")

    def ping(self) -> bytes:
        return PING

    def error(self, kind: str, message: str) -> bytes:
        return encode_event(json.dumps({"type": kind, "message": message}), event="error") + DONE

    def end(self, reason: FinishReason, usage: dict[str, Any] | None) -> bytes:
        out = b""
        # Without usage, a plain answer keeps the exact wire of indoxRouter's guide.
        if self.attach_usage or reason != "stop":
            out += encode_event(json.dumps({"reason": reason}), event="finish")
        if self.attach_usage and usage is not None:
            out += encode_event(json.dumps(usage), event="usage")
        return out + DONE
