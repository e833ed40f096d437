"""Outgoing webhooks, signed per Standard Webhooks (`webhook-id`, `webhook-timestamp`,
`webhook-signature`). The `webhook-id` is the outbox row's idempotency key, the same on
every attempt, so a receiver can drop a re-delivery after a crash or a lost answer."""

from __future__ import annotations

from collections.abc import Callable

import httpx2
import msgspec

from leadloop.channels import deadline as deadlines
from leadloop.clock import Clock, SystemClock
from leadloop.outbox.decide import Dead, Delivered, Retry, classify_http, next_attempt
from leadloop.outbox.model import RetryPolicy
from leadloop.outbox.service import Claimed, Outcome
from leadloop.outbox.signing import sign_webhook

_encoder = msgspec.json.Encoder()
DEADLINE = 15.0
"""Seconds one attempt may take, from connecting to the answer's last header byte."""


class WebhookSender:
    def __init__(
        self,
        endpoints: Callable[[str, str], tuple[str, str] | None],
        *,
        client: httpx2.Client | None = None,
        policy: RetryPolicy | None = None,
        deadline: float = DEADLINE,
        gone: Callable[[str, str], str | None] = lambda workspace, webhook_id: None,
        clock: Clock | None = None,
    ) -> None:
        """`endpoints(workspace, webhook_id)` gives (url, secret) from the applied playbook,
        or None when the webhook is gone or disabled; `gone(workspace, webhook_id)` the URL at
        which it answered 410 Gone, while that hold stands (`outbox.service.gone_url`);
        `clock` the engine's, that the dispatcher's `now` comes from."""
        self._endpoints = endpoints
        self._gone = gone
        self._deadline = deadline
        self._client = client or deadlines.client(deadline)
        self._policy = policy or RetryPolicy()
        self._wall = SystemClock()
        self._clock = clock or self._wall

    def send(self, item: Claimed, now: float) -> Outcome:
        endpoint = self._endpoints(item.workspace_id, item.destination)
        attempt = item.attempts + 1
        if endpoint is None:
            return self._failed(
                item, now, attempt, "webhook is not configured (disabled or removed)"
            )
        url, secret = endpoint
        if self._gone(item.workspace_id, item.destination) == url:
            # Standard Webhooks: a 410 asks the sender to stop. Nothing is sent; the row is a
            # dead letter an operator sees, and re-driving it sends again.
            # (The URL stays out of the reason: webhook URLs often carry a token.)
            held = "not sent: the receiver answered 410 Gone; `leadloop outbox replay` sends again"
            return Outcome("dead", None, held, attempted=False)
        body = _encoder.encode(item.payload.get("body", item.payload))
        # The signature's timestamp is transport time (receivers reject ones more than five
        # minutes off their wall clock), not business time, so it reads the system clock.
        headers = sign_webhook(secret, item.idempotency_key, int(self._wall.now()), body)
        headers["content-type"] = "application/json"
        headers["user-agent"] = "leadloop-webhooks/0.1"
        try:
            # Only the status and headers are read, never the body: a receiver answering with
            # a huge or endless one would hold a send thread (and the memory) as long as it
            # kept writing. Leaving the stream unread closes the connection. The deadline
            # bounds the whole exchange: a receiver trickling its head byte by byte meets
            # every per-read timeout and would otherwise hold the thread without end.
            with (
                deadlines.within(self._deadline),
                self._client.stream("POST", url, content=body, headers=headers) as response,
            ):
                status, answer = response.status_code, dict(response.headers)
        except httpx2.TimeoutException as exc:
            reason = f"timeout: no answer within {self._deadline:g} s ({exc.__class__.__name__})"
            return self._failed(item, now, attempt, reason)
        except httpx2.HTTPError as exc:
            return self._failed(
                item, now, attempt, f"network error: {exc.__class__.__name__}: {exc}"
            )
        # A Retry-After HTTP-date is the receiver's wall-clock time: read it against the wall
        # clock, so under a manual clock the wait is still the one asked for.
        outcome = classify_http(status, answer, self._wall.now())
        if isinstance(outcome, Delivered):
            return Outcome("delivered")
        if isinstance(outcome, Dead):
            return Outcome(
                "dead", None, outcome.reason, gone=url if outcome.disable_endpoint else None
            )
        return self._failed(item, now, attempt, outcome)

    def _failed(self, item: Claimed, now: float, attempt: int, failure: Retry | str) -> Outcome:
        retry = Retry(failure) if isinstance(failure, str) else failure
        # The wait counts from the attempt's end, not its start: an attempt that took longer
        # than the first backoffs (a timeout) was otherwise due again the moment it ended.
        now = max(now, self._clock.now())
        budget = self._policy.client_error_attempts if retry.client_error else None
        if budget is not None and attempt >= budget:
            return Outcome("dead", None, f"{retry.reason}; gave up after {attempt} attempts")
        due = next_attempt(attempt, now, retry.after, item.idempotency_key, self._policy)
        if due is None:
            return Outcome("dead", None, f"{retry.reason}; gave up after {attempt} attempts")
        return Outcome("pending", due, retry.reason)

    def close(self) -> None:
        self._client.close()
