"""Time, injected.

This is the only module that reads wall time. Everything else receives a `Clock`
(the shell) or a `now` argument (the pure core), so "wait 48 hours" and "30 days of
inactivity" can be exercised in milliseconds with `ManualClock`.
"""

from __future__ import annotations

import threading
import time
from typing import Protocol


class Clock(Protocol):
    def now(self) -> float:
        """Seconds since the Unix epoch (UTC)."""
        ...


class SystemClock:
    def now(self) -> float:
        return time.time()


class ManualClock:
    """A clock that moves only when told to; starts at the current wall time by default."""

    def __init__(self, start: float | None = None) -> None:
        self._now = time.time() if start is None else start
        self._lock = threading.Lock()

    def now(self) -> float:
        with self._lock:
            return self._now

    def advance(self, seconds: float) -> float:
        if seconds < 0:
            raise ValueError("a clock cannot go backwards")
        with self._lock:
            self._now += seconds
            return self._now

    def set(self, when: float) -> None:
        with self._lock:
            if when < self._now:
                raise ValueError("a clock cannot go backwards")
            self._now = when


def monotonic() -> float:
    """Monotonic seconds, for measuring durations and timeouts (never for event times)."""
    return time.monotonic()
