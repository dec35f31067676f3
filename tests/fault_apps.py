"""Clients, upstreams and apps for the fault suite (``test_faults.py``).

``CountingClient`` is the demo client counting its calls: hostile requests must
never reach it.  ``FaultClient`` is a callable client whose model picks the
upstream: ``fault/raise``, ``fault/hang``, ``fault/garbage-<kind>`` (and their
async twins ``afault/...``), or ``track/sync`` / ``track/async``, the recording
fakes of ``upstreams.py`` with the prompt's JSON as their keyword arguments.

This module is also the settings module and the URLconf of the Django servers
(``DJANGO_SETTINGS_MODULE=fault_apps``): the example project's settings and
URLs, with the counting client as ``CLIENT``, ``GET /_faults`` reporting what
the clients saw and ``POST /faults/stream`` serving ``FaultClient``.
"""

from __future__ import annotations

import asyncio
import functools
import json
import threading
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

from upstreams import Tracker, async_upstream, sync_upstream

from example_apps.common import Upstream
from example_apps.django_project import settings as _example_settings
from indox_integrations import ChatRequest, DemoClient
from indox_integrations.clients import LLMRequest

HEARTBEAT = 0.1
IDLE_TIMEOUT = 0.5
HANG = 3.0
"""How long a hanging sync upstream blocks: well past the idle timeout, yet bounded."""

GARBAGE: dict[str, Any] = {
    "object": object(),
    "int": 42,
    "dict": {"weird": 1},
    # No UTF-8 form: half of an emoji's pair, as a provider that splits "\ud83d\ude42"
    # escapes across two chunks would hand it out.
    "surrogate": "lone \ud83d half",
}
FAULTS = ("raise", "hang", "garbage-object", "garbage-int", "garbage-dict")
"""The faults that end in an error event; ``garbage-surrogate`` is text, if broken."""


class CountingClient:
    """The instant demo client (indoxRouter-shaped), counting ``completion``/``chat`` calls."""

    models = DemoClient.models

    def __init__(self) -> None:
        self._demo = DemoClient(delay=0.0)
        self._lock = threading.Lock()
        self.calls = 0

    def _count(self) -> None:
        with self._lock:
            self.calls += 1

    def completion(self, prompt: str, **options: Any) -> Any:
        self._count()
        return self._demo.completion(prompt, **options)

    def chat(self, messages: list[dict[str, str]], **options: Any) -> Any:
        self._count()
        return self._demo.chat(messages, **options)

    def upstream(self) -> Upstream:
        """The example apps' upstream on this client, ``demo/echo`` by default."""
        return Upstream(self, "counting demo", DemoClient.models, "demo/echo")


