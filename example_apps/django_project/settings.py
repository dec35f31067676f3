"""Settings of the Django example: no database, CSRF on, the kit's app installed."""

from __future__ import annotations

import os
from typing import Any

from example_apps.common import store

SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "indox-integrations-example-not-secret")
DEBUG = os.environ.get("DJANGO_DEBUG") == "1"
ALLOWED_HOSTS = ["localhost", "127.0.0.1", "[::1]"]

INSTALLED_APPS = [
    "django.contrib.staticfiles",
    "indox_integrations.django",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    # Streams bypass it; the page and the JS helper are compressed.
    "django.middleware.gzip.GZipMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "example_apps.django_project.urls"
WSGI_APPLICATION = "example_apps.django_project.wsgi.application"
ASGI_APPLICATION = "example_apps.django_project.asgi.application"

DATABASES: dict[str, dict[str, str]] = {}

STATIC_URL = "static/"
STATICFILES_FINDERS = [
    "django.contrib.staticfiles.finders.FileSystemFinder",
    "django.contrib.staticfiles.finders.AppDirectoriesFinder",
    # A source checkout keeps the JS helper outside the app; the wheel needs no finder.
    "indox_integrations.django.finders.CheckoutFinder",
]

INDOX_INTEGRATIONS: dict[str, Any] = {
    "CLIENT": "example_apps.django_project.views.make_client",
    "USAGE": "attach",
}
if store() is not None:  # INDOX_REDIS_URL, or --resumable
    INDOX_INTEGRATIONS.update({"RESUMABLE": True, "STORE": "example_apps.common.store"})
    if os.environ.get("INDOX_DETACH_TIMEOUT"):
        INDOX_INTEGRATIONS["DETACH_TIMEOUT"] = float(os.environ["INDOX_DETACH_TIMEOUT"])
