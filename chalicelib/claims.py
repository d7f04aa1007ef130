"""Claims on jobs, so that a job delivered twice is worked on once.

Contract: ``store().claim(keys)`` is all-or-nothing. It returns True when none of ``keys`` is
held (and then holds them all for ``CLAIM_TTL_SECONDS``), and False when any of them is already
held and not expired (and then claims nothing). The keys of one job are its id and, for a
message, ``channel:ts``: Slack redelivers an event under the same ``event_id`` and has sent one
message under two, and either must find the claim.

``MemoryClaims`` holds the claims in this process (one Lambda container); the exactly-once
issue plugs a store shared across containers in behind the same ``ClaimStore`` protocol.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from typing import Protocol

# Slack's last retry of an event comes about 5 minutes after the first delivery, and a Lambda
# async invoke can sit a while in its queue: 15 minutes outlives both.
CLAIM_TTL_SECONDS = 900.0


class ClaimStore(Protocol):
    def claim(self, keys: Sequence[str]) -> bool:
        """True: all keys were free and are now claimed. False: some key is already claimed
        (not expired), and nothing was claimed."""
        ...


class MemoryClaims:
    """A thread-safe ``ClaimStore`` in this process's memory, each claim expiring ``ttl_seconds``
    after it was made (by ``clock``, which must not go backwards)."""

    def __init__(self, ttl_seconds: float = CLAIM_TTL_SECONDS, clock: Callable[[], float] = time.monotonic) -> None:
        if ttl_seconds <= 0:
            raise ValueError("ttl_seconds must be positive")
        self._ttl = ttl_seconds
        self._clock = clock
        self._lock = threading.Lock()
        # key -> expiry time. Every claim gets the same TTL from a clock that only moves on, so
        # insertion order is expiry order: the expired keys are always at the front, and
        # purging them costs only as much as there is to purge.
        self._expiries: dict[str, float] = {}

    def claim(self, keys: Sequence[str]) -> bool:
        with self._lock:
            now = self._clock()
            self._purge(now)
            if any(key in self._expiries for key in keys):  # after the purge, held means not expired
                return False
            expires_at = now + self._ttl
            for key in keys:
                self._expiries[key] = expires_at
            return True

    def __len__(self) -> int:
        """How many keys are held, counting expired ones not purged yet (for tests and logs)."""
        with self._lock:
            return len(self._expiries)

    def _purge(self, now: float) -> None:
        expiries = self._expiries
        while expiries:
            key = next(iter(expiries))
            if expiries[key] > now:
                break
            del expiries[key]


_store: ClaimStore | None = None
_store_lock = threading.Lock()


def store() -> ClaimStore:
    """The process-wide claim store: one per Lambda container, shared by its worker threads."""
    global _store
    with _store_lock:  # two local jobs starting at once must not each get a store of their own
        if _store is None:
            _store = MemoryClaims()
        return _store
