"""The demo page and the JS helper in a real browser, against every example app.

Debian's headless Chromium (tests/browser.py) drives ``python -m example_apps <framework>``
on the offline demo client: one browser for the session, one server per framework.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from browser import DemoPage, ExampleApp, example_app, launch_chromium
from playwright.sync_api import Browser, sync_playwright

from indox_integrations import (
    DemoClient,
    ReasoningEvent,
    TextEvent,
    ToolCallEvent,
    iter_events,
)
from indox_integrations.demo import STORY

pytestmark = pytest.mark.browser

FRAMEWORKS = ["fastapi", "flask", "django"]
DELAY = 0.05  # per demo chunk: the story takes about 9 s, an echo well under one
STORY_CHUNKS = len(re.findall(r"\S+\s*|\s+", STORY))
TRICKY = [
    "line one\nline two\n\nafter a blank line",
    "emoji 🦀 👩‍💻 ✓ and 漢字",
    "[DONE]",
    "data: [DONE]\n\nevent: done\ndata: not an event",
    " leading space, trailing newline\n",
]
MARKUP = "<img src=x onerror=alert(1)>"


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        chromium = launch_chromium(playwright)
        yield chromium
        chromium.close()


@pytest.fixture(scope="module", params=FRAMEWORKS)
def app(request: pytest.FixtureRequest) -> Iterator[ExampleApp]:
    with example_app(request.param, DELAY) as running:
        yield running


@pytest.fixture(scope="module")
def tab(browser: Browser, app: ExampleApp) -> Iterator[DemoPage]:
    """One browser tab per server; every test reloads the page in it."""
    context = browser.new_context(base_url=app.url)
    context.set_default_timeout(15_000)
    try:
        yield DemoPage(context.new_page())
    finally:
        context.close()


@pytest.fixture
def demo(tab: DemoPage) -> DemoPage:
    return tab.open()


def wait_for_partial_story(demo: DemoPage) -> str:
    """The story as shown while it is still streaming."""
    shown = demo.page.wait_for_function(
        """() => {
            const output = document.getElementById('output');
            return output.getAttribute('aria-busy') === 'true' && output.textContent;
        }"""
    ).json_value()
    assert isinstance(shown, str)
    return shown


def test_page_shows_the_upstream_and_the_demo_models(demo: DemoPage) -> None:
    assert demo.text("#upstream") == "demo (offline)"
    models = demo.evaluate(
        "() => [...document.querySelectorAll('#model option')].map(o => o.value)"
    )
    assert models == ["demo/story", "demo/echo", "demo/fail", "demo/think", "demo/tools"]
    assert not demo.visible("#problem")


def test_text_appears_before_the_stream_ends(demo: DemoPage, app: ExampleApp) -> None:
    before = len(app.records())
    demo.send("Tell me a story", "demo/story")
    shown = wait_for_partial_story(demo)

    assert STORY.startswith(shown) and len(shown) < len(STORY)
    assert demo.page.is_enabled("#stop") and demo.page.is_disabled("#send")
    demo.page.click("#stop")
    demo.wait_until_idle()
    assert app.wait_for_record(before, "client_disconnected") < STORY_CHUNKS


def test_stop_aborts_the_stream_and_the_server_closes_the_upstream(
    demo: DemoPage, app: ExampleApp
) -> None:
    before = len(app.records())
    demo.send("Tell me a story", "demo/story")
    wait_for_partial_story(demo)
    demo.page.click("#stop")
    demo.wait_until_idle()

    shown = demo.output()
    assert shown and STORY.startswith(shown) and len(shown) < len(STORY)
    assert demo.text("#status").startswith("Stopped")
    assert not demo.visible("#error")
    chunks = app.wait_for_record(before, "client_disconnected")
    assert chunks < STORY_CHUNKS / 2, f"{chunks} of {STORY_CHUNKS} chunks pulled after Stop"

    # The same page and the server go on serving.
    assert demo.run("still here", "demo/echo") == "still here"
    assert httpx.get(f"{app.url}/health", timeout=10).json() == {"ok": True}


def test_echo_round_trips_tricky_texts(demo: DemoPage) -> None:
    shown = {text: demo.run(text, "demo/echo") for text in TRICKY}
    assert shown == {text: text for text in TRICKY}
    assert not demo.visible("#error")


def test_usage_shows_in_the_usage_panel(demo: DemoPage) -> None:
    assert demo.run("one two three", "demo/echo") == "one two three"
    assert demo.visible("#usage")
    usage = demo.evaluate(
        """() => Object.fromEntries([...document.querySelectorAll('#usage dt')]
            .map((term) => [term.textContent, term.nextElementSibling.textContent]))"""
    )
    assert usage["Model"] == "demo/echo"
    assert usage["Prompt tokens"] == "3"
    completion = int(usage["Completion tokens"])
    assert completion >= 2  # 13 characters in chunks of at most 8
    assert int(usage["Total tokens"]) == 3 + completion


def test_a_failing_model_shows_the_error(demo: DemoPage) -> None:
    shown = demo.run("anything", "demo/fail")

    assert shown == "This answer starts "  # the three chunks before the failure
    assert demo.visible("#error")
    assert demo.text("#error").startswith("upstream_error: the model stream failed")
    assert demo.text("#status").startswith("Ended with an error")


def test_a_refused_request_shows_the_servers_error(demo: DemoPage) -> None:
    # A model the server does not offer: refused with a 4xx JSON error before any stream.
    demo.evaluate("() => document.getElementById('model').append(new Option('demo/unknown'))")
    assert demo.run("hello", "demo/unknown") == ""

    assert demo.visible("#error") and "model" in demo.text("#error")
    assert re.fullmatch(r"The server refused \(HTTP 4\d\d\)\.", demo.text("#status"))


def test_chat_mode_sends_the_conversation_so_far(demo: DemoPage, app: ExampleApp) -> None:
    demo.page.check('input[name="mode"][value="chat"]')
    assert demo.run("first question", "demo/echo") == "first question"
    assert demo.page.input_value("#prompt") == ""
    with demo.page.expect_request(f"{app.url}/chat") as posted:
        assert demo.run("second one", "demo/echo") == "second one"  # echo: the last user turn

    assert posted.value.post_data_json["messages"] == [
        {"role": "user", "content": "first question"},
        {"role": "assistant", "content": "first question"},
        {"role": "user", "content": "second one"},
    ]
    # Above the live answer: the turns so far and the latest question.
    turns = demo.evaluate(
        """() => [...document.querySelectorAll('#history li')]
            .map((item) => [item.dataset.role, item.textContent])"""
    )
    assert turns == [
        ["user", "You: first question"],
        ["assistant", "Assistant: first question"],
        ["user", "You: second one"],
    ]
    assert demo.visible("#usage")


def test_markup_in_the_answer_is_shown_as_text_and_runs_nothing(
    demo: DemoPage, app: ExampleApp
) -> None:
    assert demo.run(MARKUP, "demo/echo") == MARKUP

    assert demo.evaluate("() => document.querySelectorAll('img').length") == 0
    assert demo.evaluate("() => document.getElementById('output').childElementCount") == 0
    assert demo.dialogs == []
    assert f"{app.url}/x" not in demo.requests


def test_helper_imports_and_runs_in_the_page(demo: DemoPage) -> None:
    result = demo.evaluate(
        """async (text) => {
            const module = await import('/static/indox-stream.js');
            const { streamCompletion, readEvents } = module;
            const body = { prompt: text, model: 'demo/echo' };
            const streamed = await streamCompletion('/stream', body);

            // A character and a CRLF split across reads, fed through readEvents.
            const bytes = new TextEncoder().encode('data: 🦀 a\\r\\ndata: b\\r\\n\\r\\n');
            const stream = new ReadableStream({
                start(controller) {
                    for (const cut of [[0, 7], [7, 12], [12, 13], [13, bytes.length]]) {
                        controller.enqueue(bytes.slice(...cut));
                    }
                    controller.close();
                },
            });
            const events = [];
            for await (const event of readEvents(new Response(stream))) events.push(event.data);
            return {
                exports: Object.keys(module).sort(),
                text: streamed.text,
                done: streamed.done,
                usage: streamed.usage,
                events,
            };
        }""",
        TRICKY[3],
    )
    assert {"createParser", "readEvents", "renderInto", "streamCompletion"} <= set(
        result["exports"]
    )
    assert result["text"] == TRICKY[3] and result["done"] is True
    assert result["usage"]["model"] == "demo/echo"  # the example apps attach usage
    assert result["events"] == ["🦀 a\nb"]


def test_classic_script_build_exposes_the_same_functions(demo: DemoPage) -> None:
    demo.page.add_script_tag(url="/static/indox-stream.global.js")
    names = demo.evaluate("() => Object.keys(window.IndoxStream).sort()")
    assert {"createParser", "readEvents", "renderInto", "streamCompletion"} <= set(names)


def test_page_sends_the_csrf_token_where_the_server_wants_one(
    demo: DemoPage, app: ExampleApp
) -> None:
    # Only the Django example has CSRF protection (CsrfViewMiddleware, on by default).
    cookies = {c["name"]: c["value"] for c in demo.page.context.cookies()}
    assert ("csrftoken" in cookies) == (app.framework == "django"), cookies
    tokenless = httpx.post(
        f"{app.url}/stream", json={"prompt": "hi", "model": "demo/echo"}, timeout=10
    )
    assert tokenless.status_code == (403 if app.framework == "django" else 200)

    with demo.page.expect_request(f"{app.url}/stream") as posted:
        assert demo.run("hi from the page", "demo/echo") == "hi from the page"
    assert posted.value.headers.get("x-csrftoken") == cookies.get("csrftoken")


def test_page_fits_a_phone_and_loads_nothing_from_elsewhere(
    browser: Browser, app: ExampleApp
) -> None:
    context = browser.new_context(
        base_url=app.url, viewport={"width": 390, "height": 844},
        device_scale_factor=2, is_mobile=True, has_touch=True,
    )  # fmt: skip
    try:
        demo = DemoPage(context.new_page()).open()
        demo.run(
            "A phone-sized check ✓\nwith a second line that is long enough to wrap.", "demo/echo"
        )
        overflow = demo.evaluate(
            "() => document.documentElement.scrollWidth - document.documentElement.clientWidth"
        )
        assert overflow <= 0, f"the page scrolls sideways by {overflow} px on a phone"
        for selector in ("#prompt", "#send", "#stop", "#output", "#usage"):
            box = demo.page.locator(selector).bounding_box()
            assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= 390, selector
        demo.page.screenshot(
            path=str(Path("/tmp") / f"indox-demo-phone-{app.framework}.png"), full_page=True
        )
        assert demo.requests and all(url.startswith(f"{app.url}/") for url in demo.requests)
    finally:
        context.close()


def demo_events(prompt: str, model: str) -> list[Any]:
    """The typed events the offline demo client makes of ``prompt``: what the page must show."""
    return list(iter_events(DemoClient(delay=0).completion(prompt, model=model, stream=True)))


def test_reasoning_streams_muted_and_collapsible_above_the_answer(demo: DemoPage) -> None:
    prompt = "Why is the sky blue?"
    events = demo_events(prompt, "demo/think")
    demo.send(prompt, "demo/think")
    # Reasoning shows while the stream is still running.
    demo.page.wait_for_function(
        """() => document.getElementById('output').getAttribute('aria-busy') === 'true'
            && document.getElementById('reasoning-text').textContent !== ''"""
    )
    demo.wait_until_idle()

    reasoning = "".join(e.text for e in events if isinstance(e, ReasoningEvent))
    answer = "".join(e.text for e in events if isinstance(e, TextEvent))
    assert reasoning and answer
    assert demo.text("#reasoning-text") == reasoning
    assert demo.output() == answer
    assert demo.visible("#reasoning-text")
    colors = demo.evaluate(
        """() => ['reasoning', 'output']
            .map((id) => getComputedStyle(document.getElementById(id)).color)"""
    )
    assert colors[0] != colors[1], "reasoning is muted"
    demo.page.click("#reasoning summary")
    assert not demo.visible("#reasoning-text")
    assert demo.text("#status").startswith("Done in")

    # The next answer without reasoning hides the box again.
    assert demo.run("plain", "demo/echo") == "plain"
    assert not demo.visible("#reasoning")


def test_a_tool_call_shows_its_name_and_pretty_arguments(demo: DemoPage) -> None:
    prompt = "What is the weather in Oslo?"
    (call,) = [e for e in demo_events(prompt, "demo/tools") if isinstance(e, ToolCallEvent)]
    assert demo.run(prompt, "demo/tools") == ""

    shown = demo.evaluate(
        """() => [...document.querySelectorAll('#tools .tool-call')].map((box) => ({
            name: box.querySelector('h2').textContent,
            args: box.querySelector('pre').textContent,
            state: box.dataset.state,
        }))"""
    )
    assert shown == [
        {"name": call.name, "args": json.dumps(call.arguments, indent=2), "state": "complete"}
    ]
    assert demo.visible("#tools")
    assert demo.text("#status").endswith("Finish reason: tool_calls.")
    assert demo.visible("#usage") and not demo.visible("#error")

    assert demo.run("plain", "demo/echo") == "plain"
    assert not demo.visible("#tools")


# The resumable wire (issue 13), served by the page's own routes so it works against any app:
# the POST's reply ends before `event: done`, as a dropped connection does.
RESUME_PATH = "/streams/s-1"
FIRST_PART = (
    ": stream open\n\n"
    "id: 1\nevent: reasoning\ndata: Thinking about <b>it</b>\n\n"
    "id: 2\ndata: Hello, \n\n"
    'id: 3\nevent: tool_call_delta\ndata: {"index": 0, "id": "call_1", '
    '"name": "<img src=x onerror=alert(1)>", "arguments": "{\\"city\\": "}\n\n'
)
REST = (
    "id: 4\ndata: world <img src=x onerror=alert(2)>\n\n"
    'id: 5\nevent: tool_call_delta\ndata: {"index": 0, "id": null, "name": null, '
    '"arguments": "\\"Paris\\"}"}\n\n'
    'id: 6\nevent: tool_call\ndata: {"index": 0, "id": "call_1", '
    '"name": "<img src=x onerror=alert(1)>", "arguments": {"city": "Paris"}}\n\n'
    'id: 7\nevent: finish\ndata: {"reason": "tool_calls"}\n\n'
    "id: 8\nevent: done\ndata: [DONE]\n\n"
)
SSE_HEADERS = {"Content-Type": "text/event-stream; charset=utf-8", "Cache-Control": "no-cache"}
RESUME_HEADERS = {**SSE_HEADERS, "Indox-Stream-Id": "s-1", "Indox-Resume-Url": RESUME_PATH}


@pytest.fixture
def routed(demo: DemoPage) -> Iterator[DemoPage]:
    """The page with routes of the test's own; afterwards nothing kept for the next test."""
    try:
        yield demo
    finally:
        demo.page.unroute_all(behavior="ignoreErrors")
        demo.evaluate("() => sessionStorage.clear()")


