"""Values shared by the channel modules: receipts coming back, and what a send ended as."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import msgspec

Channel = Literal["email", "whatsapp", "instagram", "sms", "audience"]
MESSAGE_CHANNELS: tuple[str, ...] = ("email", "whatsapp", "instagram", "sms")

ReceiptStatus = Literal["sent", "delivered", "read", "failed", "bounced", "complained"]


MAX_REASON_CHARS = 500
"""A receipt's reason is cut to this many characters."""


@dataclass(frozen=True, slots=True)
class Receipt:
    """A provider telling us what became of a message it accepted."""

    channel: str
    provider_id: str
    """The provider's id of the message (wamid, Instagram mid, Twilio SID), or for email the
    `Message-ID` we set, or our own message id when the provider echoes it."""
    status: ReceiptStatus
    at: float | None = None
    reason: str = ""
    recipient: str = ""
    permanent: bool = True
    """Bounces only: a soft (transient) bounce does not suppress the address."""
    reference: str = ""
    """Our own name of the message, echoed by the provider (`channels.model.reference`)."""

    def __post_init__(self) -> None:
        # The reason is the provider's free text (a Twilio `ErrorMessage`, a bounce's
        # diagnostic): it is stored with the message and shown by the API, so a signed but
        # careless or hostile delivery must not store a megabyte of it.
        if len(self.reason) > MAX_REASON_CHARS:
            object.__setattr__(self, "reason", self.reason[: MAX_REASON_CHARS - 1] + "…")


def reference(workspace: str, message_id: str) -> str:
    """What a send asks the provider to echo in its receipts (WhatsApp's
    `biz_opaque_callback_data`): a receipt may arrive before the provider's answer, and so
    before the provider's id is on record."""
    return msgspec.json.encode([workspace, message_id]).decode()


def referenced(text: str) -> tuple[str, str] | None:
    """(workspace, message id) of a `reference`; None for anything else."""
    try:
        pair = _reference.decode(text)
    except msgspec.DecodeError:
        return None
    return (pair[0], pair[1]) if len(pair) == 2 else None


_reference = msgspec.json.Decoder(list[str])


@dataclass(frozen=True, slots=True)
class Inbound:
    """A person wrote to us: it opens the 24-hour service window on WhatsApp and Instagram."""

    channel: str
    sender: str
    account: str
    """Our side: the WhatsApp phone-number id or the Instagram account id it was sent to."""
    at: float


@dataclass(frozen=True, slots=True)
class Sent:
    provider_id: str = ""
    note: str = ""


@dataclass(frozen=True, slots=True)
class Failed:
    """The provider refused the message for good (a documented 4xx): recorded, not retried."""

    reason: str


@dataclass(frozen=True, slots=True)
class TryLater:
    """Throttled or a server error: retried with backoff (`after` is the provider's wish)."""

    reason: str
    after: float | None = None


SendResult = Sent | Failed | TryLater
