"""Delivers claimed `conversion` outbox rows to Meta, Google (Data Manager, Ads API) and TikTok.

`send_batch` gets every claimed row of the kind at once and, per destination:

1. drops rows the platform would refuse for good (too old, or in the last hour of the
   platform's window, `payloads.SEND_MARGIN`; no usable identifiers: the payload checks of
   `payloads.check_conversion`) as `skipped` with the reason, before batching: one too-old
   event makes Meta reject a whole request (capi.md §1.1, §6.3). A row that ran out of time
   after failed attempts is `dead` instead, and so is one whose retry would fall past the
   window. A Meta event dated ahead waits until it is due (`payloads.held_until`), without
   spending an attempt;
2. splits the rest into the platform's request sizes (`MAX_EVENTS`);
3. POSTs each request with the platform's auth (Meta `?access_token=`, Google `Authorization:
   Bearer`, plus `developer-token` for the Ads API, TikTok `Access-Token`) and classifies the
   answer (`decide.classify_response`). A Google destination with a service account gets its
   bearer token from `AccessTokens` (cached until shortly before it expires); a token endpoint
   that fails is settled like the API would be (network error or 5xx: `Retry`; `invalid_grant`:
   `Reject`), and a 401 from the API drops the token and sends the request once more with a
   new one;
   Requests (all destinations, all chunks) go out up to `parallel` at a time, so one request's
   round trip overlaps with building the next body;
4. on `Bisect` (a whole batch refused for one bad event) splits around the named event, or in
   halves, and re-sends the parts, so the good events go through and the bad one ends alone
   as a dead letter; on `Retry` schedules the rows with backoff (Retry-After is a floor); on
   `Reject` dead-letters them; on `PerEvent` (the Ads API's partial failure) does one of those
   per row, so only the rows Google refused are retried or dead-lettered.

A row's idempotency key and event id are the same on every attempt, so a crash between the
POST and the recording re-sends a duplicate that the platform drops (capi.md §6.2).
Outcome statuses: `delivered`, `pending`, `dead`, and `skipped` (final, never re-driven).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import httpx2
import msgspec

from leadloop.clock import Clock
from leadloop.conversions.decide import (
    Bisect,
    Delivered,
    PerEvent,
    Reject,
    Retry,
    classify_response,
    next_attempt,
)
from leadloop.conversions.destinations import DestinationConfig
from leadloop.conversions.google_ads import request_headers
from leadloop.conversions.google_credentials import SCOPES
from leadloop.conversions.google_tokens import AccessTokens
from leadloop.conversions.model import (
    Conversion,
    Destination,
    GoogleAdsDestination,
    MetaDestination,
)
from leadloop.conversions.payloads import (
    MAX_EVENTS,
    build_event,
    check_conversion,
    check_event_age,
    compute_appsecret_proof,
    event_age_reason,
    held_until,
    past_deadline_reason,
    request_url,
    send_deadline,
    split_batches,
    wrap_request,
)
from leadloop.outbox.service import Claimed, Outcome

log = logging.getLogger("leadloop.conversions")
_encoder = msgspec.json.Encoder()


class _StoredRow(msgspec.Struct):
    """The part of a `conversion` outbox row the sender reads (`ConversionStage` writes it);
    other keys (`mapping`) are ignored.

    `event` is the event in its platform's form, built and hashed when the row was queued: it
    is kept as raw JSON and written into the request as it is. Rows queued before that form
    existed carry the `conversion` instead, built into the platform's form here."""

    event: msgspec.Raw = msgspec.Raw()
    """Empty when the row carries a `conversion` instead (msgspec takes no `Raw | None`)."""
    platform: str | None = None
    event_time: float | None = None
    action_source: str = "website"
    conversion: Conversion | None = None


_row_decoder = msgspec.json.Decoder(_StoredRow)
MAX_ATTEMPTS = 12
PARALLEL = 4
"""Requests in flight at once per `send_batch` (the facebook-business SDK's BatchProcessor also
defaults to 4 concurrent requests)."""
TIMEOUT = 10.0
"""Seconds; Meta recommends 1.5 s for a single event, our requests carry up to 2,000."""

Lookup = Callable[[str, str], DestinationConfig | None]
_DELIVERED = Outcome("delivered")
"""Outcomes are frozen, so every delivered row can share this one."""


_Delivered = tuple["_Row", Outcome]


@dataclass
class _Row:
    index: int
    item: Claimed
    stored: _StoredRow


