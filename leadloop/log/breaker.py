"""Whether to park an event that fails alone, or hold at it: parking is for the rare event at
fault. When it stops being rare (a deploy that breaks every event), parking would turn the
whole log into parked events, processed out of order after the fix; the processor holds at the
event instead and retries it in place until it processes (docs/decisions/0006-parked-events.md).

A deploy bug fails many senders' events alike; one client repeating a poison payload fails
only its own. So the rules count senders, not events: one sender's repeats count once, and
are held only past a cap of their own (`Limits.per_sender`). A sender is what the event row
says without resolving identity (`sender`): two ids of one person count as two senders, which
errs towards holding, as before.

No I/O here: the processor reads the senders of the parks within the window (from
`parked_events` and the log) and keeps this state (the parks in a row since an event was last
processed).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

from leadloop.log.model import Event


@dataclass(frozen=True)
class Limits:
    window: int = 1000
    """The stretch of the log, in events, before the failing one that `parks` and
    `per_sender` count in."""
    parks: int = 10
    """Senders with events parked within `window` after which the next failing event is
    held."""
    in_a_row: int = 5
    """Senders with events parked in a row (none processed between them), all failing with one
    error class, after which the next event failing with it is held."""
    per_sender: int = 100
    """Events of one sender parked within `window` after which its next failing one is
    held."""


Sender = tuple[str, str, str]
"""(workspace, what names the sender: `user`, `anonymous`, `profile` or `seq`, its value)."""


def sender(
    workspace_id: str,
    kind: str | None,
    user_id: str | None,
    anonymous_id: str | None,
    profile_id: str | None,
    seq: int,
) -> Sender:
    """Who sent an event of type `kind`, as its log row says: its `userId`, else its
    `anonymousId` (every message has one or the other); the engine's own events, the profile
    they name. A row with none (or gone from the log: `kind` None) is a sender of its own."""
    if kind == "internal":
        if profile_id:
            return (workspace_id, "profile", profile_id)
    elif user_id:
        return (workspace_id, "user", user_id)
    elif anonymous_id:
        return (workspace_id, "anonymous", anonymous_id)
    return (workspace_id, "seq", str(seq))


def sender_of(event: Event) -> Sender:
    return sender(
        event.workspace_id,
        event.type,
        event.user_id,
        event.anonymous_id,
        event.profile_id,
        event.seq,
    )


@dataclass
class Breaker:
    limits: Limits = field(default_factory=Limits)
    in_a_row: int = 0
    """Events parked since an event was last processed, all failing with `error`."""
    senders: set[Sender] = field(default_factory=set)
    """Their senders."""
    error: str | None = None

    def verdict(self, error: str, sender: Sender, window: Iterable[Sender]) -> str | None:
        """None: park the event of `sender` failing with `error`; else why the processor holds
        at it. `window`: the sender of each event parked within `limits.window` before it."""
        parked = Counter(window)
        span = self.limits.window
        if len(parked) >= self.limits.parks:
            return f"events of {len(parked)} senders parked within the last {span} of the log"
        if parked[sender] >= self.limits.per_sender:
            return f"{parked[sender]} events of its sender parked within the last {span} of the log"
        if len(self.senders) >= self.limits.in_a_row and error == self.error:
            return f"events of {len(self.senders)} senders parked in a row failing with {error}"
        return None

    def parked(self, error: str, sender: Sender) -> None:
        if error != self.error:
            self.in_a_row, self.senders, self.error = 0, set(), error
        self.in_a_row += 1
        self.senders.add(sender)

    def processed(self) -> None:
        self.in_a_row, self.senders, self.error = 0, set(), None
