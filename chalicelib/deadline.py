"""A point in time that work must finish by, on the monotonic clock.

Contract: ``Deadline.in_seconds(s).remaining()`` counts down from ``s`` and never goes
below zero; ``shortened(by)`` gives an earlier deadline, e.g. to keep time for a reply.
"""

from __future__ import annotations

import time
from dataclasses import dataclass


@dataclass(frozen=True)
class Deadline:
    expires_at: float  # time.monotonic() value

    @classmethod
    def in_seconds(cls, seconds: float) -> Deadline:
        return cls(time.monotonic() + max(0.0, seconds))

    def remaining(self) -> float:
        return max(0.0, self.expires_at - time.monotonic())

    def shortened(self, by: float) -> Deadline:
        return Deadline(self.expires_at - by)

    def capped(self, seconds: float) -> Deadline:
        """The earlier of this deadline and ``seconds`` from now."""
        return Deadline(min(self.expires_at, time.monotonic() + seconds))
