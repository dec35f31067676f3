"""The test project's client, callbacks, tracker and plain views."""

from __future__ import annotations

import asyncio
import dataclasses
import threading
from collections.abc import AsyncIterator
from typing import Any

from django.http import HttpRequest, HttpResponse, JsonResponse, StreamingHttpResponse
from django.views.decorators.csrf import csrf_exempt, ensure_csrf_cookie
from upstreams import TRICKY_TEXTS, Tracker, async_upstream, sync_upstream

from django_testproject import recorder
from indox_integrations import CompletionRequest, DemoClient, StreamReport, call_client
from indox_integrations.clients import LLMRequest
from indox_integrations.django import serves_async, sse_response

SCENARIOS: dict[str, dict[str, Any]] = {
    "paced": {"chunks": 8, "delay": 0.15},
    "chatty": {"chunks": 2000, "delay": 0.01},
    "silent": {"chunks": 3, "first_delay": 5.0, "silent_step": 0.05},
    "stall": {"chunks": 3, "first_delay": 2.5},
    "fail": {"chunks": 10, "delay": 0.01, "fail_after": 3},
    "tricky": {"chunks": TRICKY_TEXTS, "delay": 0.0},
    "many": {"chunks": 20, "delay": 0.1},
}
MODELS = (
    *(f"test/{name}" for name in SCENARIOS),
    *(f"atest/{name}" for name in SCENARIOS),
    *DemoClient.models,
    "raise/now",
)

TRACKER = Tracker()
_lock = threading.Lock()
_calls: list[str] = []
_records: list[dict[str, Any]] = []
_demo = DemoClient(delay=0.0)


class ClientFailed(ConnectionError):
    """What ``raise/now`` raises before any chunk."""


def client(request: LLMRequest) -> Any:
    """A plain callable client: dispatches on the model name."""
    model = request.model or "demo/echo"
    with _lock:
        _calls.append(model)
    family, _, name = model.partition("/")
    if family == "test":
        return sync_upstream(TRACKER, **SCENARIOS[name])
    if family == "atest":
        options = {k: v for k, v in SCENARIOS[name].items() if k != "silent_step"}
        return async_upstream(TRACKER, **options)
    if family == "raise":
        raise ClientFailed("the provider is unreachable")
    return call_client(_demo, request)


class AsyncClient:
    """An indoxRouter-shaped async client: its methods are coroutines."""

    async def completion(self, prompt: str, **options: Any) -> Any:
        return client(_request(prompt, options))

    async def chat(self, messages: list[dict[str, str]], **options: Any) -> Any:
        return client(_request(messages[-1]["content"], options))


def _request(prompt: str, options: dict[str, Any]) -> LLMRequest:
    return CompletionRequest(prompt=prompt, model=options.get("model"))


def make_client() -> Any:
    """The ``INDOX_INTEGRATIONS["CLIENT"]`` factory."""
    return client


def _in_event_loop() -> bool:
    # Where Django would raise SynchronousOnlyOperation for an ORM query.
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def record_usage(usage: Any) -> None:
    with _lock:
        _records.append({"kind": "usage", "usage": usage, "in_loop": _in_event_loop()})


def record_complete(report: StreamReport) -> None:
    entry = {"kind": "complete", "outcome": report.outcome, "usage": report.usage}
    with _lock:
        _records.append({**entry, "in_loop": _in_event_loop()})


def health(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"ok": True})


@ensure_csrf_cookie
def page(request: HttpRequest) -> HttpResponse:
    return HttpResponse("<!doctype html><title>csrf</title>")


def tracker(request: HttpRequest) -> JsonResponse:
    with _lock:
        extra = {"calls": list(_calls), "records": list(_records)}
    return JsonResponse({**TRACKER.snapshot(), **extra, "warnings": recorder.take()})


@csrf_exempt
def reset(request: HttpRequest) -> JsonResponse:
    TRACKER.reset()
    recorder.clear()
    with _lock:
        _calls.clear()
        _records.clear()
    return JsonResponse({"ok": True})


def sync_view(request: HttpRequest) -> StreamingHttpResponse:
    """``sse_response`` from a sync function view."""
    return sse_response(sync_upstream(TRACKER, **SCENARIOS["paced"]), request, heartbeat=0.3)


async def async_view(request: HttpRequest) -> StreamingHttpResponse:
    """``sse_response`` from an async function view, with the demo's usage."""
    stream = call_client(_demo, dataclasses.replace(_request("async view", {}), model="demo/echo"))
    return sse_response(stream, request, usage="attach")


async def _chunks() -> AsyncIterator[bytes]:
    yield b"data: wrong kind\n\n"


def wrong_kind(request: HttpRequest) -> StreamingHttpResponse:
    """The wrong iterator for the server on purpose: Django warns (checks the recorder)."""
    if serves_async(request):
        return StreamingHttpResponse(iter([b"data: wrong kind\n\n"]))
    return StreamingHttpResponse(_chunks())
