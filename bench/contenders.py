"""Who runs: each contender is one app (bench/apps/) on one server, with one upstream."""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from typing import Literal

Role = Literal["floor", "kit", "naive", "peer"]
ProtocolName = Literal["indox", "openai", "ai-sdk"]


@dataclass(frozen=True)
class Contender:
    name: str
    role: Role
    family: Literal["starlette", "fastapi", "flask", "django"]
    target: str
    """``module:attribute`` of the ASGI or WSGI app."""
    server: Literal["uvicorn", "gunicorn"]
    mode: Literal["sync", "async"]
    what: str
    needs: str | None = None
    """A kit module that must exist (the framework skins are separate modules)."""
    default: bool = True
    """Part of a plain run; others run only when named with ``--only``."""
    env: tuple[tuple[str, str], ...] = ()
    """Extra environment for the server process."""
    heartbeats: bool = True
    """It can send heartbeats on a silent stream (the idle scenario needs them)."""
    direct: str | None = None
    """Resumable mode: the contender that streams the same way directly, to compare with;
    the resume scenario runs only for these."""
    protocol: ProtocolName = "indox"
    """The wire it serves (``bench.client.WIRES``: the path, the body, what counts as a chunk)."""
    on_indox: str | None = None
    """Another protocol: the contender serving the same router on the indox wire, to
    compare with (a JSON object per chunk against raw text)."""

    @property
    def wsgi(self) -> bool:
        return self.server == "gunicorn"

    def missing(self) -> str | None:
        """Why this contender cannot run here, if it cannot."""
        if self.needs is None:
            return None
        try:
            found = importlib.util.find_spec(self.needs) is not None
        except ImportError:
            found = False
        return None if found else f"{self.needs} is not there"


