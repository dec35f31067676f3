"""A staticfiles finder for a source checkout of indox-integrations.

The wheel ships the browser helper in this app's ``static/indox_integrations/``,
where ``AppDirectoriesFinder`` finds it. A checkout keeps it in the
repository's ``static/`` instead; add this finder to serve and collect it
from there under the same names (with the wheel it finds nothing)::

    STATICFILES_FINDERS = [
        "django.contrib.staticfiles.finders.FileSystemFinder",
        "django.contrib.staticfiles.finders.AppDirectoriesFinder",
        "indox_integrations.django.finders.CheckoutFinder",
    ]
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from django.contrib.staticfiles.finders import BaseFinder, searched_locations
from django.contrib.staticfiles.utils import matches_patterns
from django.core.checks import CheckMessage
from django.core.files.storage import FileSystemStorage

from ..assets import STATIC_DIR

__all__ = ["CheckoutFinder"]

PREFIX = "indox_integrations"
FILES = ("indox-stream.js", "indox-stream.global.js", "indox-stream.d.ts")
PACKAGED = Path(__file__).parent / "static" / PREFIX


class CheckoutFinder(BaseFinder):
    """Finds ``indox_integrations/indox-stream.js`` (and its siblings) in a checkout."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.storage: FileSystemStorage | None = None
        if STATIC_DIR != PACKAGED:
            self.storage = FileSystemStorage(location=STATIC_DIR)
            self.storage.prefix = PREFIX  # type: ignore[attr-defined]  # read by collectstatic

    def check(self, **kwargs: Any) -> list[CheckMessage]:
        return []

    def find(self, path: str, find_all: bool = False, **kwargs: Any) -> Any:
        if self.storage is not None:
            if str(STATIC_DIR) not in searched_locations:
                searched_locations.append(str(STATIC_DIR))
            directory, _, name = path.replace("\\", "/").rpartition("/")
            if directory == PREFIX and name in FILES and self.storage.exists(name):
                match = self.storage.path(name)
                return [match] if find_all else match
        return []  # like Django's finders: a miss is an empty list either way

    def list(self, ignore_patterns: Iterable[str] | None) -> Iterator[tuple[str, Any]]:
        if self.storage is None:
            return
        for name in FILES:
            if self.storage.exists(name) and not matches_patterns(name, ignore_patterns or ()):
                yield name, self.storage
