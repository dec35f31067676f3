"""Shared helpers for the real-browser tests: Debian's Chromium, the example apps, the demo page."""

from __future__ import annotations

import contextlib
import os
import re
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, Playwright
from servers import free_port, process_server

CHROMIUM = Path(os.environ.get("INDOX_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip
SKIP_ENV = "INDOX_SKIP_BROWSER"

# Runs the example app exactly as `python -m example_apps` does, with one extra handler
# that copies the kit's per-stream records ("stream <outcome>: ...") into a file.
_BOOT = """\
import logging, sys
handler = logging.FileHandler(sys.argv.pop(1), encoding="utf-8")
handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
logger = logging.getLogger("indox_integrations")
logger.addHandler(handler)
logger.setLevel(logging.INFO)
from example_apps.__main__ import main
main(sys.argv[1:])
"""

_RECORD = re.compile(r"stream (\w+): (\d+) chunks")


def launch_chromium(playwright: Playwright) -> Browser:
    """Debian's headless Chromium with a fresh profile; fails (never skips) when it is missing."""
    if os.environ.get(SKIP_ENV) == "1":
        pytest.skip(f"{SKIP_ENV}=1: browser tests skipped on request")
    if not CHROMIUM.is_file():
        pytest.fail(
            f"expected Chromium at {CHROMIUM}, found nothing: install it with "
            f"`apt-get install chromium` (tests/run.sh does), point INDOX_CHROMIUM at another "
            f"binary, or set {SKIP_ENV}=1 to skip the browser tests",
            pytrace=False,
        )
    # launch() gives every browser a new temporary profile of its own.
    return playwright.chromium.launch(
        executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
    )


@dataclass
class ExampleApp:
    """A running example app and the stream records it has logged so far."""

    framework: str
    url: str
    log: Path

    def records(self) -> list[tuple[str, int]]:
        """``(outcome, chunks)`` of every finished stream, oldest first."""
        text = self.log.read_text(encoding="utf-8") if self.log.exists() else ""
        return [(m[1], int(m[2])) for m in _RECORD.finditer(text)]

    def wait_for_record(self, after: int, outcome: str, timeout: float = 15.0) -> int:
        """Chunks of the first stream that ended with ``outcome`` after the first ``after`` ones.

        Matching the outcome, not just taking the next record, keeps a late record of an
        earlier stream from being mistaken for this one.
        """
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for ended, chunks in self.records()[after:]:
                if ended == outcome:
                    return chunks
            time.sleep(0.05)
        raise AssertionError(
            f"{self.framework}: no stream ended with {outcome!r} within {timeout} s; "
            f"records since: {self.records()[after:]}"
        )


@contextlib.contextmanager
def example_app(framework: str, delay: float, *args: str) -> Iterator[ExampleApp]:
    """``python -m example_apps <framework> [args]`` on a free port, demo client with ``delay``."""
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "streams.log"
        argv = [sys.executable, "-c", _BOOT, str(log), framework, "--port", str(port), *args]
        with process_server(argv, port, env={"INDOX_DEMO_DELAY": str(delay)}) as url:
            yield ExampleApp(framework, url, log)


@dataclass
class DemoPage:
    """The example apps' page (example_apps/templates/index.html), by its element ids."""

    page: Page
    dialogs: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.page.on(
            "dialog", lambda dialog: (self.dialogs.append(dialog.message), dialog.dismiss())
        )
        self.page.on("request", lambda request: self.requests.append(request.url))

    def open(self) -> DemoPage:
        """Load the page afresh, forgetting earlier dialogs and requests."""
        self.dialogs.clear()
        self.requests.clear()
        self.page.goto("/")
        # The module script enables Send once the helper is imported and the models are listed.
        self.page.wait_for_selector("#send:enabled")
        return self

    def send(self, prompt: str, model: str) -> None:
        self.page.fill("#prompt", prompt)
        self.page.select_option("#model", model)
        self.page.click("#send")

    def wait_until_idle(self, timeout: float = 30.0) -> None:
        """Until the stream has ended: the page marks the answer ``aria-busy="false"``."""
        self.page.wait_for_selector('#output[aria-busy="false"]', timeout=timeout * 1000)

    def run(self, prompt: str, model: str) -> str:
        """Send and wait for the end; the answer as shown."""
        self.send(prompt, model)
        self.wait_until_idle()
        return self.output()

    def output(self) -> str:
        return self.text("#output")

    def text(self, selector: str) -> str:
        return str(self.page.eval_on_selector(selector, "element => element.textContent"))

    def visible(self, selector: str) -> bool:
        return self.page.is_visible(selector)

    def evaluate(self, script: str, arg: Any = None) -> Any:
        return self.page.evaluate(script, arg)
