"""Record every warning a server process raises, for ``GET /_tracker``.

Django warns when handed the wrong kind of iterator for its handler, and then
buffers the whole stream; the servers import this so the tests can see it.
"""

from __future__ import annotations

import threading
import warnings
from typing import Any

WARNINGS: list[str] = []
_lock = threading.Lock()
_show = warnings.showwarning


def _record(message: Any, category: Any, *args: Any, **kwargs: Any) -> None:
    with _lock:
        WARNINGS.append(f"{category.__name__}: {message}")
    _show(message, category, *args, **kwargs)


def install() -> None:
    warnings.simplefilter("always")
    warnings.showwarning = _record


def take() -> list[str]:
    with _lock:
        return list(WARNINGS)


def clear() -> None:
    with _lock:
        WARNINGS.clear()
