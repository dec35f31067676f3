"""Test settings: CSRF and GZip on, the kit's app installed, small heartbeat and timeout."""

from __future__ import annotations

from typing import Any

SECRET_KEY = "indox-integrations-tests"
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost", "testserver"]
INSTALLED_APPS = ["django.contrib.staticfiles", "indox_integrations.django"]
MIDDLEWARE = [
    "django.middleware.gzip.GZipMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
]
ROOT_URLCONF = "django_testproject.urls"
DATABASES: dict[str, Any] = {}
USE_TZ = True
STATIC_URL = "static/"
STATICFILES_FINDERS = [
    "django.contrib.staticfiles.finders.FileSystemFinder",
    "django.contrib.staticfiles.finders.AppDirectoriesFinder",
    "indox_integrations.django.finders.CheckoutFinder",
]
TEMPLATES = [{"BACKEND": "django.template.backends.django.DjangoTemplates", "APP_DIRS": False}]
LOGGING_CONFIG = None  # keep the server logs to what the test servers print

HEARTBEAT = 0.3
IDLE_TIMEOUT = 1.0

INDOX_INTEGRATIONS = {
    "CLIENT": "django_testproject.views.make_client",
    "USAGE": "attach",
    "HEARTBEAT": HEARTBEAT,
    "IDLE_TIMEOUT": IDLE_TIMEOUT,
    "MAX_BODY_BYTES": 4096,
    "MAX_TOKENS": 1000,
}
