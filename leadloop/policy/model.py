"""Contact-pressure policy values: the configuration, what one send asks for, and the verdict.

One policy applies to every send a journey makes. It decides, in this order: which channel (the
asked channel, then its fallbacks) can carry the message at all (enabled, an address, consent,
not suppressed), whether a frequency cap leaves room on it, and whether the profile's local time
is inside quiet hours. Quiet hours and caps *defer* a send to the next allowed moment; only a
message no channel could ever carry is suppressed. Transactional messages skip caps, quiet hours
and marketing unsubscribes, but never a bounce or a complaint.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, get_args

import msgspec

Channel = Literal["email", "whatsapp", "instagram", "sms"]
CHANNELS: tuple[Channel, ...] = get_args(Channel)

ADDRESS_TRAITS: dict[str, tuple[str, ...]] = {
    "email": ("email",),
    "whatsapp": ("phone",),
    "sms": ("phone",),
    "instagram": ("instagram_id", "instagram_psid"),
}
"""A channel can reach a profile only when one of these traits is present."""

DEFAULT_CONSENT: dict[str, tuple[str, ...]] = {
    "whatsapp": ("whatsapp_opt_in", "whatsapp_consent"),
}
"""Channels that need an explicit opt-in: one of these traits must be true."""

UNSUBSCRIBE_TRAITS: dict[str, tuple[str, ...]] = {
    "*": ("unsubscribed",),
    "email": ("email_unsubscribed",),
    "sms": ("sms_unsubscribed",),
    "whatsapp": ("whatsapp_unsubscribed",),
    "instagram": ("instagram_unsubscribed",),
}
"""Marketing opt-outs (transactional messages still go)."""

HARD_TRAITS: dict[str, tuple[str, ...]] = {
    "email": ("email_bounced", "email_complained", "bounced", "complained"),
}
"""Deliverability suppressions: nothing goes, transactional or not."""

HARD_REASONS = frozenset({"bounced", "complained"})
"""Suppression-list reasons that stop transactional messages too."""


@dataclass(frozen=True, slots=True)
class Cap:
    max: int
    per: float
    """Rolling window in seconds."""
    channels: tuple[str, ...] = ()
    """Empty: counts sends on every channel (a cross-channel cap)."""


@dataclass(frozen=True, slots=True)
class QuietHours:
    start: int
    """Minutes after local midnight when quiet begins."""
    end: int
    """Minutes after local midnight when sending may resume (may be before `start`)."""
    channels: tuple[str, ...] = ()
    """Empty: every channel."""


@dataclass(frozen=True, slots=True)
class PolicyConfig:
    caps: tuple[Cap, ...] = ()
    quiet_hours: QuietHours | None = None
    default_timezone: str = "UTC"
    fallback: dict[str, tuple[str, ...]] = field(default_factory=dict)
    """Channel → the channels to try next, in order, when it cannot carry a send."""
    channels: tuple[str, ...] = CHANNELS
    """Channels switched on; a send asked on another is rerouted or suppressed."""
    consent: dict[str, tuple[str, ...]] = field(default_factory=lambda: dict(DEFAULT_CONSENT))


# --- inputs ------------------------------------------------------------------------------------


class SendRequest(msgspec.Struct, frozen=True):
    channels: tuple[str, ...]
    """Asked channel first, then the step's own alternatives; the policy adds its fallbacks."""
    transactional: bool = False


class SentRecord(msgspec.Struct, frozen=True):
    """A send already queued for this profile (it counts against the caps)."""

    at: float
    channel: str
    transactional: bool = False


class Suppression(msgspec.Struct, frozen=True):
    channel: str
    """A channel or `*`."""
    reason: str


class Recipient(msgspec.Struct, frozen=True):
    traits: dict[str, object]
    suppressions: tuple[Suppression, ...] = ()
    sent: tuple[SentRecord, ...] = ()
    channel_enabled: frozenset[str] | None = None
    """Channels the running engine can deliver on (None: trust the configuration)."""


# --- decisions ---------------------------------------------------------------------------------


class Send(msgspec.Struct, frozen=True):
    channel: str
    notes: tuple[str, ...] = ()
    """Why earlier channels were passed over: a non-empty tuple means the send was rerouted."""

    @property
    def rerouted(self) -> bool:
        return bool(self.notes)


class Defer(msgspec.Struct, frozen=True):
    until: float
    reason: str
    channel: str | None
    """The channel that will be tried first when the deferral ends, if one is known."""
    notes: tuple[str, ...] = ()


class Suppress(msgspec.Struct, frozen=True):
    reason: str
    notes: tuple[str, ...] = ()


Verdict = Send | Defer | Suppress
