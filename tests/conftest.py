"""Fixtures every test module may use."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
from servers import NODE


@pytest.fixture
def app_url(request: pytest.FixtureRequest) -> str:
    """The base URL of the app of the test's ``framework`` parameter: the module's
    ``fastapi_url``, ``flask_url``, ``django_wsgi_url`` or ``django_asgi_url`` fixture."""
    framework = request.node.callspec.params["framework"]
    return str(request.getfixturevalue(f"{framework.replace('-', '_')}_url"))


@pytest.fixture
def refuse_threads(monkeypatch: pytest.MonkeyPatch) -> Callable[[str], None]:
    """Make ``Thread.start()`` fail, as at the process's thread limit, for threads of a name."""

    def refuse(name: str) -> None:
        start = threading.Thread.start

        def refusing(thread: threading.Thread) -> None:
            if thread.name == name:
                raise RuntimeError("can't start new thread")
            start(thread)

        monkeypatch.setattr(threading.Thread, "start", refusing)

    return refuse


@pytest.fixture(scope="session")
def npm_clients() -> Path:
    """The npm clients' folder, once every client it pins is installed there."""
    pinned = json.loads((NODE / "package.json").read_text())["dependencies"]
    if not all((NODE / "node_modules" / name / "package.json").is_file() for name in pinned):
        pytest.fail("the npm clients are not installed: run tests/run.sh (or npm ci in tests/node)")
    return NODE
