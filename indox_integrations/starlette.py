"""Server-sent event responses for Starlette, and so for FastAPI."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

try:
    import anyio.lowlevel
    from starlette.background import BackgroundTask
    from starlette.responses import StreamingResponse
    from starlette.types import Send
except ImportError as err:  # pragma: no cover - depends on the environment
    raise ImportError(
        'indox_integrations.starlette needs Starlette: pip install "indox-integrations[starlette]"'
    ) from err

from .stream import AsyncSSEStream, StreamOptions, async_sse_stream

if TYPE_CHECKING:
    if sys.version_info >= (3, 11):
        from typing import Unpack
    else:
        from typing_extensions import Unpack

__all__ = ["SSEResponse", "sse_response"]


class SSEResponse(StreamingResponse):
    """A ``StreamingResponse`` of an LLM chunk stream as server-sent events.

    The body is :func:`~indox_integrations.async_sse_stream` of ``source``;
    the upstream is closed as soon as the client goes away.
    """

    media_type = "text/event-stream"

    def __init__(
        self,
        source: Any,
        *,
        status_code: int = 200,
        headers: Mapping[str, str] | None = None,
        background: BackgroundTask | None = None,
        **options: Unpack[StreamOptions],
    ) -> None:
        self.stream: AsyncSSEStream = async_sse_stream(source, **options)
        super().__init__(
            self.stream,
            status_code=status_code,
            headers={**self.stream.headers, **(headers or {})},
            background=background,
        )

    async def stream_response(self, send: Send) -> None:
        try:
            await send(
                {
                    "type": "http.response.start",
                    "status": self.status_code,
                    "headers": self.raw_headers,
                }
            )
            async for chunk in self.body_iterator:
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
                # uvicorn's send() returns at once, even after a disconnect, and a
                # ready upstream never suspends: without a checkpoint the disconnect
                # listener would not run (and cancel us) until the upstream ran dry.
                await anyio.lowlevel.checkpoint()
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            # On disconnect Starlette cancels this coroutine (ASGI < 2.4) or send()
            # raises (2.4); when that lands in send(), the stream is left suspended
            # at a yield and nothing else would close the upstream. close() is
            # synchronous, so it also runs inside an already cancelled scope.
            self.stream.close()


def sse_response(
    source: Any,
    *,
    status_code: int = 200,
    headers: Mapping[str, str] | None = None,
    background: BackgroundTask | None = None,
    **options: Unpack[StreamOptions],
) -> SSEResponse:
    """Stream ``source`` (a sync or async chunk stream) as server-sent events.

    Options are those of :func:`~indox_integrations.sse_stream`. A sync
    upstream runs in a thread of its own (no thread-pool limit); the upstream
    is closed when the stream ends, fails, times out or the client leaves.

        async def stream(request):
            body = await request.json()
            return sse_response(client.completion(body["prompt"], stream=True,
                                                  return_generator=True), usage="attach")
    """
    return SSEResponse(
        source, status_code=status_code, headers=headers, background=background, **options
    )
