"""The test project for uvicorn, recording warnings."""

from __future__ import annotations

import os

from django.core.asgi import get_asgi_application

from django_testproject import recorder

recorder.install()
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "django_testproject.settings")
application = get_asgi_application()
