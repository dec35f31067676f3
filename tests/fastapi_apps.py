"""FastAPI apps for the real-server tests, served in-process by ``servers.uvicorn_thread``.

The client is a plain callable, so the tests share its ``Tracker``.  The
request's model picks the upstream: ``sync``/``async`` are the recording fakes
of ``upstreams.py``, ``async-call`` returns the async one from a coroutine,
``slow-call`` blocks in the call for ``call_delay`` s before returning the sync
one, ``demo/*`` is the demo client and ``raise/<ExceptionName>`` fails in the
call.  The prompt (or last message) is the JSON of the fake's keyword
arguments, e.g. ``{"chunks": 20, "delay": 0.05}``, plus ``"tricky": true``
(the tricky texts) or ``"chunk_size": n`` (chunks of ``n`` characters).
"""

from __future__ import annotations

import json
import threading
import time
from typing import Any

from fastapi import FastAPI
from starlette.middleware.gzip import DEFAULT_EXCLUDED_CONTENT_TYPES, GZipMiddleware
from upstreams import TRICKY_TEXTS, Tracker, async_upstream, sync_upstream

from indox_integrations import ChatRequest, DemoClient, call_client
from indox_integrations.clients import LLMRequest
from indox_integrations.fastapi import create_router


class RateLimitError(Exception):
    pass


class AuthenticationError(Exception):
    pass


ERRORS: dict[str, type[Exception]] = {
    "ValueError": ValueError,
    "RateLimitError": RateLimitError,
    "AuthenticationError": AuthenticationError,
}


class ScenarioClient:
    """Counts its calls; each upstream it starts reports to the current ``tracker``."""

    def __init__(self) -> None:
        self.tracker = Tracker()
        self.calls = 0
        self.call_threads: list[str] = []
        self._lock = threading.Lock()
        self._demo = DemoClient(delay=0.0)

    def reset(self) -> Tracker:
        with self._lock:
            self.tracker = Tracker()
            self.calls = 0
            self.call_threads.clear()
            return self.tracker

    def __call__(self, request: LLMRequest) -> Any:
        with self._lock:
            self.calls += 1
            self.call_threads.append(threading.current_thread().name)
            tracker = self.tracker
        model = request.model or "sync"
        if model.startswith("demo/"):
            return call_client(self._demo, request)
        if model.startswith("raise/"):
            raise ERRORS[model.partition("/")[2]]("the client refused: bad key sk-test-123")
        text = (
            request.messages[-1]["content"] if isinstance(request, ChatRequest) else request.prompt
        )
        options = json.loads(text)
        if options.pop("tricky", False):
            options["chunks"] = TRICKY_TEXTS
        if "chunk_size" in options:
            size = options.pop("chunk_size")
            options["chunks"] = [str(i % 10) * size for i in range(options["chunks"])]
        if model == "async-call":
            return _async_call(tracker, options)
        if model == "slow-call":
            # A sync client that spends a while in the call itself, like
            # indoxRouter's, which opens its HTTP request before returning.
            time.sleep(options.pop("call_delay"))
            model = "sync"
        upstream = async_upstream if model == "async" else sync_upstream
        return upstream(tracker, **options)


async def _async_call(tracker: Tracker, options: dict[str, Any]) -> Any:
    return async_upstream(tracker, **options)


CLIENT = ScenarioClient()


def create_app(
    *,
    heartbeat: float | None = 15.0,
    idle_timeout: float | None = 300.0,
    gzip: tuple[str, ...] | None = None,
) -> FastAPI:
    """The router at the root (usage attached) and ``GET /health``.

    ``gzip`` adds ``GZipMiddleware`` excluding those content types.
    """
    app = FastAPI()
    app.include_router(create_router(CLIENT, heartbeat=heartbeat, idle_timeout=idle_timeout))

    @app.get("/health")
    async def health() -> dict[str, bool]:
        return {"ok": True}

    if gzip is not None:
        app.add_middleware(GZipMiddleware, minimum_size=10, exclude_content_types=gzip)
    return app


GZIP_DEFAULT = DEFAULT_EXCLUDED_CONTENT_TYPES
GZIP_EVERYTHING: tuple[str, ...] = ()
