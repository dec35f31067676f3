"""The ``INDOX_INTEGRATIONS`` setting: read once, re-read when a test overrides it."""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.utils.module_loading import import_string

from ..overload import Overload
from ..requests import Limits
from ..resumable import Resumable, configure
from ..stream import sse_stream

__all__ = [
    "DEFAULTS",
    "SETTING",
    "client",
    "context",
    "limits",
    "options",
    "overload",
    "reload",
    "resumable",
    "stream_options",
]

SETTING = "INDOX_INTEGRATIONS"

_LIMITS = Limits()

DEFAULTS: dict[str, Any] = {
    "CLIENT": None,
    "USAGE": "skip",
    "HEARTBEAT": 15.0,
    "IDLE_TIMEOUT": 300.0,
    "EXPOSE_ERRORS": False,
    "ON_USAGE": None,
    "ON_COMPLETE": None,
    "MAX_BODY_BYTES": _LIMITS.max_body_bytes,
    "MAX_TOKENS": _LIMITS.max_tokens,
    "MAX_MESSAGES": _LIMITS.max_messages,
    "MODELS": None,
    "DEFAULT_MODEL": None,
    "PROTOCOL": "indox",
    "API_KEYS": None,
    "MAX_STREAMS": None,
    "MAX_STREAMS_PER_KEY": None,
    "LIMIT_KEY": None,
    "CONTEXT": None,
    "RESUMABLE": False,
    "STORE": None,
    "DETACH_TIMEOUT": 30.0,
    "OWNER": None,
}
"""Every key of ``settings.INDOX_INTEGRATIONS`` and its default."""

STREAM_OPTIONS = (
    "usage",
    "on_usage",
    "on_complete",
    "heartbeat",
    "idle_timeout",
    "expose_errors",
    "protocol",
)

_lock = threading.Lock()
_options: dict[str, Any] | None = None
_client: list[Any] = []


def options() -> dict[str, Any]:
    """The setting's values under lower-case names, defaults filled in."""
    global _options
    if _options is None:
        raw = getattr(settings, SETTING, {})
        if not isinstance(raw, Mapping):
            raise ImproperlyConfigured(f"{SETTING} must be a dict, got {type(raw).__name__}")
        unknown = sorted(set(raw) - set(DEFAULTS))
        if unknown:
            raise ImproperlyConfigured(
                f"{SETTING} has unknown keys {', '.join(unknown)}; "
                f"expected some of {', '.join(DEFAULTS)}"
            )
        values = {key.lower(): raw.get(key, default) for key, default in DEFAULTS.items()}
        stream_options(values, where=SETTING)
        overload(values, where=SETTING)
        context(values, where=SETTING)
        resumable(values, where=SETTING)
        _options = values
    return _options


def stream_options(values: Mapping[str, Any], where: str) -> dict[str, Any]:
    """The pipeline options out of ``values``, callbacks imported, all checked."""
    result = {name: values[name] for name in STREAM_OPTIONS}
    for name in ("on_usage", "on_complete"):
        result[name] = _callable(result[name], _label(where, name))
    try:
        sse_stream([], **result)  # never started: only checks the options
    except ValueError as exc:
        raise ImproperlyConfigured(f"{where}: {exc}") from None
    return result


def overload(values: Mapping[str, Any], where: str) -> Overload:
    """The stream limits: ``MAX_STREAMS``, ``MAX_STREAMS_PER_KEY`` and ``LIMIT_KEY``."""
    limit_key = _callable(values["limit_key"], _label(where, "limit_key"))
    try:
        return Overload(values["max_streams"], values["max_streams_per_key"], limit_key)
    except (TypeError, ValueError) as exc:
        raise ImproperlyConfigured(f"{where}: {exc}") from None


def context(values: Mapping[str, Any], where: str) -> Callable[..., Any] | None:
    """``CONTEXT``: a function of the ``HttpRequest`` whose value is the stream's context."""
    return _callable(values["context"], _label(where, "context"))


def resumable(values: Mapping[str, Any], where: str) -> Resumable | None:
    """``RESUMABLE`` with ``STORE`` (a store, or a dotted path to one or to a function
    making it), ``DETACH_TIMEOUT`` and ``OWNER`` (a function of the ``HttpRequest``)."""
    if not values["resumable"]:
        return None
    given = {
        "resumable": True,
        "store": _store(values["store"], _label(where, "store")),
        "detach_timeout": values["detach_timeout"],
        "owner": _callable(values["owner"], _label(where, "owner")),
    }
    try:
        return configure(given)
    except (TypeError, ValueError) as exc:
        raise ImproperlyConfigured(f"{where}: {exc}") from None


_stores: dict[Any, Any] = {}


def _store(value: Any, where: str) -> Any:
    """The store object: a dotted path is imported, a factory called, once each."""
    if value is None or hasattr(value, "aread"):
        return value
    with _lock:
        if value not in _stores:
            made = _import_object(value, where) if isinstance(value, str) else value
            if not hasattr(made, "aread") and callable(made):
                made = made()
            if not hasattr(made, "aread"):
                raise ImproperlyConfigured(
                    f"{where} must be a store (MemoryStore, RedisStore), a dotted path to one or "
                    f"to a function returning one, got {type(made).__name__}"
                )
            _stores[value] = made
        return _stores[value]


def _import_object(value: str, where: str) -> Any:
    try:
        return import_string(value)
    except ImportError as exc:
        raise ImproperlyConfigured(f"{where}: cannot import {value!r}: {exc}") from exc


def _label(where: str, name: str) -> str:
    return f"{where}[{name.upper()!r}]" if where == SETTING else f"{where}({name}=...)"


def limits(values: Mapping[str, Any]) -> Limits:
    """The request limits out of ``values``."""
    models = values["models"]
    return Limits(
        max_body_bytes=values["max_body_bytes"],
        max_tokens=values["max_tokens"],
        max_messages=values["max_messages"],
        models=None if models is None else tuple(models),
        default_model=values["default_model"],
    )


def client() -> Any:
    """The client that ``CLIENT``'s factory returns, built once."""
    with _lock:
        if not _client:
            factory = options()["client"]
            if factory is None:
                raise ImproperlyConfigured(
                    f"{SETTING}['CLIENT'] is not set: point it at a function returning your "
                    f"LLM client, e.g. {SETTING} = {{'CLIENT': 'myproject.llm.get_client'}}, "
                    "or pass client= to CompletionView.as_view()"
                )
            _client.append(_import(factory, f"{SETTING}['CLIENT']")())
        return _client[0]


def reload(*, setting: str, **kwargs: Any) -> None:
    """``setting_changed`` receiver: forget the cached setting and client."""
    global _options
    if setting == SETTING:
        with _lock:
            _options = None
            _client.clear()


def _callable(value: Any, where: str) -> Callable[..., Any] | None:
    return None if value is None else _import(value, where)


def _import(value: Any, where: str) -> Callable[..., Any]:
    if callable(value):
        return value  # type: ignore[no-any-return]
    if not isinstance(value, str):
        raise ImproperlyConfigured(
            f"{where} must be a dotted path or a callable, got {type(value).__name__}"
        )
    try:
        imported = import_string(value)
    except ImportError as exc:
        raise ImproperlyConfigured(f"{where}: cannot import {value!r}: {exc}") from exc
    if not callable(imported):
        raise ImproperlyConfigured(
            f"{where} must name a callable, {value!r} is a {type(imported).__name__}"
        )
    return imported  # type: ignore[no-any-return]
