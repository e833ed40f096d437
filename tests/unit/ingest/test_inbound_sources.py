"""Stripe events as Segment messages: pure (signed with a hand-written HMAC where the whole\ndelivery is read)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json

import pytest

from leadloop.ingest.model import Delivery, Rejected
from leadloop.ingest.sources import major_units, order_completed, read_delivery
from leadloop.outbox.signing import sign_webhook
from leadloop.playbook.model import InboundSource

SECRET = "whsec_test_unit_stripe"


@pytest.mark.parametrize(
    ("amount", "currency", "expected"),
    [
        (4250, "eur", 42.5),
        (4250, "USD", 42.5),
        (5000, "jpy", 5000.0),
        (12345, "krw", 12345.0),
        (500, "isk", 5.0),  # sent with two decimals for backwards compatibility
        (5120, "kwd", 5.12),
        (0, "gbp", 0.0),
    ],
)
def test_major_units(amount: int, currency: str, expected: float) -> None:
    assert major_units(amount, currency) == pytest.approx(expected)


def session(**fields: object) -> dict[str, object]:
    return {"id": "cs_1", "amount_total": 1999, "currency": "usd", **fields}


def test_order_completed_from_email() -> None:
    message = order_completed("evt_1", 1714564800, session(customer_details={"email": "a@x.io"}))
    assert message is not None
    assert message["messageId"] == "stripe-evt_1"
    assert message["event"] == "Order Completed"
    assert message["context"]["traits"] == {"email": "a@x.io"}
    assert message["anonymousId"] == "stripe:cs_1" and "userId" not in message
    assert message["properties"] == {
        "order_id": "cs_1",
        "revenue": 19.99,
        "value": 19.99,
        "currency": "USD",
    }
    assert message["timestamp"] == "2024-05-01T12:00:00+00:00"


def test_client_reference_id_is_the_user_id_and_the_customer_anchors_anonymous_ids() -> None:
    with_ref = order_completed("e", None, session(client_reference_id="u-7"))
    assert with_ref is not None and with_ref["userId"] == "u-7" and "anonymousId" not in with_ref
    by_customer = order_completed(
        "e", None, session(customer="cus_9", customer_details={"email": "a@x.io"})
    )
    assert by_customer is not None and by_customer["anonymousId"] == "stripe:cus_9"


def test_a_session_naming_no_one_gives_no_message() -> None:
    assert order_completed("e", None, session(customer_details={"email": None})) is None


def deliver_stripe(body: str, now: int = 1_800_000_000) -> Delivery | Rejected:
    """`body` signed as Stripe signs it, read by a `stripe` source."""
    mac = hmac.new(SECRET.encode(), f"{now}.{body}".encode(), hashlib.sha256).hexdigest()
    source = InboundSource(id="shop", kind="stripe", secret=SECRET, enabled=True)
    return read_delivery(source, {"Stripe-Signature": f"t={now},v1={mac}"}, body.encode(), now)


@pytest.mark.parametrize("created", [253402300800, 10**12, 2**63])
def test_a_created_time_no_date_holds_is_a_400_not_a_traceback(created: int) -> None:
    # `datetime.fromtimestamp` raised ValueError (OverflowError past time_t) out of the hook:
    # a 500 for a signed delivery, retried by Stripe for days. HubSpot's `occurredAt` is a 400.
    body = json.dumps(
        {
            "id": "evt_1",
            "type": "checkout.session.completed",
            "created": created,
            "data": {"object": session(customer_details={"email": "a@x.io"})},
        }
    )
    out = deliver_stripe(body)
    assert isinstance(out, Rejected), out
    assert out.status == 400 and out.code == "invalid_timestamp" and "created" in out.message


@pytest.mark.parametrize(
    ("amount", "currency"), [(10**400, "usd"), (10**400, "jpy"), (10**16, "usd")]
)
def test_an_amount_no_currency_has_is_a_400_not_a_traceback(amount: int, currency: str) -> None:
    # A JSON integer of 400 digits: dividing it into major units raised OverflowError out of
    # the hook (a 500, retried for days); 17 digits are past what a double holds exactly.
    body = json.dumps(
        {
            "id": "evt_1",
            "type": "checkout.session.completed",
            "data": {
                "object": session(
                    amount_total=amount, currency=currency, customer_details={"email": "a@x.io"}
                )
            },
        }
    )
    out = deliver_stripe(body)
    assert isinstance(out, Rejected), out
    assert out.status == 400 and out.code == "invalid_field" and "amount_total" in out.message


def test_svix_headers_give_each_delivery_its_own_message_ids() -> None:
    # svix-id/-timestamp/-signature verified, but the ids came from `webhook-id` alone: every
    # svix delivery without messageIds got `hook-crm-`, and all but the first were dropped by
    # the log as repeats, answered 200.
    secret = "whsec_" + base64.b64encode(b"k" * 32).decode()
    source = InboundSource(id="crm", kind="standard", secret=secret, enabled=True)
    ids = []
    for delivery in ("msg_a", "msg_b"):
        body = json.dumps({"type": "track", "userId": "u", "event": "Deal Won"}).encode()
        signed = sign_webhook(secret, delivery, 1_800_000_000, body)
        headers = {k.replace("webhook-", "svix-"): v for k, v in signed.items()}
        out = read_delivery(source, headers, body, 1_800_000_000)
        assert not isinstance(out, Rejected), out
        ids += [m.message_id for m in out.messages]
    assert ids == ["hook-crm-msg_a", "hook-crm-msg_b"]
