"""What every example app shares: the upstream client, picked from the environment."""

from __future__ import annotations

import functools
import html
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from indox_integrations import DemoClient

PAGE = Path(__file__).parent / "templates" / "index.html"


@dataclass(frozen=True)
class Upstream:
    """The live client, a label for the page, the models to offer, the default one."""

    client: Any
    label: str
    models: tuple[str, ...]
    default_model: str | None
    problem: str | None = None


def pick_upstream(environ: dict[str, str] | None = None) -> Upstream:
    """indoxRouter with ``INDOX_ROUTER_API_KEY``, OpenAI with ``OPENAI_API_KEY``, else the demo.

    A client that cannot be built (wrong key, unreachable server) is replaced by
    one that answers every request with that error, and ``problem`` says why,
    so the page shows it instead of hanging.
    """
    env = os.environ if environ is None else environ
    if env.get("INDOX_ROUTER_API_KEY"):
        model = env.get("INDOX_ROUTER_MODEL", "openai/gpt-4o-mini")
        try:
            from indoxrouter import Client  # type: ignore[import-untyped]

            client = Client(
                api_key=env["INDOX_ROUTER_API_KEY"],
                base_url=env.get("INDOX_ROUTER_BASE_URL") or None,
                timeout=60,
            )
        except Exception as exc:  # the page shows why, instead of hanging
            return _unavailable("indoxRouter", model, exc)
        return Upstream(client, "indoxRouter", (model,), model)
    if env.get("OPENAI_API_KEY"):
        model = env.get("OPENAI_MODEL", "gpt-4o-mini")
        try:
            from openai import OpenAI

            client = OpenAI(
                api_key=env["OPENAI_API_KEY"],
                base_url=env.get("OPENAI_BASE_URL") or None,
                timeout=60,
                max_retries=0,
            )
        except Exception as exc:
            return _unavailable("OpenAI", model, exc)
        return Upstream(client, "OpenAI", (model,), model)
    delay = float(env.get("INDOX_DEMO_DELAY", "0.03"))
    return Upstream(DemoClient(delay=delay), "demo (offline)", DemoClient.models, "demo/story")


class UpstreamUnavailable(ConnectionError):
    """The configured client could not be built; every request reports why."""


def _unavailable(label: str, model: str, exc: Exception) -> Upstream:
    problem = f"{label} is not available: {type(exc).__name__}: {str(exc)[:200]}"

    def client(request: Any) -> Any:
        raise UpstreamUnavailable(problem)

    return Upstream(client, label, (model,), model, problem)


def render_page(upstream: Upstream, static_url: str = "/static/indox-stream.js") -> str:
    """The demo page, with the upstream's label and models filled in."""
    config = {
        "upstream": upstream.label,
        "models": list(upstream.models),
        "problem": upstream.problem,
    }
    return (
        PAGE.read_text(encoding="utf-8")
        .replace("{{ upstream }}", html.escape(upstream.label))
        .replace("{{ static_url }}", html.escape(static_url))
        .replace("{{ config_json }}", html.escape(json.dumps(config)))
    )


RESUMABLE_ENV = "INDOX_RESUMABLE"
REDIS_ENV = "INDOX_REDIS_URL"


@functools.cache
def store() -> Any:
    """The resumable streams' store: ``RedisStore(INDOX_REDIS_URL)``, else this process's
    ``MemoryStore`` (``--resumable``); ``None`` when streams are not resumable.

    A ``RedisStore`` connects on first use, so the app starts while Redis is down
    and answers 503 JSON until it is back.
    """
    url = os.environ.get(REDIS_ENV)
    if url:
        from indox_integrations.stores import RedisStore

        return RedisStore(url)
    if os.environ.get(RESUMABLE_ENV) == "1":
        from indox_integrations.resumable import default_store

        return default_store()
    return None


def resumable_options() -> dict[str, Any]:
    """``resumable=True`` and the store for the routers, or nothing (streams as today).

    ``INDOX_DETACH_TIMEOUT`` sets how long a stream nobody reads goes on (30 s).
    """
    found = store()
    if found is None:
        return {}
    options: dict[str, Any] = {"resumable": True, "store": found}
    if os.environ.get("INDOX_DETACH_TIMEOUT"):
        options["detach_timeout"] = float(os.environ["INDOX_DETACH_TIMEOUT"])
    return options


def serve_gunicorn(load: Callable[[], Any], host: str, port: int, workers: int = 1) -> None:
    """Serve a WSGI app with gunicorn's threaded workers: up to 64 open streams each.

    ``load`` builds the app in the worker, after the fork, so that no client
    connection crosses it.  Each open stream holds a thread: never the default
    sync workers, which are killed after 30 s.
    """
    from gunicorn.app.base import BaseApplication  # type: ignore[import-untyped]

    class Server(BaseApplication):  # type: ignore[misc]
        def load_config(self) -> None:
            options = {
                "bind": f"{host}:{port}",
                "worker_class": "gthread",
                "workers": workers,
                "threads": 64,
                # Longer than the streams' shutdown_grace (5 s): they end themselves first.
                "graceful_timeout": 10,
            }
            for key, value in options.items():
                self.cfg.set(key, value)

        def load(self) -> Any:
            return load()

    Server().run()
