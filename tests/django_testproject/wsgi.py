"""The test project for gunicorn, recording warnings."""

from __future__ import annotations

import os

from django.core.wsgi import get_wsgi_application

from django_testproject import recorder

recorder.install()
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "django_testproject.settings")
application = get_wsgi_application()
