"""Profiles, identities and accounts: the CDP's values."""

from __future__ import annotations

from typing import Any, Literal

import msgspec

PROFILE_UPDATE_EVENT = "Journey Profile Updated"
"""The internal event a journey's `update_profile` step emits. Its traits and tags are the
engine's own profile update: the processor applies them before any stage reads the event
(`decide.apply_engine_event`), so scoring fits them at that event, as a replay does."""

IdentityType = Literal["user_id", "anonymous_id", "email", "phone", "external_id"]
IDENTITY_TYPES: tuple[IdentityType, ...] = (
    "user_id",
    "anonymous_id",
    "email",
    "phone",
    "external_id",
)


class Identity(msgspec.Struct, frozen=True, order=True):
    type: IdentityType
    value: str
    """Normalised: emails trimmed and lowercased (a domain in its Unicode form), phones in E.164,
    external ids as `<kind>:<id>`."""


class Profile(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    workspace_id: str
    traits: dict[str, Any] = msgspec.field(default_factory=dict)
    trait_times: dict[str, float] = msgspec.field(default_factory=dict)
    """When each trait was last set (event time): on a merge the later event wins per trait."""
    first_seen: float
    last_seen: float
    last_activity: float
    """Event time of the last event the person caused (not internal ones); scoring decays from it."""
    event_counts: dict[str, int] = msgspec.field(default_factory=dict)
    """Counts keyed `type` and `type:name` (e.g. `page`, `track:Order Completed`)."""
    account_ids: tuple[str, ...] = ()
    version: int = 0


class Account(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    """The `groupId` as sent by the client."""
    workspace_id: str
    traits: dict[str, Any] = msgspec.field(default_factory=dict)
    first_seen: float
    last_seen: float
