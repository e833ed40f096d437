"""Signed tracking tokens for opens, clicks and unsubscribes; and what an open looks like. Pure.

A token is `base64url(msgspec JSON [kind, workspace, message id, url?])` + `.` +
`base64url(HMAC-SHA256(key, kind-tagged payload))[:22]` (128 bits). The click token carries its
target URL inside the signed payload, so the redirect goes only where the message pointed: a
changed URL, a token from another key, or a token of another kind (an open token used as a click)
fails verification and the endpoint answers 400, never a redirect (no open redirect).

Tokens do not expire: an email can be opened or unsubscribed from years later (RFC 8058 asks
that the one-click link keep working), and they grant nothing beyond recording that hit.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from dataclasses import dataclass
from typing import Literal
from urllib.parse import urlsplit

import msgspec

Kind = Literal["o", "c", "u"]
"""o: open pixel, c: click redirect, u: unsubscribe."""

_SIG_CHARS = 22
_MAX_TOKEN = 4096
_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(list[str])

AUTOMATED_WINDOW = 10.0
"""Seconds after the send within which an open is taken as a machine (a scanner or a proxy
prefetching images), not a person."""

PRIVACY_PROXIES = (
    "googleimageproxy",  # Gmail: "... (via ggpht.com GoogleImageProxy)"
    "ggpht.com",
    "yahoomailproxy",  # Yahoo Mail image proxy
    "outlook-ios",  # Outlook's image prefetch on iOS
)
"""User-agent fragments (lower case) of image proxies that fetch pixels for the reader."""
APPLE_MPP_AGENT = "mozilla/5.0"
"""Apple Mail Privacy Protection prefetches with a bare `Mozilla/5.0` agent and nothing else."""


@dataclass(frozen=True, slots=True)
class Token:
    kind: Kind
    workspace: str
    message_id: str
    url: str = ""


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _mac(key: bytes, kind: str, payload: str) -> str:
    digest = hmac.new(key, f"leadloop-track:{kind}:{payload}".encode(), hashlib.sha256).digest()
    return _b64(digest)[:_SIG_CHARS]


def is_trackable_url(url: str) -> bool:
    """Only absolute http(s) links are rewritten (not mailto:, tel:, anchors or templates)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.netloc)


def sign(key: bytes, token: Token) -> str:
    if token.kind == "c" and not is_trackable_url(token.url):
        raise ValueError("click tokens are made only for absolute http(s) URLs")
    fields = [token.kind, token.workspace, token.message_id]
    if token.kind == "c":
        fields.append(token.url)
    payload = _b64(_encoder.encode(fields))
    return f"{payload}.{_mac(key, token.kind, payload)}"


def verify(keys: bytes | tuple[bytes, ...], text: str, kind: Kind) -> Token | None:
    """The token if it was signed by one of `keys` for `kind`; None for anything else."""
    if len(text) > _MAX_TOKEN:
        return None
    payload, dot, given = text.partition(".")
    if not dot or len(given) != _SIG_CHARS:
        return None
    candidates = keys if isinstance(keys, tuple) else (keys,)
    if not any(hmac.compare_digest(_mac(k, kind, payload), given) for k in candidates):
        return None
    try:
        fields = _decoder.decode(_unb64(payload))
    except (binascii.Error, ValueError, msgspec.DecodeError):
        return None
    if len(fields) not in (3, 4) or fields[0] != kind:
        return None
    url = fields[3] if len(fields) == 4 else ""
    if kind == "c" and not is_trackable_url(url):
        return None
    return Token(kind, fields[1], fields[2], url)


def is_automated_open(
    user_agent: str | None, opened_at: float, sent_at: float | None
) -> tuple[bool, str]:
    """Whether an open looks like a machine, and why (`""` when it looks human)."""
    agent = (user_agent or "").strip().lower()
    if any(fragment in agent for fragment in PRIVACY_PROXIES):
        return True, "image proxy"
    if agent == APPLE_MPP_AGENT:
        return True, "apple mail privacy protection"
    if sent_at is not None and 0 <= opened_at - sent_at < AUTOMATED_WINDOW:
        return True, f"within {AUTOMATED_WINDOW:g}s of sending"
    return False, ""
