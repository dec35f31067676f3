"""The Django example project, served under ASGI (uvicorn) or WSGI (gunicorn).

python -m example_apps django --port 8000           # ASGI, uvicorn
python -m example_apps django --port 8000 --wsgi    # WSGI, gunicorn gthread
INDOX_REDIS_URL=redis://localhost:6379/0 python -m example_apps django --workers 4
python example_apps/manage.py check
"""

from __future__ import annotations

import os
from typing import Any

SETTINGS = "example_apps.django_project.settings"


def main(host: str = "127.0.0.1", port: int = 8000, wsgi: bool = False, workers: int = 1) -> None:
    """Serve the project with uvicorn, or with gunicorn's threaded workers when ``wsgi``."""
    # Always this project, whatever DJANGO_SETTINGS_MODULE the shell holds.
    os.environ["DJANGO_SETTINGS_MODULE"] = SETTINGS
    if wsgi:
        _serve_wsgi(host, port, workers)
        return
    import uvicorn

    print(f"indox-integrations Django example (ASGI, uvicorn) on http://{host}:{port}")
    if workers > 1:
        # Each worker process imports the application itself.
        target = "example_apps.django_project.asgi:application"
        uvicorn.run(target, host=host, port=port, log_level="info", workers=workers)
        return
    from .django_project.asgi import application

    uvicorn.run(application, host=host, port=port, log_level="info")


def _wsgi_application() -> Any:
    from .django_project.wsgi import application

    return application


def _serve_wsgi(host: str, port: int, workers: int) -> None:
    from .common import serve_gunicorn

    print(f"indox-integrations Django example (WSGI, gunicorn) on http://{host}:{port}")
    serve_gunicorn(_wsgi_application, host, port, workers)
