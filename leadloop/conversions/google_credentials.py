"""Google service-account credentials: the key file, the signed JWT, the token answer.

A `google` (Data Manager) or `google_ads` destination may name a service-account key file (the
JSON that Google Cloud's console downloads) instead of a static access token. The engine then
gets its own access tokens with the OAuth 2.0 JWT bearer grant (RFC 7523) as Google documents it
for service accounts: a JWT signed with the account's RSA key (RS256) whose claims are

    iss    the account's client_email
    scope  https://www.googleapis.com/auth/datamanager (google) or .../auth/adwords (google_ads)
    aud    the key file's token_uri
    iat    now; exp: now + 1 hour (Google refuses longer-lived assertions)

POSTed as `grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer&assertion=<jwt>` to
`token_uri`. The private key never leaves the process: only the signed JWT goes, and only to
`token_uri`. The answer's `access_token` is used until shortly before its `expires_in`
(`AccessTokens` in `google_tokens` caches it and does the HTTP).

This module reads the file (at playbook validation, so a bad file is a located error before
anything is sent), signs, and reads the token endpoint's answer into a token or a verdict the
sender already knows (`Retry`, `Reject`). It never puts key material into a message.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from leadloop.conversions.decide import Reject, Retry
from leadloop.conversions.model import Platform
from leadloop.outbox.retry_after import retry_after_header

SCOPES: dict[Platform, str] = {
    "google": "https://www.googleapis.com/auth/datamanager",
    "google_ads": "https://www.googleapis.com/auth/adwords",
}
"""The one scope requested per destination type (Data Manager API; Google Ads API)."""
GRANT_TYPE = "urn:ietf:params:oauth:grant-type:jwt-bearer"
ASSERTION_LIFETIME = 3600
"""Seconds between `iat` and `exp`: Google's maximum, one hour."""
REFRESH_MARGIN = 300.0
"""A token is replaced this long before it expires (or at half its life, if that is sooner),
so a request never leaves with a token that runs out on the way."""
_LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})
_REQUIRED = ("client_email", "private_key", "token_uri")
_HINTS = {
    "invalid_grant": (
        "the key may have been deleted or disabled in Google Cloud, the service account removed, "
        "or this machine's clock is off"
    ),
    "invalid_scope": "the scope is not one this account may request",
    "unauthorized_client": "the service account may not use this grant",
    "invalid_client": "the service account is unknown to the token endpoint",
}


class ServiceAccountError(ValueError):
    """The key file cannot be used; the message names the problem, never the key."""


@dataclass(frozen=True, slots=True)
class ServiceAccount:
    path: str
    client_email: str
    token_uri: str
    key_id: str | None = None
    """`private_key_id`: sent as the JWT's `kid` so Google picks the right public key."""
    key: rsa.RSAPrivateKey | None = field(default=None, repr=False, compare=False)
    fingerprint: str = ""
    """SHA-256 of the public key, so a replaced key never reuses the old key's tokens."""

    def cache_key(self, scope: str) -> tuple[str, str, str, str]:
        return (self.token_uri, self.client_email, self.fingerprint, scope)


def load_service_account(path: str) -> ServiceAccount:
    """Read and check a service-account key file; `ServiceAccountError` says what is wrong."""
    try:
        with open(path, "rb") as file:
            raw = file.read()
    except FileNotFoundError:
        raise ServiceAccountError("no such file") from None
    except IsADirectoryError:
        raise ServiceAccountError("is a directory, not a key file") from None
    except OSError as exc:
        raise ServiceAccountError(
            f"cannot be read: {exc.strerror or exc.__class__.__name__}"
        ) from None
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        # The decoder's message quotes no content, but a key file is no place to be chatty.
        raise ServiceAccountError("is not JSON (expected a service-account key file)") from None
    if not isinstance(data, dict):
        raise ServiceAccountError("is not a JSON object (expected a service-account key file)")
    kind = data.get("type")
    if kind != "service_account":
        found = f"type {kind!r}" if isinstance(kind, str) else "no type"
        raise ServiceAccountError(
            f"is not a service-account key ({found}; expected type 'service_account': create a "
            "key for a service account in Google Cloud, not an OAuth client)"
        )
    missing = [name for name in _REQUIRED if not isinstance(data.get(name), str) or not data[name]]
    if missing:
        raise ServiceAccountError(f"has no {', '.join(missing)}")
    token_uri = data["token_uri"]
    _check_token_uri(token_uri)
    key = _private_key(data["private_key"])
    public = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    key_id = data.get("private_key_id")
    return ServiceAccount(
        path=path,
        client_email=data["client_email"],
        token_uri=token_uri,
        key_id=key_id if isinstance(key_id, str) and key_id else None,
        key=key,
        fingerprint=hashlib.sha256(public).hexdigest(),
    )


