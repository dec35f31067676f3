"""The public names are pinned, and the core needs nothing but the standard library."""

from __future__ import annotations

import importlib
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

import indox_integrations

ROOT = Path(__file__).resolve().parent.parent
CORE = [
    "anthropic",
    "assets",
    "chunks",
    "clients",
    "concurrency",
    "demo",
    "events",
    "langchain",
    "openai",
    "overload",
    "protocols",
    "protocols.ai_sdk",
    "protocols.indox",
    "protocols.openai",
    "requests",
    "resumable",
    "shutdown",
    "sse",
    "stores",
    "stores.memory",
    "stores.redis",
    "stream",
    "watchdog",
    "wsgi",
]

PUBLIC = [
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


def test_exported_names_are_pinned() -> None:
    assert sorted(indox_integrations.__all__) == sorted(PUBLIC)
    for name in PUBLIC:
        assert getattr(indox_integrations, name) is not None


def test_star_import_gives_exactly_the_public_names() -> None:
    namespace: dict[str, object] = {}
    exec("from indox_integrations import *", namespace)
    assert sorted(k for k in namespace if k != "__builtins__") == sorted(PUBLIC)


def test_version_matches_the_project_metadata() -> None:
    pyproject = (ROOT / "pyproject.toml").read_text()
    version = re.search(r'^version = "([^"]+)"$', pyproject, re.MULTILINE)
    assert version is not None
    assert indox_integrations.__version__ == version.group(1)


@pytest.mark.parametrize("module", CORE)
def test_each_core_module_exports_what_it_defines(module: str) -> None:
    loaded = importlib.import_module(f"indox_integrations.{module}")
    for name in loaded.__all__:
        assert hasattr(loaded, name), f"indox_integrations.{module}.__all__ names {name}"


def _modules_after(code: str) -> list[str]:
    probe = (
        "import json, sys\n"
        "before = set(sys.modules)\n"
        f"{code}\n"
        "print(json.dumps(sorted(set(sys.modules) - before)))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    return list(json.loads(result.stdout))


def test_the_core_imports_only_the_standard_library() -> None:
    imported = _modules_after(
        "import indox_integrations\n"
        + "".join(f"import indox_integrations.{module}\n" for module in CORE)
    )
    assert "indox_integrations.stream" in imported
    third_party = sorted(
        {
            name.split(".")[0]
            for name in imported
            if name.split(".")[0] not in sys.stdlib_module_names
            and name.split(".")[0] != "indox_integrations"
        }
    )
    assert third_party == []
    for framework in ("fastapi", "starlette", "flask", "django", "pydantic", "httpx", "anyio"):
        assert framework not in imported


def test_the_probe_would_notice_a_third_party_import() -> None:
    imported = _modules_after("import indox_integrations, httpx_sse")
    assert "httpx_sse" in imported and "httpx_sse" not in sys.stdlib_module_names


def test_package_is_typed() -> None:
    assert (Path(indox_integrations.__file__).parent / "py.typed").is_file()
