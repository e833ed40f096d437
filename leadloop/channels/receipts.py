"""Receipt webhooks: signature checks and parsing, pure (the caller passes bytes and `now`).

* Meta (WhatsApp Cloud API and Instagram messaging) signs the raw body:
  `X-Hub-Signature-256: sha256=<hex HMAC-SHA256(app secret, body)>` (Meta "Webhooks: Getting
  Started", "Validating payloads").
* Twilio signs the full URL it called followed by every POST parameter, sorted by name, each
  as name + value: `X-Twilio-Signature: base64(HMAC-SHA1(auth token, url + k1v1k2v2...))`
  (Twilio "Webhooks security").
* Email providers post Standard Webhooks (`leadloop.outbox.signing.verify_webhook`).

Anything unreadable is skipped rather than failing the whole delivery: a provider re-sending a
batch because one entry is odd would re-send it forever.
"""

from __future__ import annotations

import base64
import calendar
import hashlib
import hmac
import re
from collections.abc import Iterable, Mapping
from dataclasses import astuple
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

from leadloop.channels.email import address_of
from leadloop.channels.model import Inbound, Receipt, ReceiptStatus

_META_PREFIX = "sha256="
_Parsed = TypeVar("_Parsed", Receipt, Inbound)


def verify_meta_signature(app_secrets: Iterable[str], header: str | None, body: bytes) -> bool:
    if not header or not header.startswith(_META_PREFIX):
        return False
    given = header[len(_META_PREFIX) :].strip().lower()
    for secret in app_secrets:
        if not secret:
            continue
        expected = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
        if hmac.compare_digest(expected, given):
            return True
    return False


def twilio_signature(auth_token: str, url: str, params: Iterable[tuple[str, str]]) -> str:
    data = url + "".join(k + v for k, v in sorted(params))
    mac = hmac.new(auth_token.encode(), data.encode(), hashlib.sha1).digest()
    return base64.b64encode(mac).decode("ascii")


def _url_variants(url: str) -> list[str]:
    """Twilio's own validators try the URL with and without the default port."""
    parts = urlsplit(url)
    variants = [url]
    default = {"https": 443, "http": 80}.get(parts.scheme)
    host = parts.hostname or ""
    if parts.port is None and default is not None:
        variants.append(urlunsplit(parts._replace(netloc=f"{parts.netloc}:{default}")))
    elif parts.port == default:
        variants.append(urlunsplit(parts._replace(netloc=host)))
    return variants


def verify_twilio_signature(
    auth_tokens: Iterable[str],
    header: str | None,
    urls: Iterable[str],
    params: Iterable[tuple[str, str]],
) -> bool:
    if not header:
        return False
    pairs = list(params)
    for token in auth_tokens:
        if not token:
            continue
        for url in urls:
            for variant in _url_variants(url):
                if hmac.compare_digest(twilio_signature(token, variant, pairs), header.strip()):
                    return True
    return False


def storable(items: Iterable[_Parsed | None]) -> list[_Parsed]:
    """The receipts or inbound messages with no NUL in any text. No stored id or address has
    one (PostgreSQL text cannot hold it), and looking one up failed the whole delivery, which
    the provider then re-sent forever."""
    return [
        item
        for item in items
        if item is not None and not any(isinstance(v, str) and "\x00" in v for v in astuple(item))
    ]


# --- Meta -----------------------------------------------------------------------------------

_WA_STATUS: dict[str, ReceiptStatus] = {
    "sent": "sent",
    "delivered": "delivered",
    "read": "read",
    "failed": "failed",
}


def _seconds(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value) / 1000.0 if value > 10**11 else float(value)
    # ASCII: `isdigit` is also true of "²", on which `int` raises (the delivery was a 500).
    if isinstance(value, str) and value.isascii() and value.isdigit():
        return _seconds(int(value))
    return None


