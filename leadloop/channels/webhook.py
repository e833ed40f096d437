"""Outgoing webhooks, signed per Standard Webhooks (`webhook-id`, `webhook-timestamp`,
`webhook-signature`). The `webhook-id` is the outbox row's idempotency key, the same on
every attempt, so a receiver can drop a re-delivery after a crash or a lost answer."""

from __future__ import annotations

import email.utils
from collections.abc import Callable
from typing import Any

import httpx2
import msgspec

from leadloop.clock import SystemClock
from leadloop.outbox.service import Claimed, Outcome

_encoder = msgspec.json.Encoder()
MAX_ATTEMPTS = 8
BASE_DELAY = 2.0
MAX_DELAY = 3600.0


def retry_after_seconds(value: str | None, now: float) -> float | None:
    """`Retry-After` as delta-seconds or an HTTP date."""
    if not value:
        return None
    text = value.strip()
    if text.isdigit():
        return float(text)
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - now)


def backoff(attempts: int, key: str) -> float:
    """Exponential, with a jitter derived from the key so replays schedule identically."""
    jitter = (sum(key.encode()) % 100) / 1000.0
    return min(MAX_DELAY, BASE_DELAY * (2 ** max(0, attempts - 1))) * (1.0 + jitter)


class WebhookSender:
    def __init__(
        self,
        endpoints: Callable[[str, str], tuple[str, str] | None],
        *,
        client: httpx2.Client | None = None,
        max_attempts: int = MAX_ATTEMPTS,
    ) -> None:
        """`endpoints(workspace, webhook_id)` gives (url, secret) from the applied playbook,
        or None when the webhook is gone or disabled."""
        self._endpoints = endpoints
        self._client = client or httpx2.Client(timeout=15.0, follow_redirects=False)
        self._max_attempts = max_attempts
        self._wall = SystemClock()

    def send(self, item: Claimed, now: float) -> Outcome:
        endpoint = self._endpoints(item.workspace_id, item.destination)
        attempt = item.attempts + 1
        if endpoint is None:
            return self._failed(item, now, attempt, "webhook is not configured (disabled or removed)")
        url, secret = endpoint
        body = _encoder.encode(item.payload.get("body", item.payload))
        # The signature's timestamp is transport time (receivers reject ones more than five
        # minutes off their wall clock), not business time, so it reads the system clock.
        from leadloop.outbox.signing import sign_webhook

        headers = sign_webhook(secret, item.idempotency_key, int(self._wall.now()), body)
        headers["content-type"] = "application/json"
        headers["user-agent"] = "leadloop-webhooks/0.1"
        try:
            response = self._client.post(url, content=body, headers=headers)
        except httpx2.HTTPError as exc:
            return self._failed(item, now, attempt, f"network error: {exc.__class__.__name__}: {exc}")
        status = response.status_code
        if 200 <= status < 300:
            return Outcome("delivered")
        reason = f"HTTP {status}"
        if status == 410:
            return Outcome("dead", None, f"{reason}: the receiver asked to stop (410 Gone)")
        delay = retry_after_seconds(response.headers.get("retry-after"), now)
        return self._failed(item, now, attempt, reason, delay)

    def _failed(
        self, item: Claimed, now: float, attempt: int, reason: str, delay: float | None = None
    ) -> Outcome:
        if attempt >= self._max_attempts:
            return Outcome("dead", None, f"{reason}; gave up after {attempt} attempts")
        wait = delay if delay is not None else backoff(attempt, item.idempotency_key)
        return Outcome("pending", now + min(wait, MAX_DELAY), reason)

    def close(self) -> None:
        self._client.close()


def webhook_body(payload: dict[str, Any]) -> dict[str, Any]:
    return {"body": payload}
