"""Imported for its effect: Django configured once per test process with the test
project's settings. Not through DJANGO_SETTINGS_MODULE, which the servers other
tests start would inherit."""

from __future__ import annotations

import django
import django_testproject.settings as project
from django.conf import settings

settings.configure(**{name: getattr(project, name) for name in dir(project) if name.isupper()})
django.setup()