def _error_text(errors: Any) -> str:
    if not isinstance(errors, list) or not errors or not isinstance(errors[0], dict):
        return ""
    first = errors[0]
    details = (
        first.get("error_data", {}).get("details")
        if isinstance(first.get("error_data"), dict)
        else None
    )
    text = str(first.get("message") or first.get("title") or "")
    code = first.get("code")
    out = f"{code}: {text}" if code is not None else text
    return f"{out} ({details})" if details else out


def parse_meta(payload: Any) -> tuple[list[Receipt], list[Inbound]]:
    """WhatsApp `statuses` / `messages` changes, and Instagram `messaging` read, delivery and
    message entries."""
    receipts: list[Receipt] = []
    inbound: list[Inbound] = []
    if not isinstance(payload, dict):
        return receipts, inbound
    kind = payload.get("object")
    for entry in payload.get("entry") or []:
        if not isinstance(entry, dict):
            continue
        if kind == "whatsapp_business_account":
            for change in entry.get("changes") or []:
                value = change.get("value") if isinstance(change, dict) else None
                if isinstance(value, dict):
                    _whatsapp(value, receipts, inbound)
        elif kind in ("instagram", "page"):
            account = str(entry.get("id", ""))
            for item in entry.get("messaging") or []:
                if isinstance(item, dict):
                    _instagram(item, account, receipts, inbound)
    return receipts, inbound


def _whatsapp(value: dict[str, Any], receipts: list[Receipt], inbound: list[Inbound]) -> None:
    metadata = value.get("metadata")
    account = str(metadata.get("phone_number_id", "")) if isinstance(metadata, dict) else ""
    for status in value.get("statuses") or []:
        if not isinstance(status, dict):
            continue
        mapped = _WA_STATUS.get(str(status.get("status")))
        provider_id = status.get("id")
        if mapped is None or not isinstance(provider_id, str) or not provider_id:
            continue
        receipts.append(
            Receipt(
                channel="whatsapp",
                provider_id=provider_id,
                status=mapped,
                at=_seconds(status.get("timestamp")),
                reason=_error_text(status.get("errors")),
                recipient=str(status.get("recipient_id", "")),
                reference=str(status.get("biz_opaque_callback_data") or ""),
            )
        )
    for message in value.get("messages") or []:
        if isinstance(message, dict) and isinstance(message.get("from"), str):
            at = _seconds(message.get("timestamp"))
            if at is not None:
                inbound.append(Inbound("whatsapp", "+" + message["from"].lstrip("+"), account, at))


def _instagram(
    item: dict[str, Any], account: str, receipts: list[Receipt], inbound: list[Inbound]
) -> None:
    at = _seconds(item.get("timestamp"))
    sender = item.get("sender", {}).get("id") if isinstance(item.get("sender"), dict) else None
    read = item.get("read")
    if isinstance(read, dict) and isinstance(read.get("mid"), str):
        receipts.append(Receipt("instagram", read["mid"], "read", at, recipient=str(sender or "")))
    delivery = item.get("delivery")
    if isinstance(delivery, dict):
        for mid in delivery.get("mids") or []:
            if isinstance(mid, str):
                receipts.append(Receipt("instagram", mid, "delivered", at))
    message = item.get("message")
    is_inbound = isinstance(message, dict) and not message.get("is_echo")
    if is_inbound and isinstance(sender, str) and at is not None:
        inbound.append(Inbound("instagram", sender, account, at))


# --- Twilio ---------------------------------------------------------------------------------

_TWILIO_STATUS: dict[str, ReceiptStatus] = {
    "sent": "sent",
    "delivered": "delivered",
    "read": "read",
    "undelivered": "failed",
    "failed": "failed",
}


def parse_twilio(params: Mapping[str, str], now: float, reference: str = "") -> Receipt | None:
    """A status callback (`MessageSid`, `MessageStatus`, `ErrorCode`); None for other states
    (queued, sending, accepted) and for inbound messages. `reference`: the callback URL's
    `ref`, which names the message."""
    sid = params.get("MessageSid") or params.get("SmsSid") or ""
    mapped = _TWILIO_STATUS.get(params.get("MessageStatus") or params.get("SmsStatus") or "")
    if not sid or mapped is None:
        return None
    code = params.get("ErrorCode") or ""
    reason = ""
    if mapped == "failed":
        reason = f"{params.get('MessageStatus')}"
        if code:
            reason += f" (Twilio error {code}{': ' + params['ErrorMessage'] if params.get('ErrorMessage') else ''})"
    return Receipt(
        "sms", sid, mapped, now, reason=reason, recipient=params.get("To", ""), reference=reference
    )


