"""Standard Webhooks signatures: `v1,` + base64(HMAC-SHA256(key, "{id}.{timestamp}.{body}")),
where the key is the base64-decoded part of a `whsec_` secret. Several secrets (a rotation)
give several space-separated entries."""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Mapping, Sequence


def secret_key(secret: str | bytes) -> bytes:
    if isinstance(secret, bytes):
        return secret
    encoded = secret.removeprefix("whsec_")
    return base64.b64decode(encoded + "=" * (-len(encoded) % 4))


def signature(secret: str | bytes, msg_id: str, timestamp: int, body: bytes) -> str:
    signed = f"{msg_id}.{timestamp}.".encode() + body
    mac = hmac.new(secret_key(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(mac).decode()


def sign_webhook(
    secret: str | bytes | Sequence[str | bytes], msg_id: str, timestamp: int, body: bytes
) -> dict[str, str]:
    secrets = [secret] if isinstance(secret, str | bytes) else list(secret)
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": " ".join(signature(s, msg_id, timestamp, body) for s in secrets),
    }


def verify_webhook(
    secrets: Sequence[str | bytes],
    headers: Mapping[str, str],
    body: bytes,
    now: float,
    tolerance: float = 300.0,
) -> bool:
    lower = {k.lower(): v for k, v in headers.items()}
    msg_id = lower.get("webhook-id")
    stamp = lower.get("webhook-timestamp")
    given = lower.get("webhook-signature")
    if not msg_id or not stamp or not given or not stamp.isdigit():
        return False
    timestamp = int(stamp)
    if abs(now - timestamp) > tolerance:
        return False
    offered = [entry for entry in given.split(" ") if entry.startswith("v1,")]
    for secret in secrets:
        expected = signature(secret, msg_id, timestamp, body)
        if any(hmac.compare_digest(expected, entry) for entry in offered):
            return True
    return False