class ConversionSender:
    def __init__(
        self,
        destinations: Lookup,
        *,
        client: httpx2.Client | None = None,
        max_attempts: int = MAX_ATTEMPTS,
        parallel: int = PARALLEL,
        clock: Clock | None = None,
    ) -> None:
        """`destinations(workspace, destination_id)` is the destination of the applied playbook
        (`config.conversions_config(playbook).destination(id)`), or None when it is gone."""
        self._destinations = destinations
        self._client = client or httpx2.Client(timeout=TIMEOUT, follow_redirects=False)
        self.tokens = AccessTokens(self._client)
        self._max_attempts = max_attempts
        self._clock = clock
        """Read when an attempt fails: its retry waits from the attempt's end (a timeout ends
        long after the claim's `now`)."""
        self._pool = (
            ThreadPoolExecutor(max_workers=parallel, thread_name_prefix="leadloop-conversions")
            if parallel > 1
            else None
        )
        self._lock = threading.Lock()
        self._sent = 0

    @property
    def requests(self) -> int:
        """Requests sent so far (bisected parts included)."""
        return self._sent

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
        self._client.close()

    def send_batch(self, items: list[Claimed], now: float) -> list[Outcome]:
        outcomes: list[Outcome | None] = [None] * len(items)
        groups: dict[tuple[str, str], list[_Row]] = {}
        for index, item in enumerate(items):
            try:
                stored = _row_decoder.decode(item.raw_payload)
            except msgspec.DecodeError as exc:  # ValidationError is a DecodeError
                outcomes[index] = Outcome("dead", None, f"unreadable conversion payload: {exc}")
                continue
            if stored.conversion is None and (not stored.event or stored.event_time is None):
                unreadable = "unreadable conversion payload: neither an event nor a conversion"
                outcomes[index] = Outcome("dead", None, unreadable)
                continue
            groups.setdefault((item.workspace_id, item.destination), []).append(
                _Row(index, item, stored)
            )
        jobs: list[tuple[DestinationConfig, Destination, list[_Row]]] = []
        for (workspace, dest_id), rows in groups.items():
            config = self._destinations(workspace, dest_id)
            if config is None or config.destination is None:
                why = "not in the applied playbook" if config is None else config.disabled_reason
                for row in rows:
                    outcomes[row.index] = Outcome(
                        "dead", None, f"destination {dest_id} is not usable: {why}"
                    )
                continue
            sendable: list[_Row] = []
            for row in rows:
                stored = row.stored
                if stored.event and stored.platform != config.platform:
                    moved = (
                        f"destination {dest_id} is a {config.platform} destination now; "
                        f"the event was built for {stored.platform}"
                    )
                    outcomes[row.index] = Outcome("dead", None, moved)
                    continue
                due = _held_until(stored, config.destination, now)
                if due is not None:
                    # Dated ahead (queued before it was held, or the clock went back): not an
                    # attempt, and Meta would refuse the whole request for it.
                    ahead = "meta: event_time is in the future; held until it is due"
                    outcomes[row.index] = Outcome("pending", due, ahead, attempted=False)
                    continue
                tried = row.item.attempts
                expired = _expired(stored, config.destination, now) if tried else None
                if expired:
                    # Failed attempts ran it out of time: a delivery failure, not a skip.
                    plural = "s" if tried > 1 else ""
                    failed = f"{expired}; not delivered in {tried} attempt{plural}"
                    outcomes[row.index] = Outcome("dead", None, failed)
                    continue
                reason = _check(stored, config.destination, now)
                if reason:
                    outcomes[row.index] = Outcome("skipped", None, reason)
                    continue
                if not stored.event:
                    assert stored.conversion is not None  # checked when decoded
                    built = build_event(stored.conversion, config.destination)
                    stored.event = msgspec.Raw(_encoder.encode(built))
                sendable.append(row)
            limit = MAX_EVENTS[config.platform]
            target = config.destination
            jobs.extend((config, target, chunk) for chunk in split_batches(sendable, limit))

        def deliver(job: tuple[DestinationConfig, Destination, list[_Row]]) -> list[_Delivered]:
            config, target, chunk = job
            return self._deliver(config, target, chunk, now)

        if self._pool is not None and len(jobs) > 1:
            results = list(self._pool.map(deliver, jobs))
        else:
            results = [deliver(job) for job in jobs]
        for result in results:
            for row, outcome in result:
                outcomes[row.index] = outcome
        done = [o for o in outcomes if o is not None]
        assert len(done) == len(items)
        return done

    # -- one request, bisected on a batch-level data error ------------------------------------

    def _deliver(
        self, config: DestinationConfig, target: Destination, rows: list[_Row], now: float
    ) -> list[tuple[_Row, Outcome]]:
        events = [r.stored.event for r in rows]
        bearer = self._bearer(config, now)
        if isinstance(bearer, Retry | Reject):
            return [(row, self._settle(row, bearer, target, now)) for row in rows]
        status, headers, body = self._post(config, target, events, bearer)
        if status == 401 and config.service_account is not None:
            # Revoked or expired early: one new token and one more try, then the 401 stands.
            self.tokens.forget(config.service_account, SCOPES[config.platform], bearer)
            bearer = self._bearer(config, now)
            if isinstance(bearer, Retry | Reject):
                return [(row, self._settle(row, bearer, target, now)) for row in rows]
            status, headers, body = self._post(config, target, events, bearer)
        if status == 0:
            return [(row, self._retry(row, target, now, body, None)) for row in rows]
        # A Retry-After HTTP-date is the platform's wall-clock time: read against the wall
        # clock, so under a manual clock the wait asked for is still the one kept.
        verdict = classify_response(
            config.platform, status, headers, body, batch_size=len(rows), now=time.time()
        )
        if isinstance(verdict, PerEvent):
            return [
                (row, self._settle(row, one, target, now))
                for row, one in zip(rows, verdict.outcomes, strict=True)
            ]
        if isinstance(verdict, Delivered):
            return [(row, _DELIVERED) for row in rows]  # the common case: one shared outcome
        if isinstance(verdict, Retry | Reject):
            return [(row, self._settle(row, verdict, target, now)) for row in rows]
        assert isinstance(verdict, Bisect)
        results: list[tuple[_Row, Outcome]] = []
        for part in _bisect(rows, verdict.bad_index):
            results.extend(self._deliver(config, target, part, now))
        return results

    def _settle(
        self, row: _Row, verdict: Delivered | Retry | Reject, target: Destination, now: float
    ) -> Outcome:
        if isinstance(verdict, Delivered):
            return _DELIVERED
        if isinstance(verdict, Retry):
            return self._retry(row, target, now, verdict.reason, verdict.retry_after)
        return Outcome("dead", None, verdict.reason)

    def _retry(
        self, row: _Row, target: Destination, now: float, reason: str, retry_after: float | None
    ) -> Outcome:
        attempts = row.item.attempts + 1
        ended = now if self._clock is None else max(now, self._clock.now())
        when = next_attempt(
            attempts,
            ended,
            retry_after,
            key=row.item.idempotency_key,
            max_attempts=self._max_attempts,
        )
        if when is None:
            return Outcome("dead", None, f"{reason}; gave up after {attempts} attempts")
        event_time, action_source = _timing(row.stored)
        if when > send_deadline(event_time, action_source, target):
            # It would only be skipped as too old then, which hides that it never got through.
            late = past_deadline_reason(action_source, target)
            return Outcome("dead", None, f"{reason}; {late}")
        return Outcome("pending", when, reason)

    def _bearer(self, config: DestinationConfig, now: float) -> str | Retry | Reject:
        """The destination's token: its static `access_token`, or one granted to its service
        account (or what to do with the rows when the token endpoint fails)."""
        account = config.service_account
        if account is None:
            return config.access_token
        scope = SCOPES[config.platform]
        return self.tokens.get(account, scope, now, platform=config.platform)

    def _post(
        self,
        config: DestinationConfig,
        target: Destination,
        events: list[msgspec.Raw],
        token: str,
    ) -> tuple[int, dict[str, str], Any]:
        """(status, headers, body); status 0 is a network error, with the reason as body."""
        proof = None
        params: dict[str, str] = {}
        headers = {"content-type": "application/json", "user-agent": "leadloop-conversions/0.1"}
        if isinstance(target, MetaDestination):
            params["access_token"] = token
            if config.app_secret:
                proof = compute_appsecret_proof(config.app_secret, token)
        elif isinstance(target, GoogleAdsDestination):
            headers.update(request_headers(target, token, config.developer_token))
        elif config.platform == "google":
            headers["authorization"] = f"Bearer {token}"
        else:
            headers["access-token"] = token
        payload = _encoder.encode(wrap_request(events, target, appsecret_proof=proof))
        with self._lock:
            self._sent += 1
        try:
            response = self._client.post(
                request_url(target), content=payload, headers=headers, params=params
            )
        except httpx2.HTTPError as exc:
            return 0, {}, f"{config.platform}: network error: {exc.__class__.__name__}: {exc}"
        return response.status_code, dict(response.headers), response.content


