"""Resumable apps for the multi-process tests: FastAPI, Flask and Django on one store.

Each serves the kit's routes under ``/llm`` (indox) and the AI SDK's under ``/api``,
and a view of its own, ``POST /own/ask`` (``sse_response(..., resumable=True)``), with
the standalone resume routes under ``/own``: all resumable on
``RedisStore(RESUME_REDIS_URL)`` (this process's ``MemoryStore`` without it, with a
lease of ``RESUME_LEASE`` seconds), owned by the ``X-User`` header, on the demo client
(``RESUME_DELAY`` seconds a chunk), counting its calls: ``GET /_calls`` says how many,
and which process answers.

    uvicorn --factory resumable_apps:fastapi_app
    gunicorn "resumable_apps:flask_app()"
    DJANGO_SETTINGS_MODULE=resumable_apps uvicorn --factory resumable_apps:django_asgi
    DJANGO_SETTINGS_MODULE=resumable_apps gunicorn "resumable_apps:django_wsgi()"

This module is also the Django settings module and URLconf.
"""

from __future__ import annotations

import functools
import os
import threading
from typing import Any

from indox_integrations import DemoClient
from indox_integrations.stores import MemoryStore, RedisStore

DELAY = float(os.environ.get("RESUME_DELAY", "0.02"))
DETACH = float(os.environ.get("RESUME_DETACH", "30"))
LEASE = float(os.environ.get("RESUME_LEASE", "8"))
HEARTBEAT = 0.5


class CountingClient:
    """The demo client, counting ``completion``/``chat`` calls."""

    models = DemoClient.models

    def __init__(self) -> None:
        self._demo = DemoClient(delay=DELAY)
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


CLIENT = CountingClient()


@functools.cache
def store() -> Any:
    url = os.environ.get("RESUME_REDIS_URL")
    return RedisStore(url, lease=LEASE) if url else MemoryStore()


def owner(request: Any) -> str | None:
    return request.headers.get("x-user") or None


def make_client() -> CountingClient:
    return CLIENT


def calls() -> dict[str, Any]:
    return {"calls": CLIENT.calls, "pid": os.getpid()}


def options() -> dict[str, Any]:
    return {
        "resumable": True,
        "store": store(),
        "detach_timeout": DETACH,
        "owner": owner,
        "heartbeat": HEARTBEAT,
        "usage": "attach",
    }


def resume_options() -> dict[str, Any]:
    """The standalone resume routes' options: those of ``options()`` that they take."""
    return {"store": store(), "detach_timeout": DETACH, "owner": owner, "heartbeat": HEARTBEAT}


OWN_HEADERS = {"X-Own": "yes"}
"""A header of the view's own, on its stream's response."""


def ask(body: dict[str, Any]) -> Any:
    """What a user's own view streams: the demo client's chunks for ``body["prompt"]``."""
    return CLIENT.completion(body["prompt"], stream=True, return_generator=True)


def fastapi_app() -> Any:
    from fastapi import Body, FastAPI
    from starlette.routing import Router

    from indox_integrations.fastapi import create_router
    from indox_integrations.starlette import resume_routes, sse_response

    app = FastAPI()
    app.include_router(create_router(CLIENT, **options()), prefix="/llm")
    app.include_router(create_router(CLIENT, protocol="ai-sdk", **options()), prefix="/api")
    app.add_api_route("/_calls", calls, methods=["GET"])

    async def aowner(request: Any) -> str | None:  # the view of one's own has an async one
        return owner(request)

    @app.post("/own/ask")
    def own_ask(body: dict[str, Any] = Body()) -> Any:  # noqa: B008 - FastAPI's idiom
        return sse_response(ask(body), headers=OWN_HEADERS, **{**options(), "owner": aowner})

    app.mount("/own", Router(resume_routes(**{**resume_options(), "owner": aowner})))
    return app


def flask_app() -> Any:
    from flask import Flask, jsonify, request

    from indox_integrations.flask import create_blueprint, resume_blueprint, sse_response

    app = Flask(__name__)
    app.register_blueprint(create_blueprint(CLIENT, **options()), url_prefix="/llm")
    ai_sdk = create_blueprint(CLIENT, "ai_sdk", protocol="ai-sdk", **options())
    app.register_blueprint(ai_sdk, url_prefix="/api")
    app.add_url_rule("/_calls", "calls", lambda: jsonify(calls()))

    @app.post("/own/ask")
    def own_ask() -> Any:
        response = sse_response(ask(request.get_json()), **options())
        response.headers.update(OWN_HEADERS)  # Flask's way: the view sets them
        return response

    app.register_blueprint(resume_blueprint(**resume_options()), url_prefix="/own")
    return app


def django_asgi() -> Any:
    from django.core.asgi import get_asgi_application

    return get_asgi_application()


def django_wsgi() -> Any:
    from django.core.wsgi import get_wsgi_application

    return get_wsgi_application()


# Django: settings (CSRF on, as in a real project) and the URLconf.
SECRET_KEY = "indox-integrations-resumable-tests"
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost", "testserver"]
INSTALLED_APPS = ["indox_integrations.django"]
MIDDLEWARE = [
    "django.middleware.gzip.GZipMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
]
ROOT_URLCONF = "resumable_apps"
DATABASES: dict[str, Any] = {}
USE_TZ = True
LOGGING_CONFIG = None
INDOX_INTEGRATIONS = {
    "CLIENT": "resumable_apps.make_client",
    "USAGE": "attach",
    "HEARTBEAT": HEARTBEAT,
    "RESUMABLE": True,
    "STORE": "resumable_apps.store",
    "DETACH_TIMEOUT": DETACH,
    "OWNER": "resumable_apps.owner",
}


def django_ask(request: Any) -> Any:
    """A plain (sync) Django view of a user's own, under WSGI and ASGI alike."""
    import json

    from indox_integrations.django import sse_response

    return sse_response(ask(json.loads(request.body)), request, headers=OWN_HEADERS, **options())


async def django_ask_async(request: Any) -> Any:
    """An ``async def`` view of a user's own, whose owner Django forbids on the event loop
    (as one that reads ``request.user`` is)."""
    import json

    from django.utils.asyncio import async_unsafe

    from indox_integrations.django import asse_response

    given = {**options(), "owner": async_unsafe(owner)}
    return await asse_response(ask(json.loads(request.body)), request, headers=OWN_HEADERS, **given)


def __getattr__(name: str) -> Any:
    # The URLconf needs Django's settings, which other frameworks' processes never load.
    if name == "urlpatterns":
        from django.http import JsonResponse
        from django.urls import include, path
        from django.views.decorators.http import require_POST

        from indox_integrations.django.resume import ResumeView
        from indox_integrations.django.urls import patterns

        return [
            path("llm/", include((patterns("indox"), "llm"))),
            path("api/", include((patterns("ai-sdk"), "api"))),
            path("own/ask", require_POST(django_ask)),
            path("own/ask-async", require_POST(django_ask_async)),
            path("own/streams/<str:stream_id>", ResumeView.as_view()),
            path("_calls", lambda request: JsonResponse(calls())),
        ]
    raise AttributeError(name)
