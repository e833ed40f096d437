"""Standard Webhooks signatures, for what we send and for what we receive.

`webhook-signature` is `v1,` + base64(HMAC-SHA256(key, "{id}.{timestamp}.{body}")), where the
key is the base64-decoded part of a `whsec_` secret (raw bytes are used as they are). Several
secrets (a key rotation) give several space-separated entries, and a verifier holding any one of
them accepts. `webhook-id` is the idempotency key, stable across retries; the timestamp is per
attempt, so a receiver can refuse replays older (or newer) than its tolerance.

Pure: the caller passes the timestamp to sign with and the `now` to verify against.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets as _random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum

SECRET_PREFIX = "whsec_"
DEFAULT_TOLERANCE = 300.0
"""Seconds either side of `now`, as in the spec and the reference libraries."""

Secret = str | bytes
"""A `whsec_<base64>` string, bare base64, or the raw key bytes."""

# svix sends the same scheme under its own header names; receivers accept both spellings.
_ALIASES = {
    "webhook-id": "svix-id",
    "webhook-timestamp": "svix-timestamp",
    "webhook-signature": "svix-signature",
}
_MAX_TIMESTAMP_DIGITS = 12  # seconds until the year 33658: longer is garbage, not a time


class Rejection(StrEnum):
    """Why an inbound signature was refused (shared by every verifier in `ingest`)."""

    MISSING_HEADERS = "missing_headers"
    BAD_TIMESTAMP = "bad_timestamp"
    TOO_OLD = "too_old"
    TOO_NEW = "too_new"
    MALFORMED_SIGNATURE = "malformed_signature"
    NO_MATCH = "no_matching_signature"


@dataclass(frozen=True, slots=True)
class Verification:
    """The outcome of a check: `ok`, or the reason it failed. Truthy exactly when ok."""

    reason: Rejection | None = None

    @property
    def ok(self) -> bool:
        return self.reason is None

    def __bool__(self) -> bool:
        return self.reason is None


VERIFIED = Verification()


def secret_key(secret: Secret) -> bytes:
    """The HMAC key of a secret. Raises `ValueError` for an empty or non-base64 secret: that is
    a configuration bug, not a bad request."""
    if isinstance(secret, bytes):
        key = secret
    else:
        encoded = secret.removeprefix(SECRET_PREFIX)
        try:
            # Unpadded base64 is common in the wild (the Python library adds "==" too).
            key = base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
        except binascii.Error as exc:
            raise ValueError("webhook secret is not base64 after the whsec_ prefix") from exc
    if not key:
        raise ValueError("webhook secret is empty")
    return key


def new_secret(nbytes: int = 32) -> str:
    """A fresh `whsec_` secret; the spec asks for 24 to 64 random bytes."""
    if not 24 <= nbytes <= 64:
        raise ValueError("a webhook secret has 24 to 64 bytes")
    return SECRET_PREFIX + base64.b64encode(_random.token_bytes(nbytes)).decode("ascii")


def _mac(key: bytes, msg_id: str, timestamp: int, body: bytes) -> bytes:
    signed = f"{msg_id}.{timestamp}.".encode() + body
    return hmac.new(key, signed, hashlib.sha256).digest()


def signature(secret: Secret, msg_id: str, timestamp: int, body: bytes) -> str:
    """One `v1,<base64>` entry."""
    mac = _mac(secret_key(secret), msg_id, timestamp, body)
    return "v1," + base64.b64encode(mac).decode("ascii")


def _as_list(secrets: Secret | Sequence[Secret]) -> list[Secret]:
    # A str is itself a Sequence, so the single-secret case is decided first.
    return [secrets] if isinstance(secrets, str | bytes) else list(secrets)


def sign_webhook(
    secret: Secret | Sequence[Secret], msg_id: str, timestamp: int, body: bytes
) -> dict[str, str]:
    """The three Standard Webhooks headers; one signature entry per secret (key rotation)."""
    if isinstance(timestamp, bool) or timestamp < 0:
        raise ValueError("timestamp is Unix seconds")
    keys = _as_list(secret)
    if not keys:
        raise ValueError("at least one secret is needed to sign")
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": " ".join(signature(s, msg_id, timestamp, body) for s in keys),
    }


def _header(lowered: Mapping[str, str], name: str) -> str | None:
    return lowered.get(name) or lowered.get(_ALIASES[name])


def offered_macs(header: str) -> list[bytes] | None:
    """The decoded `v1` MACs of a signature header; None when no entry is well formed.

    Other versions (`v1a,` asymmetric) are skipped, as the spec says; entries without a comma or
    with bad base64 are skipped too instead of failing the whole header.
    """
    macs: list[bytes] = []
    for entry in header.split():
        version, comma, encoded = entry.partition(",")
        if not comma or version != "v1":
            continue
        try:
            macs.append(base64.b64decode(encoded, validate=True))
        except ValueError:  # binascii.Error, and non-ASCII text (a latin-1 header byte)
            continue
    return macs or None


def check_timestamp(stamp: str, now: float, tolerance: float) -> Verification | int:
    """The timestamp as an int, or why it is refused (non-integer, or outside `now ± tolerance`)."""
    if not (stamp.isascii() and stamp.isdigit()) or len(stamp) > _MAX_TIMESTAMP_DIGITS:
        return Verification(Rejection.BAD_TIMESTAMP)
    timestamp = int(stamp)
    if now - timestamp > tolerance:
        return Verification(Rejection.TOO_OLD)
    if timestamp - now > tolerance:
        return Verification(Rejection.TOO_NEW)
    return timestamp


def verify_webhook(
    secrets: Secret | Sequence[Secret],
    headers: Mapping[str, str],
    body: bytes,
    now: float,
    tolerance: float = DEFAULT_TOLERANCE,
) -> Verification:
    """Check a Standard Webhooks (or svix) delivery against any of `secrets`.

    Order as in the reference verifier: headers, then timestamp, then signature, so a replayed
    old message is reported as old even when its signature is fine.
    """
    lowered = {k.lower(): v for k, v in headers.items()}
    msg_id = _header(lowered, "webhook-id")
    stamp = _header(lowered, "webhook-timestamp")
    given = _header(lowered, "webhook-signature")
    if not (msg_id and stamp and given):
        return Verification(Rejection.MISSING_HEADERS)
    checked = check_timestamp(stamp.strip(), now, tolerance)
    if isinstance(checked, Verification):
        return checked
    offered = offered_macs(given)
    if offered is None:
        return Verification(Rejection.MALFORMED_SIGNATURE)
    for secret in _as_list(secrets):
        expected = _mac(secret_key(secret), msg_id, checked, body)
        # compare_digest: the time taken does not reveal how many leading bytes matched.
        if any(hmac.compare_digest(expected, mac) for mac in offered):
            return VERIFIED
    return Verification(Rejection.NO_MATCH)