def saved_stream(demo: DemoPage) -> Any:
    return demo.evaluate("() => JSON.parse(sessionStorage.getItem('indox-demo:stream'))")


def test_a_reload_mid_answer_continues_it_with_resume_stream(
    routed: DemoPage, app: ExampleApp
) -> None:
    page = routed.page
    held: list[Any] = []  # resume requests left unanswered, like a network that is down
    page.route(
        f"{app.url}/stream",
        lambda route: route.fulfill(status=200, headers=RESUME_HEADERS, body=FIRST_PART),
    )
    page.route(f"{app.url}{RESUME_PATH}", lambda route: held.append(route))
    routed.send("weather?", "demo/story")
    page.wait_for_function(
        "() => document.getElementById('status').textContent.includes('reconnecting')"
    )

    assert routed.output() == "Hello, "
    assert saved_stream(routed)["lastEventId"] == "3"
    assert saved_stream(routed)["resumeUrl"] == f"{app.url}{RESUME_PATH}"
    assert page.is_enabled("#stop")

    page.unroute(f"{app.url}{RESUME_PATH}")
    page.route(
        f"{app.url}{RESUME_PATH}",
        lambda route: route.fulfill(status=200, headers=SSE_HEADERS, body=REST),
    )
    with page.expect_request(f"{app.url}{RESUME_PATH}") as resumed:
        page.reload()
    routed.wait_until_idle()

    assert resumed.value.method == "GET"
    assert resumed.value.headers.get("last-event-id") == "3"
    assert routed.output() == "Hello, world <img src=x onerror=alert(2)>"
    assert routed.text("#reasoning-text") == "Thinking about <b>it</b>"
    assert routed.text("#tools h2") == "<img src=x onerror=alert(1)>"
    assert routed.text("#tools pre") == json.dumps({"city": "Paris"}, indent=2)
    assert page.input_value("#prompt") == "weather?"
    assert routed.text("#status").endswith("Finish reason: tool_calls.")
    assert page.is_enabled("#send")
    assert saved_stream(routed) is None, "a finished answer is forgotten"
    assert routed.evaluate("() => document.querySelectorAll('img, b').length") == 0
    assert routed.dialogs == []


