"""An offline client shaped like indoxRouter's, so every example runs without a key.

Models: ``demo/story`` streams prose word by word, ``demo/echo`` streams the
prompt (or the last user message) back exactly in chunks of 1 to 8
characters, ``demo/fail`` streams a few chunks and then fails the way a
provider error would, ``demo/think`` streams its reasoning and then the answer,
``demo/tools`` streams a ``get_weather`` tool call whose arguments arrive in
pieces.  Reasoning and tool calls come as OpenAI-style delta chunks, as
indoxRouter relays them.  Streams end with the usage dict of indoxRouter's guide.
"""

from __future__ import annotations

import asyncio
import json
import random
import re
import time
from collections.abc import AsyncGenerator, AsyncIterator, Generator, Iterator
from typing import Any

__all__ = ["AsyncDemoClient", "DemoClient", "DemoProviderError", "MODELS"]

MODELS = ("demo/story", "demo/echo", "demo/fail", "demo/think", "demo/tools")

STORY = """\
Unit Seven had been built to weld car doors, and for eleven years it did \
nothing else. Then the plant closed, and someone left a box of paints on the \
workbench beside its charging dock.

The first strokes were straight lines, because straight lines were all it \
knew. It painted the horizon as a weld seam, the sun as a bolt head, the sea \
as a sheet of steel waiting to be joined. The colours were right and the \
pictures were wrong, and Unit Seven could not say why.

So it watched. It watched the light move across the floor in the afternoon, \
the way a puddle held the sky and then let it go. It learned that a shadow is \
not black but blue, that a line can tremble and still be true, and that \
the space left empty matters as much as the space filled in.

When the caretaker found the canvases months later, she did not see a \
machine's work. She saw a window, and through it a morning that had never \
been welded shut."""

_FAIL_TEXT = "This answer starts well, but the provider is about to"

_THOUGHTS = """The user asked: {prompt}
A short answer is best. Let me think it through in two steps,
then answer plainly."""

_ANSWER = "Here is my answer, after thinking it over: keep it short, and keep it kind."


def _words(text: str) -> list[str]:
    return re.findall(r"\S+\s*|\s+", text)


def _delta(**delta: Any) -> dict[str, Any]:
    return {"object": "chat.completion.chunk", "choices": [{"index": 0, "delta": delta}]}


def _think(prompt: str) -> list[Any]:
    thoughts = _words(_THOUGHTS.format(prompt=prompt.strip()[:200] or "nothing"))
    return [_delta(reasoning_content=piece) for piece in thoughts] + _words(_ANSWER)


def _tools(prompt: str) -> list[Any]:
    found = re.search(r"\bin ([A-Z][\w-]*(?: [A-Z][\w-]*)*)", prompt)
    arguments = json.dumps({"city": found.group(1) if found else "Paris", "unit": "celsius"})
    pieces = [arguments[i : i + 7] for i in range(0, len(arguments), 7)]
    first = {"index": 0, "id": "call_demo_1", "type": "function"}
    calls = [{**first, "function": {"name": "get_weather", "arguments": ""}}]
    calls += [{"index": 0, "function": {"arguments": piece}} for piece in pieces]
    return [_delta(tool_calls=[call]) for call in calls]


class DemoProviderError(RuntimeError):
    """Raised mid-stream by ``demo/fail``, as a provider error would be."""


def _chunks(model: str, prompt: str) -> list[Any]:
    if model == "demo/think":
        return _think(prompt)
    if model == "demo/tools":
        return _tools(prompt)
    if model == "demo/echo":
        rng = random.Random(len(prompt))
        pieces, i = [], 0
        while i < len(prompt):
            size = rng.randint(1, 8)
            pieces.append(prompt[i : i + size])
            i += size
        return pieces
    return _words(STORY if model == "demo/story" else _FAIL_TEXT)


def _check_model(model: str) -> None:
    if model not in MODELS:
        raise ValueError(f"unknown model {model!r}: the demo client offers {', '.join(MODELS)}")


def _last_user_message(messages: list[dict[str, Any]]) -> str:
    for message in reversed(messages):
        if message.get("role") == "user":
            return str(message.get("content", ""))
    return ""


class _Run:
    """One demo generation: its chunks and the usage so far."""

    def __init__(self, model: str, prompt: str, max_tokens: int | None) -> None:
        _check_model(model)
        chunks = _chunks(model, prompt)
        self.finish_reason = "tool_calls" if model == "demo/tools" else "stop"
        if max_tokens is not None and len(chunks) > max_tokens:
            chunks, self.finish_reason = chunks[:max_tokens], "length"
        self.model = model
        self.chunks = chunks
        self.prompt_tokens = max(1, len(prompt.split()))
        self.sent = 0
        self.fails = model == "demo/fail"

    def text(self) -> str:
        return "".join(chunk for chunk in self.chunks if isinstance(chunk, str))

    def usage(self, finished: bool = True) -> dict[str, Any]:
        total = self.prompt_tokens + self.sent
        return {
            "is_usage_info": True,
            "usage": {
                "tokens_prompt": self.prompt_tokens,
                "tokens_completion": self.sent,
                "tokens_total": total,
            },
            "cost": round(total * 0.000002, 8),
            "model": self.model,
            "provider": "demo",
            "finish_reason": self.finish_reason if finished else None,
        }

    def response(self) -> dict[str, Any]:
        if self.fails:
            raise DemoProviderError("demo/fail: the provider returned an error (simulated)")
        self.sent = len(self.chunks)
        usage = self.usage()
        usage.pop("is_usage_info")
        text = self.text()
        return {"data": text, "success": True, **usage}


