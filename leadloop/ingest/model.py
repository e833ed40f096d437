"""Values the ingestion API produces: accepted messages ready for the log, or a rejection."""

from __future__ import annotations

import msgspec

MAX_MESSAGE_BYTES = 32 * 1024
MAX_REQUEST_BYTES = 500 * 1024
MAX_DEPTH = 32
"""Objects and arrays nested in one message, the message itself being the first level."""


class Accepted(msgspec.Struct, frozen=True):
    """One message, validated and normalised, as it will be appended to the log."""

    message_id: str
    type: str
    event: str | None
    user_id: str | None
    anonymous_id: str | None
    group_id: str | None
    previous_id: str | None
    timestamp: float
    received_at: float
    body: bytes
    """The message re-encoded as JSON (nulls kept as sent)."""


class Rejected(msgspec.Struct, frozen=True):
    """A request answered 400 with `{"code", "message"}`; nothing of it is stored."""

    code: str
    message: str
    status: int = 400


class Delivery(msgspec.Struct, frozen=True):
    """A verified webhook delivery: messages to append, how many notifications were
    acknowledged but ignored, and the anonymous ids whose person the sender deleted (a HubSpot
    privacy deletion), to erase once the messages are stored."""

    messages: list[Accepted]
    ignored: int = 0
    erase: tuple[str, ...] = ()

    @property
    def accepted(self) -> int:
        """Notifications acted on: each stored message and each erasure."""
        return len(self.messages) + len(self.erase)
