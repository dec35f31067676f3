"""Auth with signed-cookie sessions, CSRF on, SQLite from ``$INDOX_TEST_DB``, the kit's limits."""

from __future__ import annotations

import os

SECRET_KEY = "indox-integrations-production-tests"
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost", "testserver"]
INSTALLED_APPS = [
    "django.contrib.contenttypes",
    "django.contrib.auth",
    "indox_integrations.django",
]
MIDDLEWARE = [
    "django.middleware.common.CommonMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
]
SESSION_ENGINE = "django.contrib.sessions.backends.signed_cookies"
CSRF_FAILURE_VIEW = "indox_integrations.django.auth.csrf_failure"
ROOT_URLCONF = "django_production.urls"
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ.get("INDOX_TEST_DB", ":memory:"),
        "OPTIONS": {"timeout": 20},
    }
}
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
USE_TZ = True
LOGGING_CONFIG = None  # the test recorder listens on the root logger

INDOX_INTEGRATIONS = {
    "CLIENT": "django_production.views.make_client",
    "HEARTBEAT": 0.3,
    "MAX_STREAMS": 2,
    "CONTEXT": "django_production.views.user_context",
}