def test_stop_cancels_a_resumable_stream_and_forgets_it(routed: DemoPage, app: ExampleApp) -> None:
    page = routed.page
    page.route(
        f"{app.url}/stream",
        lambda route: route.fulfill(status=200, headers=RESUME_HEADERS, body=FIRST_PART),
    )
    page.route(
        f"{app.url}{RESUME_PATH}",
        lambda route: route.fulfill(status=204) if route.request.method == "DELETE" else None,
    )
    routed.send("weather?", "demo/story")
    page.wait_for_function(
        "() => document.getElementById('status').textContent.includes('reconnecting')"
    )
    with page.expect_request(
        lambda request: request.method == "DELETE" and request.url == f"{app.url}{RESUME_PATH}"
    ) as cancelled:
        page.click("#stop")
    routed.wait_until_idle()

    assert routed.text("#status").startswith("Stopped")
    assert saved_stream(routed) is None
    if app.framework == "django":
        assert cancelled.value.headers.get("x-csrftoken")


def test_an_expired_stream_on_reload_shows_the_error(routed: DemoPage, app: ExampleApp) -> None:
    page = routed.page
    entry = {"resumeUrl": f"{app.url}{RESUME_PATH}", "lastEventId": "3", "mode": "completion",
             "prompt": "weather?", "model": "demo/story", "text": "Hello, ", "reasoning": "",
             "calls": []}  # fmt: skip
    page.route(
        f"{app.url}{RESUME_PATH}",
        lambda route: route.fulfill(
            status=404, json={"error": {"type": "not_found", "message": "unknown stream"}}
        ),
    )
    routed.evaluate(
        "(entry) => sessionStorage.setItem('indox-demo:stream', JSON.stringify(entry))", entry
    )
    page.reload()
    routed.wait_until_idle()

    assert routed.output() == "Hello, "
    assert routed.text("#error") == "stream_not_found: unknown stream"
    assert routed.text("#status").startswith("Ended with an error")
    assert page.is_enabled("#send")
    assert saved_stream(routed) is None
