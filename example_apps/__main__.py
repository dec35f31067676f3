"""``python -m example_apps [fastapi|flask|django] [--host H] [--port P]``."""

from __future__ import annotations

import argparse
import importlib
import logging

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
    args = parser.parse_args(argv)
    # One line per finished stream (outcome, chunks, bytes, duration) on stderr.
    logging.basicConfig(format="%(levelname)s:     %(name)s: %(message)s")
    logging.getLogger("indox_integrations").setLevel(logging.INFO)
    module = importlib.import_module(FRAMEWORKS[args.framework])
    module.main(host=args.host, port=args.port, wsgi=args.wsgi)


if __name__ == "__main__":
    main()
