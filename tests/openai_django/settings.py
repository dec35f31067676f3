"""CSRF and GZip on (the OpenAI views must pass both), the protocol and keys from the setting."""

from __future__ import annotations

from typing import Any

from openai_apps import HEARTBEAT, KEYS, LIMITS

SECRET_KEY = "indox-integrations-openai-tests"
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost", "testserver"]
INSTALLED_APPS = ["indox_integrations.django"]
MIDDLEWARE = [
    "django.middleware.gzip.GZipMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
]
ROOT_URLCONF = "openai_django.urls"
DATABASES: dict[str, Any] = {}
USE_TZ = True
LOGGING_CONFIG = None

INDOX_INTEGRATIONS = {
    "CLIENT": "openai_apps.make_client",
    "PROTOCOL": "openai",
    "API_KEYS": KEYS,
    "MODELS": LIMITS.models,
    "MAX_BODY_BYTES": LIMITS.max_body_bytes,
    "MAX_TOKENS": LIMITS.max_tokens,
    "HEARTBEAT": HEARTBEAT,
}
