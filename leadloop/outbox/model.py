"""The outbox's values: a durable effect waiting to leave, and how hard to try.

An item moves `pending -> delivered`, or `pending -> dead` (a dead letter, kept for inspection
and re-drive) when the receiver refuses for good or the attempt budget is spent. `attempts` counts
sends already made; `next_attempt_at` is when a pending item is due (None once it is final).
"""

from __future__ import annotations

from enum import StrEnum

import msgspec

from leadloop.outbox.retry_after import MAX_RETRY_AFTER


class OutboxStatus(StrEnum):
    PENDING = "pending"
    DELIVERED = "delivered"
    DEAD = "dead"


class OutboxItem(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    kind: str
    """What sends it: "webhook", "email", "sms", "conversion.meta", ..."""
    destination: str
    """Where, in the kind's terms: a webhook endpoint name, an address, a pixel id."""
    idempotency_key: str
    """The same on every attempt (webhook-id, Meta event_id), so receivers drop re-deliveries."""
    payload: bytes
    attempts: int = 0
    next_attempt_at: float | None = None
    status: OutboxStatus = OutboxStatus.PENDING
    last_error: str | None = None


class RetryPolicy(msgspec.Struct, frozen=True, kw_only=True):
    """Exponential backoff: attempt n waits about `base_delay * multiplier**(n-1)` seconds, up to
    `max_delay`, minus up to `jitter` of it so that receivers recovering from an outage are not
    hit by every queued item at the same second.

    The defaults spread 12 attempts over about two and a half days, in the spirit of the
    Standard Webhooks guidance (retries over days, with jitter).
    """

    max_attempts: int = 12
    base_delay: float = 5.0
    multiplier: float = 4.0
    max_delay: float = 10 * 3600.0
    jitter: float = 0.5
    """Fraction in [0, 1): the delay lies in [(1 - jitter) * d, d]."""
    max_retry_after: float = MAX_RETRY_AFTER
    """A receiver's Retry-After is honoured up to this; a larger one would park items for good."""
    client_error_attempts: int = 3
    """Attempt budget for 4xx answers other than 408/409/425/429/410 (see `decide.classify_http`)."""

    def __post_init__(self) -> None:
        if self.max_attempts < 1 or self.client_error_attempts < 1:
            raise ValueError("a retry policy allows at least one attempt")
        if self.base_delay <= 0 or self.max_delay < self.base_delay:
            raise ValueError("delays must be positive and max_delay >= base_delay")
        if not 0.0 <= self.jitter < 1.0:
            raise ValueError("jitter is a fraction in [0, 1)")
        # Keeps the schedule monotone: the shortest jittered wait for attempt n+1 is never
        # below the longest for attempt n (until the cap).
        if self.multiplier * (1.0 - self.jitter) < 1.0:
            raise ValueError("multiplier * (1 - jitter) must be at least 1")
        if self.max_retry_after < 0:
            raise ValueError("max_retry_after must not be negative")
