"""Receipt parsing and signatures (Meta, Twilio, email providers, DSN mail)."""

from __future__ import annotations

import base64
import hashlib
import hmac

from leadloop.channels.dsn import parse_dsn
from leadloop.channels.model import MAX_REASON_CHARS
from leadloop.channels.receipts import (
    parse_email_webhook,
    parse_meta,
    parse_twilio,
    twilio_signature,
    verify_meta_signature,
    verify_twilio_signature,
)


def test_meta_signature() -> None:
    body = b'{"object":"instagram"}'
    good = "sha256=" + hmac.new(b"s3cret", body, hashlib.sha256).hexdigest()
    assert verify_meta_signature(["s3cret"], good, body)
    assert not verify_meta_signature(["other"], good, body)
    assert not verify_meta_signature(["s3cret"], good, body + b" ")
    assert not verify_meta_signature(["s3cret"], None, body)
    assert not verify_meta_signature([""], "sha256=", body)


def test_twilio_signature_follows_the_documented_recipe() -> None:
    # Twilio "Webhooks security": the full URL, then each POST parameter sorted by name, name
    # and value appended with no delimiter; HMAC-SHA1 with the auth token; base64.
    url = "https://mycompany.com/myapp.php?foo=1&bar=2"
    params = {"To": "+18005551212", "CallSid": "CA1234567890ABCDE", "Digits": "1234"}
    data = url + "CallSidCA1234567890ABCDE" + "Digits1234" + "To+18005551212"
    expected = base64.b64encode(hmac.new(b"12345", data.encode(), hashlib.sha1).digest()).decode()
    assert twilio_signature("12345", url, params.items()) == expected
    assert verify_twilio_signature(["12345"], expected, [url], params.items())
    # Twilio's validators also accept the URL with the default port spelled out.
    assert verify_twilio_signature(
        ["12345"], expected, ["https://mycompany.com:443/myapp.php?foo=1&bar=2"], params.items()
    )
    assert not verify_twilio_signature(["12345"], expected, [url + "&x=1"], params.items())
    assert not verify_twilio_signature(["nope"], expected, [url], params.items())
    assert not verify_twilio_signature(["12345"], None, [url], params.items())


def test_meta_whatsapp_statuses_and_inbound() -> None:
    receipts, inbound = parse_meta(
        {
            "object": "whatsapp_business_account",
            "entry": [
                {
                    "changes": [
                        {
                            "value": {
                                "metadata": {"phone_number_id": "1111"},
                                "statuses": [
                                    {"id": "wamid.1", "status": "read", "timestamp": "1700000000"},
                                    {
                                        "id": "wamid.2",
                                        "status": "failed",
                                        "errors": [
                                            {"code": 131026, "title": "Message undeliverable"}
                                        ],
                                    },
                                    {"id": "wamid.3", "status": "weird"},
                                    "garbage",
                                ],
                                "messages": [{"from": "4479", "timestamp": "1700000001"}],
                            }
                        }
                    ]
                }
            ],
        }
    )
    assert [(r.provider_id, r.status) for r in receipts] == [
        ("wamid.1", "read"),
        ("wamid.2", "failed"),
    ]
    assert receipts[0].at == 1_700_000_000.0
    assert receipts[1].reason == "131026: Message undeliverable"
    assert [(i.sender, i.account) for i in inbound] == [("+4479", "1111")]


def test_meta_instagram_read_and_delivery() -> None:
    receipts, inbound = parse_meta(
        {
            "object": "instagram",
            "entry": [
                {
                    "id": "IG",
                    "messaging": [
                        {"sender": {"id": "U"}, "timestamp": 1700000000000, "read": {"mid": "m1"}},
                        {"delivery": {"mids": ["m2"]}, "timestamp": 1700000000000},
                        {
                            "sender": {"id": "U"},
                            "timestamp": 1700000000000,
                            "message": {"mid": "x"},
                        },
                    ],
                }
            ],
        }
    )
    assert [(r.provider_id, r.status) for r in receipts] == [("m1", "read"), ("m2", "delivered")]
    assert receipts[0].at == 1_700_000_000.0
    assert [(i.channel, i.sender) for i in inbound] == [("instagram", "U")]


def test_twilio_callbacks() -> None:
    assert parse_twilio({"MessageSid": "SM1", "MessageStatus": "queued"}, 1.0) is None
    done = parse_twilio({"MessageSid": "SM1", "MessageStatus": "delivered"}, 1.0)
    assert done is not None and done.status == "delivered"
    failed = parse_twilio(
        {"MessageSid": "SM1", "MessageStatus": "undelivered", "ErrorCode": "30003"}, 1.0
    )
    assert failed is not None and failed.status == "failed" and "30003" in failed.reason