def resolve_path(path: str, playbook_file: str) -> str:
    """A relative path is relative to the directory of the playbook file that names it, so the
    engine finds the same file whatever directory it was started from."""
    expanded = os.path.expanduser(path)
    if os.path.isabs(expanded):
        return expanded
    return os.path.join(os.path.dirname(playbook_file), expanded)


def _check_token_uri(uri: str) -> None:
    try:
        parts = urlsplit(uri)
        host = parts.hostname or ""
    except ValueError:  # an unclosed `[` of an IPv6 host: urlsplit raises, not returns
        raise ServiceAccountError("token_uri: expected an https:// URL") from None
    loopback = parts.scheme == "http" and host in _LOOPBACK
    if not (parts.scheme == "https" or loopback) or not host:
        # The signed assertion is a bearer credential for an hour: never in clear text.
        raise ServiceAccountError("token_uri: expected an https:// URL")


def _private_key(pem: str) -> rsa.RSAPrivateKey:
    try:
        key = serialization.load_pem_private_key(pem.encode(), password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        # cryptography's messages say nothing of the key, but ours says what to do.
        raise ServiceAccountError(
            "private_key is not a PEM private key without a password "
            "(download a new JSON key for the service account)"
        ) from None
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ServiceAccountError("private_key is not an RSA key (Google signs with RS256)")
    return key


# --- the assertion -------------------------------------------------------------------------------


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _part(value: Mapping[str, Any]) -> str:
    return _b64(json.dumps(value, separators=(",", ":")).encode())


def assertion(account: ServiceAccount, scope: str, now: float) -> str:
    """The signed JWT (RS256) that is exchanged for an access token."""
    if account.key is None:
        raise ServiceAccountError("no private key loaded")
    header: dict[str, str] = {"alg": "RS256", "typ": "JWT"}
    if account.key_id:
        header["kid"] = account.key_id
    issued = int(now)
    claims = {
        "iss": account.client_email,
        "scope": scope,
        "aud": account.token_uri,
        "iat": issued,
        "exp": issued + ASSERTION_LIFETIME,
    }
    signing_input = f"{_part(header)}.{_part(claims)}"
    signature = account.key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
    return f"{signing_input}.{_b64(signature)}"


def token_request(account: ServiceAccount, scope: str, now: float) -> dict[str, str]:
    """The form fields POSTed to `token_uri`."""
    return {"grant_type": GRANT_TYPE, "assertion": assertion(account, scope, now)}


# --- the answer ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Token:
    value: str = field(repr=False)
    refresh_at: float
    """When the token is no longer handed out (shortly before it expires)."""


def read_token_answer(
    account: ServiceAccount,
    status: int,
    headers: Mapping[str, str],
    body: bytes,
    now: float,
    *,
    platform: str,
) -> Token | Retry | Reject:
    """A token, or what the delivery that needed it should do: `Retry` for what passes (5xx,
    429, 408, an unreadable 200), `Reject` for a refusal that resending cannot change
    (`invalid_grant` and the other OAuth errors of a 4xx): its reason says which account and
    endpoint and what to check."""
    decoded = _json(body)
    where = (
        f"{platform}: service account {account.client_email}: token endpoint {account.token_uri}"
    )
    if 200 <= status < 300:
        token = decoded.get("access_token")
        expires_in = decoded.get("expires_in", 3600)
        if not isinstance(token, str) or not token:
            return Retry(reason=f"{where}: HTTP {status} without an access_token")
        if isinstance(expires_in, bool) or not isinstance(expires_in, int | float | str):
            expires_in = 3600
        try:
            lifetime = max(0.0, float(expires_in))
        except ValueError:
            lifetime = 3600.0
        return Token(token, now + lifetime - min(REFRESH_MARGIN, lifetime / 2))
    error = decoded.get("error")
    code = error if isinstance(error, str) else ""
    description = decoded.get("error_description")
    detail = f"{code}: {description}" if code and isinstance(description, str) else code
    reason = f"{where}: HTTP {status} {detail}".rstrip()
    if status in (408, 429) or status >= 500:
        return Retry(reason=reason, retry_after=retry_after_header(headers, now))
    hint = _HINTS.get(code)
    return Reject(reason=f"{reason} ({hint})" if hint else reason)


def _json(body: bytes) -> dict[str, Any]:
    try:
        decoded = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return {}
    return decoded if isinstance(decoded, dict) else {}
