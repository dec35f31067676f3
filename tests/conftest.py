"""Fixtures every test module may use."""

from __future__ import annotations

import pytest


@pytest.fixture
def app_url(request: pytest.FixtureRequest) -> str:
    """The base URL of the app of the test's ``framework`` parameter: the module's
    ``fastapi_url``, ``flask_url``, ``django_wsgi_url`` or ``django_asgi_url`` fixture."""
    framework = request.node.callspec.params["framework"]
    return str(request.getfixturevalue(f"{framework.replace('-', '_')}_url"))
