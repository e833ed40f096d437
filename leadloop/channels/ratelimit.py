"""Provider rate limits: a token bucket per (workspace, channel, sender), applied before a send.

Providers cap throughput per sender: the WhatsApp Cloud API per business phone number, Twilio
per `From` number, Instagram per professional account (defaults and sources in
`channels.settings`). Going over gets 429s or, worse for WhatsApp, a quality downgrade; so the
sender takes a token before each request and never sleeps for one: a send without a token goes
back to the outbox as `pending`, due when its token frees.

`TokenBucket` is the pure rule (time is passed in). It *reserves*: a send that finds no token
takes a future one and learns when it frees, so that N throttled sends are spread over the next
N/rate seconds instead of all retrying at the same instant (and all but one being throttled
again). `Limiter` keeps the buckets and the reservations, so a re-claimed row whose slot has
come sends without taking a second token.

Buckets live in the process: with several workers each one holds the full rate. Set
`rate_limit` to the provider's limit divided by the number of workers when that matters.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

MAX_RESERVATIONS = 100_000
"""Reservations kept per limiter; the oldest are forgotten first (their rows then take a new
token when they come back, which only delays them)."""


@dataclass
class TokenBucket:
    """`rate` tokens a second, at most `burst` saved up; starts full."""

    rate: float
    burst: float
    tokens: float = field(default=-1.0)
    updated: float = field(default=0.0)

    def __post_init__(self) -> None:
        if self.rate <= 0 or self.burst < 1:
            raise ValueError("a token bucket needs rate > 0 and burst >= 1")
        if self.tokens < 0:
            self.tokens = self.burst

    def _refill(self, now: float) -> None:
        if now > self.updated:
            self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate)
            self.updated = now

    def take(self, now: float, count: float = 1.0) -> float:
        """Take `count` tokens; returns when they are available: `now` when they were (send
        now), else the later moment the last of them frees (send then; they are reserved)."""
        self._refill(now)
        self.tokens -= count
        if self.tokens >= 0:
            return now
        # Measured from the bucket's clock: a caller whose clock lags does not jump the queue.
        return max(now, self.updated) + (-self.tokens) / self.rate

    def available(self, now: float) -> float:
        """Tokens that could be taken at `now` (negative: reserved ahead)."""
        self._refill(now)
        return self.tokens


def bucket_for(rate: float) -> TokenBucket | None:
    """A bucket holding one second's worth of tokens (at least one); None for no limit."""
    if rate <= 0:
        return None
    return TokenBucket(rate, max(1.0, rate))


class Limiter:
    """The buckets of one sender, and which messages already hold a reserved slot."""

    def __init__(self) -> None:
        self._buckets: dict[tuple[str, str, str], tuple[float, TokenBucket]] = {}
        self._reserved: dict[str, float] = {}
        self._lock = threading.Lock()

    def acquire(
        self, key: tuple[str, str, str], rate: float, message: str, now: float, count: int = 1
    ) -> float | None:
        """None: send now. Else the moment this message's reserved slot comes; the caller
        answers `pending` with it. `key` is (workspace, channel, sender)."""
        if rate <= 0:
            return None
        with self._lock:
            slot = self._reserved.pop(message, None)
            if slot is not None:
                if slot <= now:
                    return None
                self._reserved[message] = slot  # claimed early: keep the slot
                return slot
            found = self._buckets.get(key)
            if found is None or found[0] != rate:  # new, or the playbook changed the rate
                bucket = bucket_for(rate)
                assert bucket is not None
                self._buckets[key] = (rate, bucket)
            else:
                bucket = found[1]
            due = bucket.take(now, float(count))
            if due <= now:
                return None
            if len(self._reserved) >= MAX_RESERVATIONS:
                self._reserved.pop(next(iter(self._reserved)))
            self._reserved[message] = due
            return due