CONTENDERS = [
    Contender(
        "floor", "floor", "starlette", "bench.apps.floor:app", "uvicorn", "async",
        "Starlette StreamingResponse over pre-encoded bytes from an async generator",
    ),
    Contender(
        "kit-fastapi-sync", "kit", "fastapi", "bench.apps.kit_fastapi:app", "uvicorn", "sync",
        "indox_integrations.fastapi.create_router(client), sync upstream",
        needs="indox_integrations.fastapi",
    ),
    Contender(
        "kit-fastapi-async", "kit", "fastapi", "bench.apps.kit_fastapi:app", "uvicorn", "async",
        "indox_integrations.fastapi.create_router(client), async client and upstream",
        needs="indox_integrations.fastapi", env=(("BENCH_CLIENT", "async"),),
    ),
    Contender(
        "kit-starlette-sync", "kit", "starlette", "bench.apps.kit_starlette:app", "uvicorn",
        "sync", "indox_integrations.starlette.sse_response in a Starlette route, sync upstream",
        needs="indox_integrations.starlette", default=False,
    ),
    Contender(
        "kit-starlette-async", "kit", "starlette", "bench.apps.kit_starlette:app", "uvicorn",
        "async", "indox_integrations.starlette.sse_response in a Starlette route, async upstream",
        needs="indox_integrations.starlette", default=False,
    ),
    Contender(
        "kit-flask", "kit", "flask", "bench.apps.kit_flask:app", "gunicorn", "sync",
        "indox_integrations.flask.sse_response, gunicorn gthread",
        needs="indox_integrations.flask",
    ),
    Contender(
        "kit-django-wsgi", "kit", "django", "bench.apps.kit_django:wsgi_app", "gunicorn", "sync",
        "indox_integrations.django.sse_response, WSGI, gunicorn gthread",
        needs="indox_integrations.django", env=(("BENCH_DJANGO", "wsgi"),),
    ),
    Contender(
        "kit-django-asgi-sync", "kit", "django", "bench.apps.kit_django:asgi_app", "uvicorn",
        "sync", "indox_integrations.django.sse_response in an async view, ASGI, sync upstream",
        needs="indox_integrations.django", env=(("BENCH_DJANGO", "asgi"),),
    ),
    Contender(
        "kit-django-asgi-async", "kit", "django", "bench.apps.kit_django:asgi_app", "uvicorn",
        "async", "indox_integrations.django.sse_response in an async view, ASGI, async upstream",
        needs="indox_integrations.django", env=(("BENCH_DJANGO", "asgi"),),
    ),
    Contender(
        "kit-resumable-memory", "kit", "fastapi", "bench.apps.kit_resumable:app", "uvicorn",
        "async", "create_router(client, resumable=True): MemoryStore, async upstream",
        needs="indox_integrations.fastapi", default=False,
        env=(("BENCH_STORE", "memory"), ("BENCH_CLIENT", "async")),
        direct="kit-fastapi-async",
    ),
    Contender(
        "kit-resumable-redis", "kit", "fastapi", "bench.apps.kit_resumable:app", "uvicorn",
        "async", "create_router(client, resumable=True): RedisStore (a local redis-server)",
        needs="indox_integrations.fastapi", default=False,
        env=(("BENCH_STORE", "redis"), ("BENCH_CLIENT", "async")),
        direct="kit-fastapi-async",
    ),
    Contender(
        "kit-openai-async", "kit", "fastapi", "bench.apps.kit_protocols:app", "uvicorn",
        "async", 'create_router(client, protocol="openai") under /v1, async upstream',
        needs="indox_integrations.fastapi",
        env=(("BENCH_PROTOCOL", "openai"), ("BENCH_CLIENT", "async")),
        protocol="openai", on_indox="kit-fastapi-async",
    ),
    Contender(
        "kit-ai-sdk-async", "kit", "fastapi", "bench.apps.kit_protocols:app", "uvicorn",
        "async", 'create_router(client, protocol="ai-sdk") under /api, async upstream',
        needs="indox_integrations.fastapi",
        env=(("BENCH_PROTOCOL", "ai-sdk"), ("BENCH_CLIENT", "async")),
        protocol="ai-sdk", on_indox="kit-fastapi-async",
    ),
    Contender(
        "naive-fastapi", "naive", "fastapi", "bench.apps.naive_fastapi:app", "uvicorn", "sync",
        "the guide's FastAPI code: sync generator looped in an async def", heartbeats=False,
    ),
    Contender(
        "naive-flask", "naive", "flask", "bench.apps.naive_flask:app", "gunicorn", "sync",
        "the guide's Flask code: Response(generate()), gunicorn gthread", heartbeats=False,
    ),
    Contender(
        "naive-django-asgi", "naive", "django", "bench.apps.naive_django:app", "uvicorn", "sync",
        "plain Django StreamingHttpResponse over a sync generator, ASGI", heartbeats=False,
    ),
    Contender(
        "fastapi-floor", "peer", "fastapi", "bench.apps.floor:fastapi_app", "uvicorn", "async",
        "FastAPI's own floor: the floor's route (a StreamingResponse over pre-encoded bytes "
        "from an async generator) on FastAPI", default=False, heartbeats=False,
    ),
    Contender(
        "django-asgi-floor", "peer", "django", "bench.apps.naive_django:app", "uvicorn",
        "async", "Django's own floor: an async view's StreamingHttpResponse over pre-encoded "
        "bytes from an async generator, ASGI", default=False, heartbeats=False,
        env=(("BENCH_DJANGO", "floor"),),
    ),
    Contender(
        "starlette-threadpool", "peer", "starlette", "bench.apps.floor:threadpool_app", "uvicorn",
        "sync", "Starlette StreamingResponse over a sync generator (anyio thread pool)",
        default=False, heartbeats=False,
    ),
    Contender(
        "sse-starlette-sync", "peer", "starlette", "bench.apps.sse_starlette_app:app", "uvicorn",
        "sync", "sse-starlette EventSourceResponse, sync upstream (anyio thread pool)",
    ),
    Contender(
        "sse-starlette-async", "peer", "starlette", "bench.apps.sse_starlette_app:app", "uvicorn",
        "async", "sse-starlette EventSourceResponse, async upstream",
    ),
    Contender(
        "fastapi-sse-sync", "peer", "fastapi", "bench.apps.fastapi_sse:sync_app", "uvicorn",
        "sync", "FastAPI's own SSE (fastapi.sse.EventSourceResponse), sync path operation",
    ),
    Contender(
        "fastapi-sse-async", "peer", "fastapi", "bench.apps.fastapi_sse:async_app", "uvicorn",
        "async", "FastAPI's own SSE (fastapi.sse.EventSourceResponse), async path operation",
    ),
]  # fmt: skip

BY_NAME = {c.name: c for c in CONTENDERS}

# What each contender is compared with besides the floor: the naive code of its
# framework, and sse-starlette on the same kind of upstream.
NAIVE_OF = {
    "starlette": "naive-fastapi",
    "fastapi": "naive-fastapi",
    "flask": "naive-flask",
    "django": "naive-django-asgi",
}
SSE_STARLETTE_OF = {"sync": "sse-starlette-sync", "async": "sse-starlette-async"}
