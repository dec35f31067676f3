"""SIGTERM mid-stream: open streams end with a shutdown error and the end marker, and the
server process exits, instead of hanging or cutting the answer with no end."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator

import httpx
import pytest
from httpx_sse import connect_sse
from servers import ROOT, free_port, wait_for_port

from indox_integrations import StreamReport, shutdown, sse_stream

LONG_PROMPT = "All work and no play makes a long answer. " * 40  # ~450 echo chunks: ~13 s


@pytest.fixture(autouse=True)
def serving() -> Iterator[None]:
    shutdown.reset()
    yield
    shutdown.reset()


def slow(count: int, delay: float) -> Iterator[str]:
    for i in range(count):
        time.sleep(delay)
        yield f"{i} "


def test_open_streams_end_with_a_shutdown_error_once_their_grace_is_over() -> None:
    reports: list[StreamReport] = []
    stream = sse_stream(
        slow(1000, 0.01),
        usage="attach",
        shutdown_grace=0.3,
        on_complete=reports.append,
        heartbeat=None,
    )
    out = [next(stream), next(stream)]
    started = time.monotonic()
    shutdown.begin()
    out.extend(stream)
    wire = b"".join(out).decode()
    assert time.monotonic() - started < 2
    assert wire.endswith(
        'event: error\ndata: {"type": "shutdown", "message": "the server is shutting down"}\n\n'
        "event: done\ndata: [DONE]\n\n"
    )
    assert [r.outcome for r in reports] == ["shutdown"]


def test_a_silent_stream_is_woken_when_shutdown_begins() -> None:
    reports: list[StreamReport] = []
    stream = sse_stream(slow(3, 30), shutdown_grace=0, on_complete=reports.append)
    next(stream)  # ": stream open"; the upstream is now silent for 30 s
    timer = threading.Timer(0.2, shutdown.begin)
    timer.start()
    started = time.monotonic()
    rest = b"".join(stream)
    assert time.monotonic() - started < 3
    assert b'"type": "shutdown"' in rest and rest.endswith(b"data: [DONE]\n\n")
    assert [r.outcome for r in reports] == ["shutdown"]


def test_shutdown_grace_is_checked() -> None:
    with pytest.raises(ValueError, match="shutdown_grace"):
        sse_stream([], shutdown_grace=-1)


APPS = {
    "fastapi": ["fastapi"],
    "flask": ["flask"],
    "django-asgi": ["django"],
    "django-wsgi": ["django", "--wsgi"],
}


@pytest.mark.parametrize("app", list(APPS))
def test_sigterm_to_the_example_app_ends_open_streams_and_the_process(app: str) -> None:
    port = free_port()
    argv = [sys.executable, "-m", "example_apps", *APPS[app], "--port", str(port)]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with tempfile.TemporaryFile("w+") as log:
        process = subprocess.Popen(
            argv, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            wait_for_port(port, 30, process)
            events: list[tuple[str, str]] = []
            body = {"prompt": LONG_PROMPT, "model": "demo/echo"}
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
                headers = {}
                if app.startswith("django"):  # CSRF stays on: the page's cookie, sent back
                    client.get("/")
                    headers["X-CSRFToken"] = client.cookies["csrftoken"]
                with connect_sse(client, "POST", "/stream", json=body, headers=headers) as source:
                    for event in source.iter_sse():
                        events.append((event.event, event.data))
                        if len(events) == 3:
                            # To the main process only, as a container runtime sends it.
                            process.send_signal(signal.SIGTERM)
                            signalled = time.monotonic()
            ended = time.monotonic() - signalled
            assert process.wait(15) is not None
            exited = time.monotonic() - signalled
        finally:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(5)
        log.seek(0)
        output = log.read()
    names = [name for name, _ in events]
    assert names[-2:] == ["error", "done"], output[-3000:]
    assert json.loads(events[-2][1])["type"] == "shutdown"
    assert set(names[:-2]) == {"message"} and len(names) > 10
    assert "".join(data for name, data in events if name == "message") in LONG_PROMPT
    assert 4 < ended < 9  # the default grace is 5 s
    assert exited < 12, output[-3000:]
    assert "stream shutdown" in output, output[-3000:]  # outcome logged with the usage so far