class Closes:
    """How many times each upstream object was closed, by key."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.counts: list[int] = []

    def open(self) -> int:
        with self._lock:
            self.counts.append(0)
            return len(self.counts) - 1

    def close(self, key: int) -> None:
        with self._lock:
            self.counts[key] += 1


class ClosingStream:
    """A sync upstream with ``close()`` that is not a generator, like an HTTP response."""

    def __init__(self, inner: Iterator[Any], closes: Closes) -> None:
        self._inner = inner
        self._closes = closes
        self._key = closes.open()

    def __iter__(self) -> ClosingStream:
        return self

    def __next__(self) -> Any:
        return next(self._inner)

    def close(self) -> None:
        # Raises ValueError while the generator runs in another thread: only a
        # close that went through is counted.
        self._inner.close()  # type: ignore[attr-defined]
        self._closes.close(self._key)


class AsyncClosingStream:
    """The async twin of :class:`ClosingStream`, closed with ``aclose()``."""

    def __init__(self, inner: AsyncIterator[Any], closes: Closes) -> None:
        self._inner = inner
        self._closes = closes
        self._key = closes.open()

    def __aiter__(self) -> AsyncClosingStream:
        return self

    async def __anext__(self) -> Any:
        return await self._inner.__anext__()

    async def aclose(self) -> None:
        await self._inner.aclose()  # type: ignore[attr-defined]
        self._closes.close(self._key)


class FaultClient:
    """A callable client: the model names the upstream (see the module docstring)."""

    def __init__(self) -> None:
        self.tracker = Tracker()
        self.closes = Closes()
        self._lock = threading.Lock()
        self.calls = 0

    def reset(self) -> None:
        with self._lock:
            self.tracker = Tracker()
            self.closes = Closes()
            self.calls = 0

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {**self.tracker.snapshot(), "closes": list(self.closes.counts)}

    def __call__(self, request: LLMRequest) -> Any:
        with self._lock:
            self.calls += 1
            tracker, closes = self.tracker, self.closes
        family, _, name = (request.model or "").partition("/")
        if family == "track":
            text = (
                request.messages[-1]["content"]
                if isinstance(request, ChatRequest)
                else request.prompt
            )
            options = json.loads(text)
            if name == "async":
                return AsyncClosingStream(async_upstream(tracker, **options), closes)
            return ClosingStream(sync_upstream(tracker, **options), closes)
        if family == "afault":
            return _async_fault(tracker, name)
        return _sync_fault(tracker, name)


def _sync_fault(tracker: Tracker, name: str) -> Iterator[Any]:
    tracker.enter()
    try:
        yield "before "
        yield "the fault "
        if name == "raise":
            raise RuntimeError("upstream exploded with secret sk-test-123")
        if name == "hang":
            time.sleep(HANG)
            yield "too late"
            return
        yield GARBAGE[name.removeprefix("garbage-")]
        yield "after the garbage"
    finally:
        tracker.leave(False)


async def _async_fault(tracker: Tracker, name: str) -> AsyncIterator[Any]:
    tracker.enter()
    try:
        yield "before "
        yield "the fault "
        if name == "raise":
            raise RuntimeError("upstream exploded with secret sk-test-123")
        if name == "hang":
            await asyncio.sleep(60)  # cancelled when the kit gives up on it
            yield "too late"
            return
        yield GARBAGE[name.removeprefix("garbage-")]
        yield "after the garbage"
    finally:
        tracker.leave(False)


def fastapi_app(client: FaultClient) -> Any:
    """The kit's router on ``client`` (small heartbeat and idle timeout) and ``GET /_tasks``."""
    from fastapi import FastAPI

    from indox_integrations.fastapi import create_router

    app = FastAPI()
    app.include_router(create_router(client, heartbeat=HEARTBEAT, idle_timeout=IDLE_TIMEOUT))

    @app.get("/_tasks")
    async def tasks() -> dict[str, int]:
        return {"tasks": len(asyncio.all_tasks())}

    return app


def flask_app(client: FaultClient) -> Any:
    """The kit's blueprint on ``client``, small heartbeat and idle timeout."""
    from flask import Flask

    from indox_integrations.flask import create_blueprint

    app = Flask("fault_app", static_folder=None)
    app.register_blueprint(create_blueprint(client, heartbeat=HEARTBEAT, idle_timeout=IDLE_TIMEOUT))
    return app


# Django: settings and URLconf of the servers the fault suite starts.

COUNTING = CountingClient()
DJANGO_FAULTS = FaultClient()

# The example project's settings (CSRF on, its middleware), then what the suite changes.
globals().update({k: v for k, v in vars(_example_settings).items() if k.isupper()})
ROOT_URLCONF = "fault_apps"
INDOX_INTEGRATIONS = {"CLIENT": "fault_apps.django_client", "USAGE": "attach"}


def django_client() -> CountingClient:
    """The ``INDOX_INTEGRATIONS["CLIENT"]`` factory."""
    return COUNTING


def django_asgi() -> Any:
    """``uvicorn --factory fault_apps:django_asgi``."""
    import os

    os.environ["DJANGO_SETTINGS_MODULE"] = "fault_apps"
    from django.core.asgi import get_asgi_application

    return get_asgi_application()


def django_wsgi() -> Any:
    """``gunicorn "fault_apps:django_wsgi()"``."""
    import os

    os.environ["DJANGO_SETTINGS_MODULE"] = "fault_apps"
    from django.core.wsgi import get_wsgi_application

    return get_wsgi_application()


@functools.cache
def _urlpatterns() -> list[Any]:
    from django.http import HttpRequest, JsonResponse
    from django.urls import include, path

    from indox_integrations.django.views import CompletionView

    def report(request: HttpRequest) -> JsonResponse:
        return JsonResponse({"calls": COUNTING.calls, "faults": DJANGO_FAULTS.snapshot()})

    faults = CompletionView.as_view(
        client=DJANGO_FAULTS, heartbeat=HEARTBEAT, idle_timeout=IDLE_TIMEOUT, models=None
    )
    return [
        path("_faults", report),
        path("faults/stream", faults),
        path("", include("example_apps.django_project.urls")),
    ]


def __getattr__(name: str) -> Any:
    # The URLconf's views read the settings, and the settings are this module:
    # the patterns are built when Django first asks for them.
    if name == "urlpatterns":
        return _urlpatterns()
    if name in ("handler400", "handler403", "handler404", "handler500"):
        # The example project's error views, if it has them (Django's own otherwise).
        import importlib

        return getattr(importlib.import_module("example_apps.django_project.urls"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
