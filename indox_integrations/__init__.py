"""Stream LLM tokens from any client to the browser, in FastAPI, Flask or Django."""

from __future__ import annotations

from .anthropic import AnthropicChat
from .assets import STATIC_DIR, static_file
from .chunks import UnsupportedChunkError, aiter_events, iter_events, normalize_usage
from .clients import acall_client, call_client, client_error
from .demo import AsyncDemoClient, DemoClient, DemoProviderError
from .events import (
    ErrorEvent,
    Event,
    FinishEvent,
    FinishReason,
    ReasoningEvent,
    TextEvent,
    ToolCallDeltaEvent,
    ToolCallEvent,
    UsageEvent,
)
from .langchain import LangChainChat
from .protocols import PROTOCOLS, StreamProtocol, get_protocol
from .requests import (
    ChatRequest,
    CompletionRequest,
    Limits,
    RequestError,
    parse_chat,
    parse_completion,
    read_json_body,
)
from .sse import encode_comment, encode_data, encode_event
from .stream import (
    AsyncSSEStream,
    SSEStream,
    StreamOptions,
    StreamReport,
    UsagePolicy,
    async_sse_stream,
    sse_stream,
)

__version__ = "0.1.0"

__all__ = [
    "STATIC_DIR",
    "AnthropicChat",
    "AsyncDemoClient",
    "AsyncSSEStream",
    "ChatRequest",
    "CompletionRequest",
    "DemoClient",
    "DemoProviderError",
    "ErrorEvent",
    "Event",
    "FinishEvent",
    "FinishReason",
    "LangChainChat",
    "Limits",
    "PROTOCOLS",
    "ReasoningEvent",
    "RequestError",
    "SSEStream",
    "StreamOptions",
    "StreamProtocol",
    "StreamReport",
    "TextEvent",
    "ToolCallDeltaEvent",
    "ToolCallEvent",
    "UnsupportedChunkError",
    "UsageEvent",
    "UsagePolicy",
    "__version__",
    "acall_client",
    "aiter_events",
    "async_sse_stream",
    "call_client",
    "client_error",
    "encode_comment",
    "encode_data",
    "encode_event",
    "get_protocol",
    "iter_events",
    "normalize_usage",
    "parse_chat",
    "parse_completion",
    "read_json_body",
    "sse_stream",
    "static_file",
]
