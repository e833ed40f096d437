"""The event as the processor sees it: one accepted message, in log order."""

from __future__ import annotations

from typing import Any

import msgspec

# Message types of the Segment spec, plus `internal` for events the engine emits
# itself (a timer firing, `Lead Qualified`, an email open coming back).
MESSAGE_TYPES = ("identify", "track", "page", "screen", "group", "alias")
EVENT_TYPES = (*MESSAGE_TYPES, "internal")


class Event(msgspec.Struct, frozen=True, kw_only=True):
    seq: int
    workspace_id: str
    message_id: str
    type: str
    event: str | None = None
    """`track` event name, `page`/`screen` name, or the internal event's name."""
    user_id: str | None = None
    anonymous_id: str | None = None
    group_id: str | None = None
    previous_id: str | None = None
    timestamp: float
    """Seconds since the epoch, clock-skew corrected (Segment's `receivedAt - (sentAt - timestamp)`,
    `originalTimestamp` standing in for a missing `timestamp`)."""
    received_at: float
    body: dict[str, Any] = msgspec.field(default_factory=dict)
    """The whole message as received (after null-stripping of optional ids)."""
    profile_id: str | None = None
    """The profile the log row is attributed to, when read from the log: set by the processor,
    or at insert time for the engine's own events (which name their profile)."""

    @property
    def properties(self) -> dict[str, Any]:
        value = self.body.get("properties")
        return value if isinstance(value, dict) else {}

    @property
    def traits(self) -> dict[str, Any]:
        """Top-level `traits`, else `context.traits` (rudder-sdk-python sends only the latter).

        An empty top-level object counts as missing: Segment's Python client always sends
        `"traits": {}`, also when the caller gave the traits in `context` alone."""
        value = self.body.get("traits")
        if isinstance(value, dict) and value:
            return value
        context = self.context
        nested = context.get("traits")
        return nested if isinstance(nested, dict) else {}

    @property
    def account_traits(self) -> dict[str, Any]:
        """A group call's traits: the top-level `traits` only, never `context.traits`, which
        describe the person (rudder-sdk-js sends them with every call)."""
        value = self.body.get("traits")
        return value if isinstance(value, dict) else {}

    @property
    def context(self) -> dict[str, Any]:
        value = self.body.get("context")
        return value if isinstance(value, dict) else {}
