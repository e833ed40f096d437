"""What a platform's answer means for the batch we sent, and when to try again.

`classify_response` maps (platform, HTTP status, headers, body) to one `Outcome`, following the
retry matrix of research/capi.md §6.1:

    Delivered  the platform took the batch (a duplicate the platform dedups is also delivered)
    Retry      transient: the same batch, unchanged, later (Retry-After honoured)
    Bisect     the request was refused because of *some* event in it (Meta, Data Manager and
               TikTok all fail a whole batch for one bad row): split it and resend the halves,
               so the good events go through and the bad one ends alone as a Reject
    Reject     permanent for this batch (bad credentials, permissions, a single bad event):
               dead-letter it and alert; resending cannot help
    PerEvent   the platform answered event by event (the Google Ads API's partial failure):
               one of the three above per event of the batch, in order

Network errors and timeouts never reach here: the shell treats them as Retry.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from typing import Any

import msgspec

from leadloop.conversions.google_ads import NOT_ALLOWLISTED, NOT_ALLOWLISTED_HINT, row_errors
from leadloop.conversions.model import Platform
from leadloop.outbox.retry_after import MAX_RETRY_AFTER, retry_after_header


class Delivered(msgspec.Struct, frozen=True, kw_only=True):
    note: str = ""


class Retry(msgspec.Struct, frozen=True, kw_only=True):
    reason: str
    retry_after: float | None = None
    """Seconds the platform asked us to wait (Retry-After), if it said."""


class Bisect(msgspec.Struct, frozen=True, kw_only=True):
    reason: str
    bad_index: int | None = None
    """Index of the offending event when the error names it; bisection works without it."""


class Reject(msgspec.Struct, frozen=True, kw_only=True):
    reason: str


class PerEvent(msgspec.Struct, frozen=True, kw_only=True):
    outcomes: tuple[Delivered | Retry | Reject, ...]


Outcome = Delivered | Retry | Bisect | Reject | PerEvent

# Graph error codes (capi.md §1.5).
_META_RETRY_CODES = frozenset({1, 2, 4, 17, 341, 368})
_META_AUTH_CODES = frozenset({190, 3, 10})
_META_CONFIG_SUBCODES = frozenset({33})
"""Code 100 with subcode 33: the pixel id is wrong or not ours — every event would fail."""

# TikTok business codes inside an HTTP 200 (capi.md §3, §6.1; RudderStack's mapping).
_TIKTOK_OK = frozenset({0, 20001})
"""20001 is partial success; RudderStack treats it as delivered and so do we."""
_TIKTOK_RETRY = frozenset({40100, 40700})
_TIKTOK_AUTH = frozenset({40001, 40002})

_INDEX_HINTS = (
    re.compile(r"events\[(\d+)\]"),
    re.compile(r"data\[(\d+)\]"),
    re.compile(r"event index:?\s*(\d+)", re.IGNORECASE),
)


def _decode(body: bytes | str | Mapping[str, Any] | None) -> dict[str, Any]:
    if body is None:
        return {}
    if isinstance(body, Mapping):
        return dict(body)
    try:
        decoded = json.loads(body)
    except ValueError:
        return {}
    return decoded if isinstance(decoded, dict) else {}


def _error_object(body: dict[str, Any]) -> dict[str, Any]:
    error = body.get("error")
    return error if isinstance(error, dict) else {}


def _find_index(texts: list[str]) -> int | None:
    for text in texts:
        for pattern in _INDEX_HINTS:
            found = pattern.search(text)
            if found:
                return int(found.group(1))
    return None


def _as_int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _one_bad_event(reason: str, batch_size: int, index: int | None) -> Outcome:
    if batch_size > 1:
        return Bisect(reason=reason, bad_index=index)
    return Reject(reason=reason)


def _classify_meta(
    status: int, body: dict[str, Any], retry_after: float | None, batch_size: int
) -> Outcome:
    if 200 <= status < 300:
        return Delivered(note=f"events_received={body.get('events_received')}")
    error = _error_object(body)
    code = _as_int(error.get("code"))
    subcode = _as_int(error.get("error_subcode"))
    detail = error.get("error_user_msg") or error.get("message") or ""
    reason = f"meta: HTTP {status} code {code} subcode {subcode}: {detail}".rstrip(": ")
    if (
        status == 429
        or status >= 500
        or code in _META_RETRY_CODES
        or (code is not None and 80000 <= code <= 80099)  # business-use-case throttling family
        or error.get("is_transient") is True
    ):
        return Retry(reason=reason, retry_after=retry_after)
    if code in _META_AUTH_CODES or (code is not None and 200 <= code <= 299):
        return Reject(reason=reason)
    if code == 100 and subcode in _META_CONFIG_SUBCODES:
        return Reject(reason=reason)
    if 400 <= status < 500:
        # Meta rejects the whole request for one bad event (capi.md §1.1); unknown 4xx codes too
        # are treated as data errors, since valid requests get 2xx (Troubleshooting page).
        texts = [str(error.get(k, "")) for k in ("error_user_msg", "message", "error_user_title")]
        return _one_bad_event(reason, batch_size, _find_index(texts))
    # Unknown non-error statuses (1xx/3xx): RudderStack's rule is retry unknowns.
    return Retry(reason=reason, retry_after=retry_after)


def _classify_google(
    status: int, body: dict[str, Any], retry_after: float | None, batch_size: int
) -> Outcome:
    if 200 <= status < 300:
        return Delivered(note=f"requestId={body.get('requestId')}")
    error = _error_object(body)
    grpc_status = str(error.get("status", ""))
    reason = f"google: HTTP {status} {grpc_status}: {error.get('message', '')}".rstrip(": ")
    if status in (408, 429) or status >= 500:
        return Retry(reason=reason, retry_after=retry_after)
    if status == 400 and grpc_status in ("INVALID_ARGUMENT", "FAILED_PRECONDITION", ""):
        # Fast-fail (capi.md §2.1): any invalid event fails the request. Google's standard
        # BadRequest detail names it as `events[i]...` in fieldViolations.
        fields = [
            str(violation.get("field", ""))
            for detail in error.get("details", []) or []
            if isinstance(detail, dict)
            for violation in detail.get("fieldViolations", []) or []
            if isinstance(violation, dict)
        ]
        if fields and not any(f.startswith("events") for f in fields):
            # The request's own settings (`destinations[0].productDestinationId`: a wrong
            # conversion action) fail every request alike: splitting the batch down to single
            # events only sent some 2 requests per event before each was dead-lettered.
            return Reject(reason=f"{reason} ({', '.join(fields)})")
        return _one_bad_event(
            reason, batch_size, _find_index([*fields, str(error.get("message", ""))])
        )
    return Reject(reason=reason)


# Google Ads API per-row codes (capi.md §6.1): the platform already holds these conversions.
_GOOGLE_ADS_DUPLICATES = frozenset({"ORDER_ID_ALREADY_IN_USE", "CLICK_CONVERSION_ALREADY_EXISTS"})
_GOOGLE_ADS_RETRY_KINDS = frozenset({"internalError", "quotaError"})
_GOOGLE_ADS_RETRY_STATUSES = frozenset(
    {"UNAVAILABLE", "DEADLINE_EXCEEDED", "RESOURCE_EXHAUSTED", "INTERNAL"}
)
TOO_RECENT_DELAY = 6 * 3600.0
"""`TOO_RECENT_EVENT`: the click is under 6 hours old; try again no sooner (capi.md §6.1)."""


def _google_ads_row(kind: str, code: str, message: str) -> Delivered | Retry | Reject:
    reason = f"google_ads: {code or kind or 'error'}: {message}".rstrip(": ")
    if code == NOT_ALLOWLISTED:
        return Reject(reason=NOT_ALLOWLISTED_HINT)
    if code in _GOOGLE_ADS_DUPLICATES:
        return Delivered(note=f"duplicate: {code}")
    if code == "TOO_RECENT_EVENT":
        return Retry(reason=reason, retry_after=TOO_RECENT_DELAY)
    if kind in _GOOGLE_ADS_RETRY_KINDS or code in _GOOGLE_ADS_RETRY_STATUSES:
        return Retry(reason=reason)
    # Everything else names bad data or a bad setting of this row (INVALID_USER_IDENTIFIER,
    # UNPARSEABLE_GCLID, EXPIRED_EVENT, ORDER_ID_CONTAINS_PII, ...): resending cannot help.
    return Reject(reason=reason)


def _worst(outcomes: list[Delivered | Retry | Reject]) -> Delivered | Retry | Reject:
    """A row with several errors: a permanent one wins over a transient one."""
    for kind in (Reject, Retry):
        found = [o for o in outcomes if isinstance(o, kind)]
        if found:
            return found[0]
    return outcomes[0]


def _classify_google_ads(
    status: int, body: dict[str, Any], retry_after: float | None, batch_size: int
) -> Outcome:
    if 200 <= status < 300:
        errors = row_errors(body.get("partialFailureError"))
        if not errors:
            return Delivered(note=f"results={len(body.get('results') or [])}")
        per_row: list[list[Delivered | Retry | Reject]] = [[] for _ in range(batch_size)]
        for failure in errors:
            outcome = _google_ads_row(failure.kind, failure.code, failure.message)
            index = failure.index
            # An error that names no row concerns the request, so every row of it.
            rows = [index] if index is not None and 0 <= index < batch_size else range(batch_size)
            for i in rows:
                per_row[i].append(outcome)
        return PerEvent(
            outcomes=tuple(_worst(row) if row else Delivered() for row in per_row),
        )
    error = _error_object(body)
    errors = row_errors(error)
    grpc_status = str(error.get("status", ""))
    codes = ", ".join(e.code for e in errors if e.code) or grpc_status
    detail = "; ".join(e.message for e in errors if e.message) or str(error.get("message", ""))
    reason = f"google_ads: HTTP {status} {codes}: {detail}".rstrip(": ")
    if any(e.code == NOT_ALLOWLISTED for e in errors):
        return Reject(reason=NOT_ALLOWLISTED_HINT)
    if status in (408, 429) or status >= 500 or grpc_status in _GOOGLE_ADS_RETRY_STATUSES:
        return Retry(reason=reason, retry_after=retry_after)
    if status in (401, 403):
        return Reject(
            reason=f"{reason} (check the developer token, access token and login customer id)"
        )
    indexed = [e.index for e in errors if e.index is not None]
    if status == 400 and indexed:
        # The request was refused as a whole for a named row: split it off and resend the rest.
        return _one_bad_event(reason, batch_size, indexed[0])
    return Reject(reason=reason)


def _classify_tiktok(
    status: int, body: dict[str, Any], retry_after: float | None, batch_size: int
) -> Outcome:
    if status == 429 or status >= 500:
        return Retry(reason=f"tiktok: HTTP {status}", retry_after=retry_after)
    if not 200 <= status < 300:
        return Reject(reason=f"tiktok: HTTP {status}")
    # Errors arrive as HTTP 200 with a non-zero `code` (capi.md §3): always read the body.
    code = _as_int(body.get("code"))
    reason = f"tiktok: code {code}: {body.get('message', '')}".rstrip(": ")
    if code is None:
        return Retry(reason="tiktok: HTTP 200 without a readable code", retry_after=retry_after)
    if code in _TIKTOK_OK:
        return Delivered(note=f"code={code}")
    if code in _TIKTOK_RETRY:
        return Retry(reason=reason, retry_after=retry_after)
    if code in _TIKTOK_AUTH:
        return Reject(reason=reason)
    # TikTok fails the entire batch on one erroneous row (capi.md §3, secondary).
    return _one_bad_event(reason, batch_size, _find_index([str(body.get("message", ""))]))


def classify_response(
    platform: Platform,
    status: int,
    headers: Mapping[str, str],
    body: bytes | str | Mapping[str, Any] | None,
    *,
    batch_size: int = 1,
    now: float | None = None,
) -> Outcome:
    """`batch_size` turns a batch-level data error into Bisect (>1) or Reject (a single event).
    `now` is only needed to read a Retry-After given as an HTTP-date."""
    decoded = _decode(body)
    retry_after = retry_after_header(headers, now)
    if platform == "meta":
        return _classify_meta(status, decoded, retry_after, batch_size)
    if platform == "google":
        return _classify_google(status, decoded, retry_after, batch_size)
    if platform == "google_ads":
        return _classify_google_ads(status, decoded, retry_after, batch_size)
    return _classify_tiktok(status, decoded, retry_after, batch_size)


def next_attempt(
    attempts: int,
    now: float,
    retry_after: float | None = None,
    *,
    key: str = "",
    base: float = 2.0,
    cap: float = 3600.0,
    max_attempts: int = 12,
    max_retry_after: float = MAX_RETRY_AFTER,
) -> float | None:
    """When to try again after `attempts` failed tries (≥1), or None to give up (dead letter).

    Exponential backoff with "equal jitter": between half and all of `base * 2**(attempts-1)`,
    capped. The jitter comes from a hash of `key` and `attempts`, so the result is reproducible in
    tests and replays while different outbox rows still spread out. A Retry-After from the
    platform is a floor, never shortened by jitter, and capped at `max_retry_after`: a larger
    one would park the rows past the platforms' window for late events.
    """
    if attempts < 1:
        raise ValueError("attempts counts failed tries and starts at 1")
    if attempts >= max_attempts:
        return None
    digest = hashlib.sha256(f"{key}:{attempts}".encode()).digest()
    fraction = int.from_bytes(digest[:8], "big") / 2**64
    ceiling = min(cap, base * 2.0 ** (attempts - 1))
    delay = ceiling / 2 + fraction * ceiling / 2
    if retry_after is not None:
        delay = max(delay, min(retry_after, max_retry_after))
    return now + delay