def test_email_webhooks_generic_and_resend_shapes() -> None:
    found = parse_email_webhook(
        [
            {"type": "bounce", "email": "A@x.test", "reason": "550", "permanent": True},
            {
                "type": "email.bounced",
                "created_at": "2026-01-02T03:04:05.000Z",
                "data": {"to": ["b@x.test"], "bounce": {"type": "Transient", "message": "full"}},
            },
            {"type": "email.complained", "data": {"to": ["c@x.test"]}},
            {"type": "email.opened", "data": {"to": ["d@x.test"]}},
        ]
    )
    assert [(r.recipient, r.status, r.permanent) for r in found] == [
        ("a@x.test", "bounced", True),
        ("b@x.test", "bounced", False),
        ("c@x.test", "complained", True),
    ]


ARF = b"""From: abuse@mailbox.example
To: fbl@acme.test
Subject: complaint
MIME-Version: 1.0
Content-Type: multipart/report; report-type=feedback-report; boundary="B"

--B
Content-Type: text/plain

This is an abuse report.
--B
Content-Type: message/feedback-report

Feedback-Type: abuse
User-Agent: FBL/1.0
Version: 1
Original-Rcpt-To: <eve@example.com>

--B
Content-Type: text/rfc822-headers

Message-ID: <abc@acme.test>
X-Leadloop-Message-Id: m-9

--B--
"""


def test_dsn_complaint_and_not_a_report() -> None:
    found = parse_dsn(ARF)
    assert [(r.status, r.recipient, r.provider_id) for r in found] == [
        ("complained", "eve@example.com", "m-9")
    ]
    assert parse_dsn(b"Subject: hello\n\nplain mail\n") == []


def test_dsn_soft_bounce_is_not_permanent() -> None:
    raw = ARF.replace(b"report-type=feedback-report", b"report-type=delivery-status").replace(
        b"Content-Type: message/feedback-report\n\nFeedback-Type: abuse\nUser-Agent: FBL/1.0\n"
        b"Version: 1\nOriginal-Rcpt-To: <eve@example.com>\n",
        b"Content-Type: message/delivery-status\n\nReporting-MTA: dns; mx\n\n"
        b"Final-Recipient: rfc822; eve@example.com\nAction: delayed\nStatus: 4.2.2\n",
    )
    found = parse_dsn(raw)
    assert [(r.status, r.permanent, r.reason) for r in found] == [("bounced", False, "4.2.2")]


def test_a_provider_reason_is_stored_bounded() -> None:
    """A failure text of any length (signed, so accepted) is cut before it is stored."""
    long = "x" * 100_000
    receipt = parse_twilio(
        {
            "MessageSid": "SM1",
            "MessageStatus": "failed",
            "ErrorCode": "30003",
            "ErrorMessage": long,
        },
        1.0,
    )
    assert receipt is not None and receipt.status == "failed"
    assert len(receipt.reason) == MAX_REASON_CHARS
    assert (
        receipt.reason.startswith("failed (Twilio error 30003: xxx") and receipt.reason[-1] == "…"
    )
    short = parse_twilio({"MessageSid": "SM2", "MessageStatus": "failed", "ErrorCode": "1"}, 1.0)
    assert short is not None and short.reason == "failed (Twilio error 1)"


def test_a_receipts_recipient_is_in_the_identity_graphs_form() -> None:
    # Providers and DSNs name the recipient as it went on the wire: its domain in punycode.
    webhook = parse_email_webhook(
        [
            {"type": "bounce", "email": "Ada@XN--BCHER-KVA.example."},
            {"type": "email.complained", "data": {"to": ["ada@bu\u0308cher.example"]}},
        ]
    )
    assert [r.recipient for r in webhook] == ["ada@bücher.example"] * 2
    arf = parse_dsn(ARF.replace(b"<eve@example.com>", b"<Eve@XN--BCHER-KVA.example>"))
    assert [r.recipient for r in arf] == ["eve@bücher.example"]
    dsn = ARF.replace(b"report-type=feedback-report", b"report-type=delivery-status").replace(
        b"Content-Type: message/feedback-report\n\nFeedback-Type: abuse\nUser-Agent: FBL/1.0\n"
        b"Version: 1\nOriginal-Rcpt-To: <eve@example.com>\n",
        b"Content-Type: message/delivery-status\n\nReporting-MTA: dns; mx\n\n"
        b"Final-Recipient: rfc822; eve@xn--bcher-kva.example\nAction: failed\nStatus: 5.1.1\n",
    )
    assert [r.recipient for r in parse_dsn(dsn)] == ["eve@bücher.example"]
