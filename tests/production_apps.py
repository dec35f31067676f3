"""FastAPI and Flask apps for the production tests: limits, auth and context.

    uvicorn "production_apps:fastapi_app" --factory
    gunicorn "production_apps:flask_app()"

Routes, the same in both (the Django project ``django_production`` mirrors them):

- ``/limited/stream``: ``max_streams=2`` (the process's count, shared by every route);
- ``/perkey/stream``: ``max_streams_per_key=1`` keyed by the ``X-User`` header;
- ``/v1/chat/completions``: the OpenAI protocol with ``max_streams=2``;
- ``/auth/stream`` and ``/auth/chat``: a logged-in user required (``Authorization:
  Bearer token-<user>``), the user as the stream's context, ``on_complete`` recorded.
"""

from __future__ import annotations

from typing import Any

import production_client as recorded
from fastapi import Depends, FastAPI, HTTPException, Request
from flask import Flask, g, jsonify, request
from flask.typing import ResponseReturnValue

from indox_integrations.fastapi import create_router
from indox_integrations.flask import create_blueprint

MAX_STREAMS = 2
COMMON: dict[str, Any] = {"heartbeat": 0.3}


def user_of(authorization: str | None) -> str | None:
    """The user a bearer token names: ``token-alice`` is alice; anything else is nobody."""
    scheme, _, token = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not token.startswith("token-"):
        return None
    return token.removeprefix("token-") or None


def fastapi_app() -> FastAPI:
    recorded.install_recorder()
    app = FastAPI()
    client = recorded.client

    async def require_user(request: Request) -> str:
        user = user_of(request.headers.get("authorization"))
        if user is None:
            raise HTTPException(401, "log in first", headers={"WWW-Authenticate": "Bearer"})
        request.state.user = user
        return user

    app.include_router(create_router(client, max_streams=MAX_STREAMS, **COMMON), prefix="/limited")
    app.include_router(
        create_router(
            client,
            max_streams_per_key=1,
            limit_key=lambda request: request.headers.get("x-user"),
            **COMMON,
        ),
        prefix="/perkey",
    )
    app.include_router(
        create_router(client, protocol="openai", max_streams=MAX_STREAMS, **COMMON), prefix="/v1"
    )
    app.include_router(
        create_router(
            client,
            context=lambda request: {"user": request.state.user},
            on_complete=recorded.record_complete,
            **COMMON,
        ),
        prefix="/auth",
        dependencies=[Depends(require_user)],
    )

    @app.get("/_state")
    async def state() -> dict[str, Any]:
        return recorded.state()

    @app.post("/_gate/{stream_id}")
    async def gate(stream_id: str) -> dict[str, bool]:
        recorded.open_gate(stream_id)
        return {"ok": True}

    @app.post("/_reset")
    async def reset() -> dict[str, bool]:
        recorded.reset()
        return {"ok": True}

    return app


def flask_app() -> Flask:
    recorded.install_recorder()
    app = Flask("production_flask", static_folder=None)
    client = recorded.client
    app.register_blueprint(
        create_blueprint(client, "limited", max_streams=MAX_STREAMS, **COMMON),
        url_prefix="/limited",
    )
    app.register_blueprint(
        create_blueprint(
            client,
            "perkey",
            max_streams_per_key=1,
            limit_key=lambda request: request.headers.get("X-User"),
            **COMMON,
        ),
        url_prefix="/perkey",
    )
    app.register_blueprint(
        create_blueprint(client, "openai", protocol="openai", max_streams=MAX_STREAMS, **COMMON),
        url_prefix="/v1",
    )
    auth = create_blueprint(
        client,
        "auth",
        context=lambda request: {"user": g.user},
        on_complete=recorded.record_complete,
        **COMMON,
    )

    @auth.before_request
    def require_user() -> ResponseReturnValue | None:
        g.user = user_of(request.headers.get("Authorization"))
        if g.user is None:
            response = jsonify({"error": {"type": "unauthenticated", "message": "log in first"}})
            response.headers["WWW-Authenticate"] = "Bearer"
            return response, 401
        return None

    app.register_blueprint(auth, url_prefix="/auth")

    @app.get("/_state")
    def state() -> dict[str, Any]:
        return recorded.state()

    @app.post("/_gate/<stream_id>")
    def gate(stream_id: str) -> dict[str, bool]:
        recorded.open_gate(stream_id)
        return {"ok": True}

    @app.post("/_reset")
    def reset() -> dict[str, bool]:
        recorded.reset()
        return {"ok": True}

    return app
