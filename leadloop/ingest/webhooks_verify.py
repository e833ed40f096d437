"""Inbound webhook signatures: Standard Webhooks (and svix), Stripe, HubSpot.

Every verifier is pure (`now` comes in), compares in constant time and returns a
`Verification` (truthy when ok, else a `Rejection` reason) instead of raising: a forged or stale
request is an expected outcome, answered 401. Only a broken *configured* secret raises.

The three schemes look alike but are not interchangeable: a Stripe secret also starts with
`whsec_`, yet Stripe keys the HMAC with the whole secret string while Standard Webhooks
base64-decodes what follows the prefix.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from collections.abc import Mapping, Sequence

from leadloop.outbox.signing import (
    DEFAULT_TOLERANCE,
    VERIFIED,
    Rejection,
    Secret,
    Verification,
    verify_webhook,
)

__all__ = [
    "Rejection",
    "Verification",
    "decode_hubspot_uri",
    "verify_hubspot",
    "verify_standard_webhook",
    "verify_stripe",
]

_MAX_DIGITS = 15  # longer than any epoch in milliseconds: not a timestamp


def _lowered(headers: Mapping[str, str]) -> dict[str, str]:
    return {k.lower(): v for k, v in headers.items()}


def _secrets(secrets: str | Sequence[str]) -> list[str]:
    return [secrets] if isinstance(secrets, str) else list(secrets)


def verify_standard_webhook(
    secrets: Secret | Sequence[Secret],
    headers: Mapping[str, str],
    body: bytes,
    now: float,
    tolerance: float = DEFAULT_TOLERANCE,
) -> Verification:
    """Standard Webhooks / svix: the same check the outbox's receivers run on what we send."""
    return verify_webhook(secrets, headers, body, now, tolerance)


# --- Stripe -------------------------------------------------------------------------------


def _parse_stripe_header(header: str) -> tuple[int, list[str]] | None:
    timestamp: int | None = None
    v1: list[str] = []
    for item in header.split(","):
        key, equals, value = item.strip().partition("=")
        if not equals:
            continue
        if key == "t":
            if not (value.isascii() and value.isdigit()) or len(value) > _MAX_DIGITS:
                return None
            timestamp = int(value)
        elif key == "v1":
            # Only v1 counts; v0 (test-mode SHA1-era) entries are ignored, as stripe-python does.
            v1.append(value.lower())
    if timestamp is None or not v1:
        return None
    return timestamp, v1


def verify_stripe(
    secrets: str | Sequence[str],
    headers: Mapping[str, str],
    body: bytes,
    now: float,
    tolerance: float = DEFAULT_TOLERANCE,
) -> Verification:
    """`Stripe-Signature: t=<secs>,v1=<hex>[,v1=...]`, HMAC-SHA256 keyed by the secret's UTF-8.

    Any matching `v1` passes (Stripe sends one per active secret while rolling). Only *old*
    timestamps are refused, like stripe-python: a future one cannot be forged without the key,
    and refusing it would only punish clock skew.
    """
    header = _lowered(headers).get("stripe-signature")
    if not header:
        return Verification(Rejection.MISSING_HEADERS)
    parsed = _parse_stripe_header(header)
    if parsed is None:
        return Verification(Rejection.MALFORMED_SIGNATURE)
    timestamp, offered = parsed
    if now - timestamp > tolerance:
        return Verification(Rejection.TOO_OLD)
    signed = f"{timestamp}.".encode() + body
    for secret in _secrets(secrets):
        if not secret:
            raise ValueError("Stripe endpoint secret is empty")
        expected = hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()
        if any(hmac.compare_digest(expected.encode(), sig.encode()) for sig in offered):
            return VERIFIED
    return Verification(Rejection.NO_MATCH)


# --- HubSpot ------------------------------------------------------------------------------

