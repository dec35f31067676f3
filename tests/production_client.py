"""The client, gates and records of the production tests' servers (FastAPI, Flask, Django).

Each server runs in a process of its own, so that the process-wide stream
count (``indox_integrations.overload.LIMITER``) holds only the test's streams.
The prompt (or last message) is the JSON ``{"id": ..., "n": ...}`` (with
``"raise": true`` the call fails): the upstream sends ``start``, waits until
``POST /_gate`` opens its gate, sends ``end`` and a usage chunk whose
``prompt_tokens`` is ``n``.  ``GET /_state``
reports the calls, the open streams, the usage records (from ``on_complete``
and from the kit's log record) and every log record at WARNING or above.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator
from typing import Any

from indox_integrations import ChatRequest, StreamReport
from indox_integrations.clients import LLMRequest
from indox_integrations.overload import LIMITER

_lock = threading.Lock()
_gates: dict[str, threading.Event] = {}
_calls: list[str] = []
_active: list[str] = []
_records: list[dict[str, Any]] = []
_logs: list[dict[str, Any]] = []
_all_open = threading.Event()


def _gate(stream_id: str) -> threading.Event:
    with _lock:
        if stream_id not in _gates:
            _gates[stream_id] = threading.Event()
            if _all_open.is_set():
                _gates[stream_id].set()
        return _gates[stream_id]


def client(request: LLMRequest) -> Iterator[Any]:
    """A plain callable client: one held upstream per call."""
    text = request.messages[-1]["content"] if isinstance(request, ChatRequest) else request.prompt
    spec = json.loads(text)
    stream_id = str(spec["id"])
    with _lock:
        _calls.append(stream_id)
    if spec.get("raise"):
        raise ConnectionError("the provider is unreachable")
    return _upstream(stream_id, int(spec.get("n", 1)))


def _upstream(stream_id: str, n: int) -> Iterator[Any]:
    with _lock:
        _active.append(stream_id)
    try:
        yield "start "
        gate = _gate(stream_id)
        for _ in range(1500):  # at most 30 s
            if gate.wait(0.02):
                break
            yield ""  # a content-less chunk: lets the kit close us while we wait
        yield "end"
        yield {
            "is_usage_info": True,
            "usage": {"tokens_prompt": n, "tokens_completion": 1, "tokens_total": n + 1},
            "model": "test/held",
        }
    finally:
        with _lock:
            _active.remove(stream_id)


def open_gate(stream_id: str) -> None:
    """Let one stream (or, with ``"*"``, every stream, also those to come) finish."""
    if stream_id == "*":
        _all_open.set()
        with _lock:
            gates = list(_gates.values())
        for gate in gates:
            gate.set()
    else:
        _gate(stream_id).set()


def record_complete(report: StreamReport) -> None:
    """``on_complete``: who was charged for what."""
    usage = report.usage or {}
    with _lock:
        _records.append(
            {
                "source": "on_complete",
                "context": report.context,
                "prompt_tokens": usage.get("prompt_tokens"),
                "outcome": report.outcome,
            }
        )


class _Recorder(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        entry: dict[str, Any] | None = None
        report = getattr(record, "indox_stream", None)
        if isinstance(report, StreamReport):
            usage = report.usage or {}
            entry = {
                "source": "log",
                "context": getattr(record, "indox_context", None),
                "prompt_tokens": usage.get("prompt_tokens"),
                "outcome": report.outcome,
            }
        with _lock:
            if entry is not None:
                _records.append(entry)
            if record.levelno >= logging.WARNING:
                _logs.append(
                    {
                        "level": record.levelname,
                        "logger": record.name,
                        "message": record.getMessage(),
                    }
                )


def install_recorder() -> None:
    """Record the kit's stream reports and every warning or error of the process."""
    root = logging.getLogger()
    if not any(isinstance(handler, _Recorder) for handler in root.handlers):
        root.addHandler(_Recorder(logging.INFO))
    logging.getLogger("indox_integrations").setLevel(logging.INFO)
    # Servers keep their own loggers from propagating; listen to them directly.
    for name in ("uvicorn", "uvicorn.error", "gunicorn.error", "django", "werkzeug", "flask.app"):
        logger = logging.getLogger(name)
        if not logger.propagate and not any(isinstance(h, _Recorder) for h in logger.handlers):
            logger.addHandler(_Recorder(logging.WARNING))


def state() -> dict[str, Any]:
    with _lock:
        return {
            "calls": list(_calls),
            "active": list(_active),
            "open_streams": LIMITER.open_streams(),
            "records": list(_records),
            "logs": list(_logs),
        }


def reset() -> None:
    _all_open.clear()
    with _lock:
        for gate in _gates.values():
            gate.set()
        _gates.clear()
        _calls.clear()
        _records.clear()
        _logs.clear()
