"""Where the browser helper lives: inside the wheel, or the repository's ``static/``."""

from __future__ import annotations

from pathlib import Path

__all__ = ["HEADERS", "STATIC_DIR", "static_file"]

_PACKAGED = Path(__file__).parent / "django" / "static" / "indox_integrations"
_CHECKOUT = Path(__file__).parent.parent / "static"

STATIC_DIR = _PACKAGED if _PACKAGED.is_dir() else _CHECKOUT
"""Folder holding ``indox-stream.js``, ``indox-stream.global.js`` and ``indox-stream.d.ts``."""

HEADERS = {
    "Content-Type": "text/event-stream; charset=utf-8",
    "Cache-Control": "no-cache",
    "X-Accel-Buffering": "no",
}
"""Response headers for every stream: no caching, no proxy buffering."""


def static_file(name: str = "indox-stream.js") -> Path:
    """Path of a shipped browser file."""
    path = STATIC_DIR / name
    if not path.is_file():
        raise FileNotFoundError(f"{name} is not shipped with indox_integrations ({STATIC_DIR})")
    return path