# HubSpot's docs: decode exactly these escapes in the URI before hashing (other escapes, such as
# %20, stay as sent). One left-to-right pass, so "%253A" stays "%253A" (no double decoding).
_HUBSPOT_DECODE = {
    "3A": ":",
    "2F": "/",
    "3F": "?",
    "40": "@",
    "21": "!",
    "24": "$",
    "27": "'",
    "28": "(",
    "29": ")",
    "2A": "*",
    "2C": ",",
    "3B": ";",
}
_HUBSPOT_ESCAPE = re.compile("%(" + "|".join(_HUBSPOT_DECODE) + ")", re.IGNORECASE)


def decode_hubspot_uri(uri: str) -> str:
    """The URI as HubSpot hashed it."""
    return _HUBSPOT_ESCAPE.sub(lambda m: _HUBSPOT_DECODE[m.group(1).upper()], uri)


def _hubspot_v3(secret: str, method: str, uri: str, body: bytes, stamp: str) -> bytes:
    signed = method.upper().encode() + decode_hubspot_uri(uri).encode() + body + stamp.encode()
    return hmac.new(secret.encode(), signed, hashlib.sha256).digest()


def _hubspot_legacy(secret: str, version: str, method: str, uri: str, body: bytes) -> str | None:
    if version == "v1":
        return hashlib.sha256(secret.encode() + body).hexdigest()
    if version == "v2":
        return hashlib.sha256(
            secret.encode() + method.upper().encode() + uri.encode() + body
        ).hexdigest()
    return None


def verify_hubspot(
    client_secret: str,
    headers: Mapping[str, str],
    method: str,
    uri: str,
    body: bytes,
    now: float,
    tolerance: float = DEFAULT_TOLERANCE,
    *,
    allow_legacy: bool = False,
) -> Verification:
    """HubSpot v3: `X-HubSpot-Signature-v3` = base64(HMAC-SHA256(client secret,
    METHOD + URI + body + X-HubSpot-Request-Timestamp)), the timestamp in epoch milliseconds.

    `uri` is the full URI HubSpot called (scheme, host, path, query), as received. A timestamp
    more than `tolerance` off either way is refused: HubSpot's helper checks only the past, but a
    captured request stamped ahead of our clock would stay replayable for as long as it is
    ahead. The legacy v1/v2 signatures carry no timestamp, so anyone who saw one request can
    replay it forever: they are refused unless `allow_legacy`, for apps still on the old scheme.
    """
    if not client_secret:
        raise ValueError("HubSpot client secret is empty")
    lowered = _lowered(headers)
    given = lowered.get("x-hubspot-signature-v3")
    stamp = lowered.get("x-hubspot-request-timestamp")
    if given and stamp:
        stamp = stamp.strip()
        if not (stamp.isascii() and stamp.isdigit()) or len(stamp) > _MAX_DIGITS:
            return Verification(Rejection.BAD_TIMESTAMP)
        age_ms = now * 1000.0 - int(stamp)
        if age_ms > tolerance * 1000.0:
            return Verification(Rejection.TOO_OLD)
        if -age_ms > tolerance * 1000.0:
            return Verification(Rejection.TOO_NEW)
        try:
            offered = base64.b64decode(given.strip(), validate=True)
        except ValueError:  # binascii.Error, and non-ASCII text (a latin-1 header byte)
            return Verification(Rejection.MALFORMED_SIGNATURE)
        expected = _hubspot_v3(client_secret, method, uri, body, stamp)
        return (
            VERIFIED if hmac.compare_digest(expected, offered) else Verification(Rejection.NO_MATCH)
        )
    legacy = lowered.get("x-hubspot-signature")
    if allow_legacy and legacy:
        version = lowered.get("x-hubspot-signature-version", "v1").strip().lower()
        expected_hex = _hubspot_legacy(client_secret, version, method, uri, body)
        if expected_hex is None:
            return Verification(Rejection.MALFORMED_SIGNATURE)
        matched = hmac.compare_digest(expected_hex.encode(), legacy.strip().lower().encode())
        return VERIFIED if matched else Verification(Rejection.NO_MATCH)
    return Verification(Rejection.MISSING_HEADERS)
