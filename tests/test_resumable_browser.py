"""The demo page on a resumable example app (``--resumable``), in headless Chromium.

Reloading the page mid-answer continues the same generation from where the page had got
to (the page keeps the resume URL and the last event id in ``sessionStorage``), with no
second POST; Stop cancels the generation on the server.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from browser import DemoPage, ExampleApp, example_app, launch_chromium
from playwright.sync_api import Browser, sync_playwright

from indox_integrations.demo import STORY

pytestmark = pytest.mark.browser

DELAY = 0.03  # per demo chunk: the story takes about 5 s


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        chromium = launch_chromium(playwright)
        yield chromium
        chromium.close()


@pytest.fixture(scope="module", params=["fastapi", "flask", "django"])
def app(request: pytest.FixtureRequest) -> Iterator[ExampleApp]:
    with example_app(request.param, DELAY, "--resumable") as running:
        yield running


@pytest.fixture
def demo(browser: Browser, app: ExampleApp) -> Iterator[DemoPage]:
    context = browser.new_context(base_url=app.url)
    context.set_default_timeout(20_000)
    try:
        yield DemoPage(context.new_page()).open()
    finally:
        context.close()


def partial_story(demo: DemoPage, at_least: int) -> str:
    """The story as shown while it streams, once it shows ``at_least`` characters."""
    shown = demo.page.wait_for_function(
        """(n) => {
            const output = document.getElementById('output');
            const text = output.textContent;
            return output.getAttribute('aria-busy') === 'true' && text.length >= n && text;
        }""",
        arg=at_least,
    ).json_value()
    assert isinstance(shown, str)
    return shown


def posts(demo: DemoPage) -> list[str]:
    return [url for url in demo.requests if re.search(r"/stream$", url)]


def test_a_reload_mid_answer_continues_the_same_generation(demo: DemoPage, app: ExampleApp) -> None:
    before = len(app.records())
    demo.send("Tell me a story", "demo/story")
    shown = partial_story(demo, 200)
    assert STORY.startswith(shown) and len(shown) < len(STORY)
    saved = demo.evaluate("() => JSON.parse(sessionStorage.getItem('indox-demo:stream'))")
    assert re.fullmatch(rf"{re.escape(app.url)}/streams/[\w-]+", saved["resumeUrl"])

    demo.page.reload()
    demo.wait_until_idle()

    assert demo.output() == STORY
    assert demo.text("#status").startswith("Done")
    assert not demo.visible("#error")
    assert demo.evaluate("() => sessionStorage.getItem('indox-demo:stream')") is None
    # One POST in all: the reloaded page resumed by GET, the generation ran once to its end.
    assert len(posts(demo)) == 1
    assert saved["resumeUrl"] in demo.requests
    assert app.wait_for_record(before, "completed") > 0
    assert [outcome for outcome, _ in app.records()[before:]] == ["completed"]


def test_stop_cancels_the_generation_on_the_server(demo: DemoPage, app: ExampleApp) -> None:
    before = len(app.records())
    demo.send("Tell me a story", "demo/story")
    partial_story(demo, 50)
    demo.page.click("#stop")
    demo.wait_until_idle()

    assert demo.text("#status").startswith("Stopped")
    chunks = app.wait_for_record(before, "cancelled")
    assert chunks > 0
    assert demo.evaluate("() => sessionStorage.getItem('indox-demo:stream')") is None
