"""Bounce mail: delivery status notifications (RFC 3464) and abuse reports (RFC 5965). Pure.

A DSN is `multipart/report; report-type=delivery-status` with a `message/delivery-status` part:
one block of per-message fields, then one block per recipient (`Final-Recipient`, `Action`,
`Status`, `Diagnostic-Code`). `Action: failed` with a `5.x.x` status is a hard bounce and
suppresses the address; `4.x.x` or `Action: delayed` is soft and only recorded. The returned
message's headers (a `text/rfc822-headers` or `message/rfc822` part) carry our `Message-ID` and
`X-Leadloop-Message-Id`, which tie the bounce to the send.

An ARF complaint (`report-type=feedback-report`) suppresses the original recipient.
"""

from __future__ import annotations

import email.parser
import email.policy
from email.message import EmailMessage, Message

from leadloop.channels.email import address_of
from leadloop.channels.model import Receipt

_parser = email.parser.BytesParser(policy=email.policy.default)


def _fields(block: str) -> dict[str, str]:
    out: dict[str, str] = {}
    last = ""
    for line in block.splitlines():
        if line[:1] in (" ", "\t") and last:
            out[last] += " " + line.strip()
            continue
        name, colon, value = line.partition(":")
        if colon:
            last = name.strip().lower()
            out[last] = value.strip()
    return out


def _blocks(part: Message) -> list[dict[str, str]]:
    """The field blocks of a `message/delivery-status` (or feedback-report) part."""
    payload = part.get_payload()
    if isinstance(payload, list):  # the email package parses each block as a Message
        return [
            {k.lower(): str(v) for k, v in block.items()}
            for block in payload
            if isinstance(block, Message)
        ]
    raw = part.get_payload(decode=True)
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(payload)
    return [_fields(b) for b in text.replace("\r\n", "\n").split("\n\n") if b.strip()]


def _address(value: str) -> str:
    # "rfc822; alice@example.com" → alice@example.com, in the message records' form: a DSN
    # names the address as it went on the wire, its domain in punycode.
    _, _, address = value.rpartition(";")
    address = address.strip().strip("<>")
    return address_of(address) if address.strip() else ""


def _original_headers(report: Message) -> tuple[str, str]:
    for part in report.walk():
        ctype = part.get_content_type()
        if ctype in ("text/rfc822-headers", "message/rfc822", "message/rfc822-headers"):
            payload = part.get_payload()
            inner: Message
            if ctype == "message/rfc822" and isinstance(payload, list) and payload:
                first = payload[0]
                assert isinstance(first, Message)
                inner = first
            else:
                raw = part.get_payload(decode=True)
                data = raw if isinstance(raw, bytes) else str(part.get_payload()).encode()
                inner = _parser.parsebytes(data, headersonly=True)
            ours = str(inner.get("X-Leadloop-Message-Id", "") or "")
            return ours.strip(), str(inner.get("Message-ID", "") or "").strip()
    return "", ""


def parse_dsn(raw: bytes) -> list[Receipt]:
    """The bounces and complaints in one report mail; [] when it is not a report."""
    message = _parser.parsebytes(raw)
    if not isinstance(message, EmailMessage) or message.get_content_type() != "multipart/report":
        return []
    report_type = str(message.get_param("report-type", "") or "").lower()
    ours, message_header = _original_headers(message)
    provider_id = ours or message_header
    out: list[Receipt] = []
    for part in message.walk():
        ctype = part.get_content_type()
        if report_type == "delivery-status" and ctype in (
            "message/delivery-status",
            "message/global-delivery-status",
        ):
            for block in _blocks(part)[1:] or _blocks(part):
                recipient = _address(
                    block.get("final-recipient") or block.get("original-recipient", "")
                )
                action = block.get("action", "").lower()
                status = block.get("status", "").split(" ")[0]
                if not recipient or action not in ("failed", "delayed"):
                    continue
                permanent = action == "failed" and status.startswith("5")
                diagnostic = block.get("diagnostic-code", "")
                reason = f"{status} {diagnostic}".strip() or action
                out.append(
                    Receipt("email", provider_id, "bounced", None, reason, recipient, permanent)
                )
        elif report_type == "feedback-report" and ctype == "message/feedback-report":
            fields: dict[str, str] = {}
            for block in _blocks(part):
                fields.update(block)
            recipient = _address(fields.get("original-rcpt-to", ""))
            feedback = fields.get("feedback-type", "abuse")
            out.append(
                Receipt(
                    "email", provider_id, "complained", None, f"complaint: {feedback}", recipient
                )
            )
    return out
