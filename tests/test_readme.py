"""The README's Python snippets parse, import what exists and call the kit with
keyword arguments it takes; its Django settings use keys the kit knows; its browser
snippets use what the JS helper has."""

from __future__ import annotations

import ast
import contextlib
import importlib
import inspect
import re
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import django_settings  # noqa: F401  (the kit's Django urls module reads settings)
import pytest

from indox_integrations.django.conf import DEFAULTS

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
FENCE = re.compile(r"^ *```python\n(.*?)^ *```", re.S | re.M)
BROWSER_FENCE = re.compile(r"^ *```(?:js|html)\n(.*?)^ *```", re.S | re.M)


def snippets(fence: re.Pattern[str] = FENCE, readme: Path = README) -> list[tuple[int, str]]:
    """Every block of ``readme`` that ``fence`` matches, dedented, with its first line."""
    text = readme.read_text(encoding="utf-8")
    return [
        (text.count("\n", 0, found.start()) + 2, textwrap.dedent(found.group(1)))
        for found in fence.finditer(text)
    ]


SNIPPETS = snippets()


def kit_names(tree: ast.Module) -> Iterator[tuple[str, Any]]:
    """What the snippet imports from the kit, as ``(local name, object)``."""
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("indox_"):
            module = importlib.import_module(node.module or "")
            for alias in node.names:
                if not hasattr(module, alias.name):  # a submodule, not imported yet
                    with contextlib.suppress(ModuleNotFoundError):
                        importlib.import_module(f"{node.module}.{alias.name}")
                assert hasattr(module, alias.name), f"{node.module} has no {alias.name}"
                yield alias.asname or alias.name, getattr(module, alias.name)


def keywords_of(function: Callable[..., Any]) -> set[str] | None:
    """The keyword arguments ``function`` takes; None when it takes any."""
    signature = inspect.signature(function)
    names = {
        name
        for name, parameter in signature.parameters.items()
        if parameter.kind in (parameter.POSITIONAL_OR_KEYWORD, parameter.KEYWORD_ONLY)
    }
    variadic = [p for p in signature.parameters.values() if p.kind is p.VAR_KEYWORD]
    if not variadic:
        return names
    # The kit imports Unpack for type checkers only.
    found = re.fullmatch(r"Unpack\[(\w+)\]", str(variadic[0].annotation))
    if found is None:
        return None
    options = inspect.unwrap(function).__globals__[found.group(1)]
    return names | options.__required_keys__ | options.__optional_keys__


def test_the_readme_has_python_snippets() -> None:
    assert len(SNIPPETS) >= 20


@pytest.mark.parametrize(("line", "code"), SNIPPETS, ids=[f"line {line}" for line, _ in SNIPPETS])
def test_a_snippet_uses_the_kit_as_it_is(line: int, code: str) -> None:
    tree = ast.parse(code)
    imported = dict(kit_names(tree))
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        target: Any = None
        if isinstance(node.func, ast.Name):
            target = imported.get(node.func.id)
        elif isinstance(node.func, ast.Attribute) and isinstance(node.func.value, ast.Name):
            target = getattr(imported.get(node.func.value.id), node.func.attr, None)
        if not callable(target) or (accepted := keywords_of(target)) is None:
            continue
        unknown = {k.arg for k in node.keywords if k.arg} - accepted
        assert not unknown, f"{ast.unparse(node.func)}() takes no {', '.join(sorted(unknown))}"
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "INDOX_INTEGRATIONS" for t in node.targets
        ):
            assert isinstance(node.value, ast.Dict)
            keys = {k.value for k in node.value.keys if isinstance(k, ast.Constant)}
            assert keys <= set(DEFAULTS), f"unknown setting keys {sorted(keys - set(DEFAULTS))}"


@pytest.mark.parametrize(
    "readme", [README, ROOT / "static" / "README.md"], ids=["README", "static"]
)
def test_browser_snippets_use_what_the_js_helper_has(readme: Path) -> None:
    """Names imported from ``indox-stream.js`` are its exports; the callbacks and options
    handed to its functions are in its typings."""
    helper = (ROOT / "static" / "indox-stream.js").read_text(encoding="utf-8")
    typings = (ROOT / "static" / "indox-stream.d.ts").read_text(encoding="utf-8")
    exported = set(re.findall(r"^export (?:async )?function (\w+)", helper, re.M))
    used = [code for _, code in snippets(BROWSER_FENCE, readme) if "streamCompletion" in code]
    assert len(used) >= 3
    for code in used:
        for names in re.findall(r"import \{([^}]*)\} from \S*indox-stream\.js", code):
            assert {n.strip() for n in names.split(",")} <= exported, names
        for option in re.findall(r"\b(on[A-Z]\w*|resume|lastEventId|max\w+|retry\w*)\s*:", code):
            assert re.search(rf"\b{option}\??[:(]", typings), f"indox-stream.d.ts has no {option}"
