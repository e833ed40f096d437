"""The outbox's pure decisions: what an HTTP answer means, and when to try again.

A retry is scheduled, never slept: the item goes back to `pending` with a `next_attempt_at`, and
a dispatcher claims it when due. Jitter is derived from the item's idempotency key and attempt
number, not drawn from a random generator, so a replay of the same history schedules the same
retries, and two items that failed together still spread out.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import assert_never

import msgspec

from leadloop.outbox.model import OutboxItem, OutboxStatus, RetryPolicy
from leadloop.outbox.retry_after import parse_retry_after, retry_after_header

__all__ = [
    "Dead",
    "Delivered",
    "Outcome",
    "Retry",
    "backoff_delay",
    "classify_http",
    "next_attempt",
    "parse_retry_after",
    "record_attempt",
]


@dataclass(frozen=True, slots=True)
class Delivered:
    pass


@dataclass(frozen=True, slots=True)
class Retry:
    reason: str
    after: float | None = None
    """Seconds the receiver asked us to wait (Retry-After), if it did."""
    client_error: bool = False
    """A 4xx unlikely to heal by itself: retried only `policy.client_error_attempts` times."""


@dataclass(frozen=True, slots=True)
class Dead:
    reason: str
    disable_endpoint: bool = False
    """410 Gone: the receiver asks us to stop sending to this endpoint at all."""


Outcome = Delivered | Retry | Dead


# --- HTTP answers -------------------------------------------------------------------------

# Statuses that say "not now" rather than "no": timeouts, conflicts, too early, throttling.
_TRANSIENT_4XX = frozenset({408, 409, 425, 429})


def classify_http(status: int, headers: Mapping[str, str], now: float) -> Outcome:
    """What a receiver's answer means, per the Standard Webhooks delivery guidance.

    * 2xx: delivered.
    * 3xx: a failure, never followed (a redirect could point the signed payload anywhere); it is
      retried because a moved endpoint is usually fixed by its owner.
    * 410 Gone: dead at once, and the endpoint should be disabled.
    * 408/409/425/429 and 5xx: retried, honouring Retry-After.
    * Any other 4xx (400, 401, 403, 404, 413, 422...): retried, but only
      `policy.client_error_attempts` times. These are usually permanent (a payload the receiver
      rejects stays rejected), but in practice they also come from a receiver mid-deploy (404)
      or mid secret rotation (401): a few spaced attempts recover those without hammering an
      endpoint that means it, and the item then dead-letters for a human to re-drive.

    `now` is needed because Retry-After may be an HTTP-date.
    """
    if 200 <= status <= 299:
        return Delivered()
    reason = f"HTTP {status}"
    if status == 410:
        return Dead(f"{reason}: the receiver asked to stop (410 Gone)", disable_endpoint=True)
    retry_after = retry_after_header(headers, now)
    if 300 <= status <= 399:
        return Retry(f"{reason}: redirects are not followed", retry_after)
    if 400 <= status <= 499 and status not in _TRANSIENT_4XX:
        return Retry(reason, retry_after, client_error=True)
    # 5xx, transient 4xx, and anything outside the valid range (a broken server is transient).
    return Retry(reason, retry_after)


# --- backoff ------------------------------------------------------------------------------


def _unit_fraction(key: str, attempts: int) -> float:
    """A number in [0, 1) fixed by (key, attempts): the jitter's "random" draw."""
    digest = hashlib.sha256(f"{attempts}\x00{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def backoff_delay(attempts: int, key: str, policy: RetryPolicy) -> float:
    """The wait after the `attempts`-th failed attempt, jitter included (never negative)."""
    exponent = min(attempts - 1, 64)  # beyond this the cap applies anyway; avoids overflow
    raw = min(policy.base_delay * policy.multiplier**exponent, policy.max_delay)
    return raw * (1.0 - policy.jitter * _unit_fraction(key, attempts))


def next_attempt(
    attempts: int, now: float, retry_after: float | None, key: str, policy: RetryPolicy
) -> float | None:
    """When to try again after `attempts` failed attempts, or None: the budget is spent, dead
    letter. Never earlier than `now`; never earlier than the receiver's Retry-After (capped at
    `policy.max_retry_after`) nor than our own backoff, whichever is later."""
    if attempts < 1:
        raise ValueError("next_attempt is asked after at least one attempt")
    if attempts >= policy.max_attempts:
        return None
    delay = backoff_delay(attempts, key, policy)
    if retry_after is not None and retry_after > 0:
        delay = max(delay, min(retry_after, policy.max_retry_after))
    return now + delay


def record_attempt(
    item: OutboxItem, outcome: Outcome, now: float, policy: RetryPolicy
) -> OutboxItem:
    """The item after one more attempt ended with `outcome`."""
    attempts = item.attempts + 1
    if isinstance(outcome, Delivered):
        return msgspec.structs.replace(
            item,
            attempts=attempts,
            status=OutboxStatus.DELIVERED,
            next_attempt_at=None,
            last_error=None,
        )
    if isinstance(outcome, Dead):
        return msgspec.structs.replace(
            item,
            attempts=attempts,
            status=OutboxStatus.DEAD,
            next_attempt_at=None,
            last_error=outcome.reason,
        )
    if isinstance(outcome, Retry):
        effective = policy
        if outcome.client_error:
            limit = min(policy.max_attempts, policy.client_error_attempts)
            effective = msgspec.structs.replace(policy, max_attempts=limit)
        when = next_attempt(attempts, now, outcome.after, item.idempotency_key, effective)
        if when is None:
            return msgspec.structs.replace(
                item,
                attempts=attempts,
                status=OutboxStatus.DEAD,
                next_attempt_at=None,
                last_error=f"{outcome.reason}; gave up after {attempts} attempts",
            )
        return msgspec.structs.replace(
            item, attempts=attempts, next_attempt_at=when, last_error=outcome.reason
        )
    assert_never(outcome)