def _check(stored: _StoredRow, target: Destination, now: float) -> str | None:
    """The send-time part of `check_conversion`: the event's age (and, for a row queued before
    events were stored in their platform's form, consent). Identifiers were checked (and
    hashed) when the row was enqueued and cannot have changed since."""
    conversion = stored.conversion
    if conversion is not None:
        if conversion.ad_user_data is False:
            return check_conversion(conversion, target, now)
        return check_event_age(conversion, target, now)
    assert stored.event_time is not None  # checked when decoded
    return event_age_reason(stored.event_time, stored.action_source, target, now)


def _timing(stored: _StoredRow) -> tuple[float, str]:
    """The row's event time and action source, whichever form it was stored in."""
    conversion = stored.conversion
    if conversion is not None:
        return conversion.event_time, conversion.action_source
    assert stored.event_time is not None  # checked when decoded
    return stored.event_time, stored.action_source


def _expired(stored: _StoredRow, target: Destination, now: float) -> str | None:
    event_time, action_source = _timing(stored)
    return event_age_reason(event_time, action_source, target, now)


def _held_until(stored: _StoredRow, target: Destination, now: float) -> float | None:
    return held_until(_timing(stored)[0], target, now)


def _bisect(rows: list[_Row], bad_index: int | None) -> list[list[_Row]]:
    """Around the named bad event when the error names one, else in halves."""
    if bad_index is not None and 0 <= bad_index < len(rows):
        parts = [rows[:bad_index], rows[bad_index : bad_index + 1], rows[bad_index + 1 :]]
        return [part for part in parts if part]
    middle = len(rows) // 2
    return [rows[:middle], rows[middle:]]