class DemoStream:
    """The sync stream: text chunks, then the usage dict; has ``get_usage_info()``."""

    def __init__(self, run: _Run, delay: float) -> None:
        self._run = run
        self._delay = delay
        self._iterator = self._generate()
        self.closed = False

    def __iter__(self) -> Iterator[Any]:
        return self

    def __next__(self) -> Any:
        return next(self._iterator)

    def close(self) -> None:
        self._iterator.close()
        self.closed = True

    def get_usage_info(self) -> dict[str, Any]:
        """Usage so far: complete at the end, partial after an early stop."""
        return self._run.usage(finished=False)

    def _generate(self) -> Generator[Any, None, None]:
        run = self._run
        for index, chunk in enumerate(run.chunks):
            if self._delay:
                time.sleep(self._delay)
            if run.fails and index == 3:
                raise DemoProviderError("demo/fail: the provider returned an error (simulated)")
            run.sent += 1
            yield chunk
        yield run.usage()


class AsyncDemoStream:
    """The async stream, same chunks as :class:`DemoStream`."""

    def __init__(self, run: _Run, delay: float) -> None:
        self._run = run
        self._delay = delay
        self._iterator = self._generate()
        self.closed = False

    def __aiter__(self) -> AsyncIterator[Any]:
        return self

    async def __anext__(self) -> Any:
        return await self._iterator.__anext__()

    async def aclose(self) -> None:
        await self._iterator.aclose()
        self.closed = True

    def get_usage_info(self) -> dict[str, Any]:
        """Usage so far: complete at the end, partial after an early stop."""
        return self._run.usage(finished=False)

    async def _generate(self) -> AsyncGenerator[Any, None]:
        run = self._run
        for index, chunk in enumerate(run.chunks):
            if self._delay:
                await asyncio.sleep(self._delay)
            if run.fails and index == 3:
                raise DemoProviderError("demo/fail: the provider returned an error (simulated)")
            run.sent += 1
            yield chunk
        yield run.usage()


class DemoClient:
    """Offline stand-in for ``indoxrouter.Client``: ``completion()`` and ``chat()``.

    client = DemoClient(delay=0.03)
    for chunk in client.completion("Hi", model="demo/echo", stream=True):
        print(chunk)
    """

    default_model = "demo/story"
    models = MODELS

    def __init__(self, delay: float = 0.03) -> None:
        self.delay = delay

    def completion(
        self,
        prompt: str,
        model: str = "demo/story",
        temperature: float = 0.7,
        max_tokens: int | None = None,
        stream: bool = False,
        return_generator: bool = False,
        **kwargs: Any,
    ) -> Any:
        """Stream (``stream=True``) or return the full response for ``prompt``."""
        run = _Run(model, prompt, max_tokens)
        return DemoStream(run, self.delay) if stream else run.response()

    def chat(
        self,
        messages: list[dict[str, Any]],
        model: str = "demo/story",
        temperature: float = 0.7,
        max_tokens: int | None = None,
        stream: bool = False,
        return_generator: bool = False,
        **kwargs: Any,
    ) -> Any:
        """Like :meth:`completion`, answering the last user message."""
        return self.completion(_last_user_message(messages), model, temperature, max_tokens, stream)


class AsyncDemoClient:
    """The async variant of :class:`DemoClient`: its methods are coroutines."""

    default_model = "demo/story"
    models = MODELS

    def __init__(self, delay: float = 0.03) -> None:
        self.delay = delay

    async def completion(
        self,
        prompt: str,
        model: str = "demo/story",
        temperature: float = 0.7,
        max_tokens: int | None = None,
        stream: bool = False,
        return_generator: bool = False,
        **kwargs: Any,
    ) -> Any:
        """Stream (``stream=True``) or return the full response for ``prompt``."""
        run = _Run(model, prompt, max_tokens)
        return AsyncDemoStream(run, self.delay) if stream else run.response()

    async def chat(
        self,
        messages: list[dict[str, Any]],
        model: str = "demo/story",
        temperature: float = 0.7,
        max_tokens: int | None = None,
        stream: bool = False,
        return_generator: bool = False,
        **kwargs: Any,
    ) -> Any:
        """Like :meth:`completion`, answering the last user message."""
        return await self.completion(
            _last_user_message(messages), model, temperature, max_tokens, stream
        )
