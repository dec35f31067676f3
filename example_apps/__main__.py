"""``python -m example_apps [fastapi|flask|django] [--host H] [--port P] [--wsgi]
[--workers N] [--resumable]``.

Resumable streams: ``INDOX_REDIS_URL=redis://...`` serves them on a ``RedisStore``
(several workers, several hosts), ``--resumable`` on this process's ``MemoryStore``.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os

from example_apps.common import REDIS_ENV, RESUMABLE_ENV

FRAMEWORKS = {
    "fastapi": "example_apps.fastapi_app",
    "flask": "example_apps.flask_app",
    "django": "example_apps.django_app",
}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m example_apps", description=__doc__)
    parser.add_argument("framework", nargs="?", default="fastapi", choices=FRAMEWORKS)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--wsgi", action="store_true", help="django: serve with gunicorn (WSGI)")
    parser.add_argument(
        "--workers", type=int, default=1, help="worker processes (uvicorn or gunicorn workers)"
    )
    parser.add_argument(
        "--resumable",
        action="store_true",
        help=f"resumable streams on this process's memory (set {REDIS_ENV} to share them)",
    )
    args = parser.parse_args(argv)
    if args.workers < 1:
        parser.error("--workers must be at least 1")
    if args.resumable or os.environ.get(REDIS_ENV):
        if args.workers > 1 and not os.environ.get(REDIS_ENV):
            parser.error(f"--resumable with --workers > 1 needs a shared store: set {REDIS_ENV}")
        # Read again by each worker process, which imports the app afresh.
        os.environ[RESUMABLE_ENV] = "1"
    # One line per finished stream (outcome, chunks, bytes, duration) on stderr.
    logging.basicConfig(format="%(levelname)s:     %(name)s: %(message)s")
    logging.getLogger("indox_integrations").setLevel(logging.INFO)
    module = importlib.import_module(FRAMEWORKS[args.framework])
    module.main(host=args.host, port=args.port, wsgi=args.wsgi, workers=args.workers)


if __name__ == "__main__":
    main()
