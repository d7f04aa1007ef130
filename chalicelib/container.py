"""What a Lambda container keeps between invocations, in one place, so that one call forgets it all.

Contract: every per-container cache in ``chalicelib`` (clients, secrets, settings, claims,
counters, memos) registers here when its module is imported: ``cached(maxsize=None)`` is
``functools.lru_cache`` registered, and ``register(reset)`` adds any other cache's reset (a
function that empties it; usable as a decorator, it returns ``reset``). ``reset()`` empties
every registered cache, as a new container starts (the tests call it between tests);
``registered()`` names them (``module.qualname``). A cache whose module was never imported
is empty anyway. No module but this one uses ``functools.cache`` or ``lru_cache``
(tests/unit/test_container.py checks).

Standard library only, and nothing heavy: the HTTP function imports it, and its cold start is
what Slack's 3 seconds measure.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

_resets: dict[str, Callable[[], None]] = {}
_lock = threading.Lock()


def register(reset: Callable[[], None], name: str | None = None) -> Callable[[], None]:
    """Have ``reset()`` call ``reset``; ``name`` defaults to its ``module.qualname``."""
    key = name or f"{reset.__module__}.{reset.__qualname__}"
    with _lock:
        _resets[key] = reset
    return reset


def cached(maxsize: int | None = None) -> Callable[[Callable[..., T]], functools._lru_cache_wrapper[T]]:
    """``functools.lru_cache(maxsize)``, registered: ``reset()`` clears it."""

    def decorate(function: Callable[..., T]) -> functools._lru_cache_wrapper[T]:
        wrapper = functools.lru_cache(maxsize=maxsize)(function)
        register(wrapper.cache_clear, f"{function.__module__}.{function.__qualname__}")
        return wrapper

    return decorate


def registered() -> tuple[str, ...]:
    """The registered caches' names, in the order they registered."""
    with _lock:
        return tuple(_resets)


def reset() -> None:
    """Empty every registered cache, as a new container starts."""
    with _lock:
        resets = list(_resets.values())
    for reset_one in resets:
        reset_one()