# --- email providers --------------------------------------------------------------------------

_EMAIL_TYPES: dict[str, ReceiptStatus] = {
    "bounce": "bounced",
    "bounced": "bounced",
    "email.bounced": "bounced",
    "complaint": "complained",
    "complained": "complained",
    "spamreport": "complained",
    "spam_report": "complained",
    "email.complained": "complained",
    "delivered": "delivered",
    "delivery": "delivered",
    "email.delivered": "delivered",
}
_ISO = re.compile(r"^(\d{4})-(\d{2})-(\d{2})[T ](\d{2}):(\d{2}):(\d{2})", re.ASCII)


def _iso_seconds(value: Any) -> float | None:
    if not isinstance(value, str) or not (m := _ISO.match(value)):
        return _seconds(value)
    y, mo, d, hh, mm, ss = (int(g) for g in m.groups())
    # The shape is no date: year 0 or month 13 raised out of `timegm` (the notice was a 500).
    if y < 1 or not (1 <= mo <= 12 and 1 <= d <= 31 and hh <= 23 and mm <= 59 and ss <= 60):
        return None
    return float(calendar.timegm((y, mo, d, hh, mm, ss, 0, 0, 0)))


def _first_address(value: Any) -> str:
    """In the message records' form (`address_of`): providers name the address as it went on
    the wire, its domain in punycode."""
    if isinstance(value, list) and value:
        value = value[0]
    return address_of(value) if isinstance(value, str) and value.strip() else ""


def _header_value(headers: Any, name: str) -> str:
    if isinstance(headers, dict):
        for key, value in headers.items():
            if key.lower() == name and isinstance(value, str):
                return value
    if isinstance(headers, list):
        for item in headers:
            if isinstance(item, dict) and str(item.get("name", "")).lower() == name:
                return str(item.get("value", ""))
    return ""


def parse_email_webhook(payload: Any) -> list[Receipt]:
    """Bounce, complaint and delivery notices: our generic shape
    `{"type": "bounce", "email": ..., "message_id": ..., "reason": ..., "permanent": true}`
    or Resend's (`{"type": "email.bounced", "created_at", "data": {"to": [...], "headers",
    "bounce": {"type": "Permanent", "message"}}}`), one object or a list of them."""
    items = payload if isinstance(payload, list) else [payload]
    out: list[Receipt] = []
    for item in items:
        if not isinstance(item, dict):
            continue
        status = _EMAIL_TYPES.get(str(item.get("type") or item.get("event") or "").lower())
        if status is None:
            continue
        data = item.get("data") if isinstance(item.get("data"), dict) else item
        assert isinstance(data, dict)
        recipient = _first_address(data.get("email") or data.get("to") or data.get("recipient"))
        message_id = (
            data.get("message_id")
            or _header_value(data.get("headers"), "x-leadloop-message-id")
            or _header_value(data.get("headers"), "message-id")
            or ""
        )
        bounce = data.get("bounce") if isinstance(data.get("bounce"), dict) else {}
        assert isinstance(bounce, dict)
        permanent = data.get("permanent")
        if permanent is None:
            permanent = str(bounce.get("type", "permanent")).lower() not in ("transient", "soft")
        reason = str(data.get("reason") or bounce.get("message") or bounce.get("subType") or status)
        if not recipient and not message_id:
            continue
        out.append(
            Receipt(
                channel="email",
                provider_id=str(message_id),
                status=status,
                at=_iso_seconds(item.get("created_at") or data.get("timestamp")),
                reason=reason,
                recipient=recipient,
                permanent=bool(permanent),
            )
        )
    return out
