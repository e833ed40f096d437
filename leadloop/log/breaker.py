"""Whether to park an event that fails alone, or hold at it: parking is for the rare event at
fault. When it stops being rare (a deploy that breaks every event), parking would turn the
whole log into parked events, processed out of order after the fix; the processor holds at the
event instead and retries it in place until it processes (docs/decisions/0006-parked-events.md).

No I/O here: the processor counts the parks within the window from `parked_events` and keeps
this state (the parks in a row since an event was last processed).
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Limits:
    window: int = 1000
    """The stretch of the log, in events, before the failing one that `parks` counts in."""
    parks: int = 10
    """Events parked within `window` after which the next failing one is held."""
    in_a_row: int = 5
    """Events parked in a row (none processed between them) failing with one error class
    after which the next one failing with it is held."""


@dataclass
class Breaker:
    limits: Limits = field(default_factory=Limits)
    in_a_row: int = 0
    """Events parked since an event was last processed, all failing with `error`."""
    error: str | None = None

    def verdict(self, error: str, parked_in_window: int) -> str | None:
        """None: park the event failing with `error`; else why the processor holds at it.
        `parked_in_window`: the events parked within `limits.window` before it."""
        if parked_in_window >= self.limits.parks:
            return (
                f"{parked_in_window} events parked within the last {self.limits.window} of the log"
            )
        if self.in_a_row >= self.limits.in_a_row and error == self.error:
            return f"{self.in_a_row} events parked in a row failing with {error}"
        return None

    def parked(self, error: str) -> None:
        self.in_a_row = self.in_a_row + 1 if error == self.error else 1
        self.error = error

    def processed(self) -> None:
        self.in_a_row, self.error = 0, None
