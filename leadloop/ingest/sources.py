"""Signed webhooks from the playbook's `sources:` into log rows: pure functions of the request
and `now`, like `parse`.

A source's delivery is verified on its raw bytes first, then parsed and validated exactly as the
tracking API parses a request (`parse.parse_request`), so the same limits and refusals apply,
and one more: a key repeated in one object (`ingest.repeated`).

Message ids make a provider's retry of a delivery harmless (the log drops a message id it
already holds for the workspace):

* `standard`: a message without its own `messageId` gets `hook-{source}-{webhook-id}`, and the
  i-th message of a batch `hook-{source}-{webhook-id}-{i}`. The webhook-id is the same on every
  retry; the source id keeps two senders that number their deliveries alike apart.
* `stripe`: `stripe-{event id}`; Stripe resends the same event object on a retry.
* `hubspot`: `hubspot-{portalId}-{subscriptionId}-{eventId}` (see `ingest.hubspot`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, TypeGuard, assert_never

import msgspec

from leadloop.ingest import parse
from leadloop.ingest.hubspot import read_hubspot
from leadloop.ingest.model import Delivery, Rejected
from leadloop.ingest.repeated import decode_signed
from leadloop.ingest.webhooks_verify import (
    Rejection,
    Verification,
    verify_hubspot,
    verify_standard_webhook,
    verify_stripe,
)
from leadloop.playbook.model import InboundSource

STRIPE_TOLERANCE = 300.0
_MAX_DELIVERY_ID = 256

# https://docs.stripe.com/currencies: amounts are in the currency's minor unit. These are given
# in whole units; BHD, JOD, KWD, OMR and TND in thousandths. ISK, HUF and TWD are sent with two
# decimals for backwards compatibility, like every other currency.
ZERO_DECIMAL = frozenset(
    [
        "BIF",
        "CLP",
        "DJF",
        "GNF",
        "JPY",
        "KMF",
        "KRW",
        "MGA",
        "PYG",
        "RWF",
        "UGX",
        "VND",
        "VUV",
        "XAF",
        "XOF",
        "XPF",
    ]
)
THREE_DECIMAL = frozenset(["BHD", "JOD", "KWD", "OMR", "TND"])


def read_delivery(
    source: InboundSource,
    headers: Mapping[str, str],
    body: bytes,
    now: float,
    *,
    method: str = "POST",
    uris: Sequence[str] = (),
) -> Delivery | Rejected:
    """Verify, then parse; a refused signature is a 401 and nothing of the body is read.

    `uris` are the URLs the sender may have called (HubSpot signs the one it called), the
    request's own first; `method` is the request's."""
    if source.kind == "standard":
        verified = verify_standard_webhook(source.secret, headers, body, now)
    elif source.kind == "stripe":
        verified = verify_stripe(source.secret, headers, body, now, STRIPE_TOLERANCE)
    elif source.kind == "hubspot":
        verified = _verify_hubspot(source, headers, method, uris, body, now)
    else:
        assert_never(source.kind)
    if not verified:
        return Rejected("unauthorized", f"webhook signature refused: {verified.reason}", 401)
    if source.kind == "hubspot":
        events = decode_signed(body)
        return events if isinstance(events, Rejected) else read_hubspot(events, now)
    payload = parse.as_object(decode_signed(body))
    if isinstance(payload, Rejected):
        return payload
    if source.kind == "standard":
        lowered = {k.lower(): v for k, v in headers.items()}
        # The id the signature covered: svix's name for it is accepted as the verifier does.
        delivery_id = lowered.get("webhook-id") or lowered.get("svix-id") or ""
        return _standard(source.id, delivery_id, payload, now)
    return _stripe(payload, now)


def _verify_hubspot(
    source: InboundSource,
    headers: Mapping[str, str],
    method: str,
    uris: Sequence[str],
    body: bytes,
    now: float,
) -> Verification:
    """Accepted when the signature matches any of the candidate URLs; otherwise the first
    refusal (a stale or missing signature is refused alike for every URL)."""
    first: Verification | None = None
    for uri in uris:
        verified = verify_hubspot(
            source.secret,
            headers,
            method,
            uri,
            body,
            now,
            allow_legacy=source.legacy_signatures,
        )
        if verified:
            return verified
        if first is None:
            first = verified
    return first if first is not None else Verification(Rejection.MISSING_HEADERS)


def _standard(
    source_id: str, delivery_id: str, payload: dict[str, Any], now: float
) -> Delivery | Rejected:
    if len(delivery_id) > _MAX_DELIVERY_ID:
        return Rejected("invalid_field", f"webhook-id is longer than {_MAX_DELIVERY_ID} characters")
    prefix = f"hook-{source_id}-{delivery_id}"
    # Messages without their own id get one from the delivery, so a retry stores nothing
    # twice. It is set after parsing, which keeps every sender's own ids out of the engine's
    # namespaces (`parse.RESERVED_ID_PREFIXES`, `hook-` among them): a tracking client could
    # otherwise send `hook-{source}-{webhook-id}` first and have this delivery dropped.
    if "batch" in payload:
        batch = payload.get("batch")
        assigned = [_lacks_id(m) for m in batch] if isinstance(batch, list) else []
        ids = [f"{prefix}-{i}" for i in range(len(assigned))]
        route_type = None
    else:
        kind = payload.get("type")
        if not isinstance(kind, str) or kind not in parse.SINGLE_TYPES:
            return Rejected(
                "invalid_type",
                f"type must be one of {sorted(parse.SINGLE_TYPES)} (or send a batch)",
            )
        assigned, ids, route_type = [_lacks_id(payload)], [prefix], kind
    result = parse.parse_request(payload, route_type, received_at=now)
    if isinstance(result, Rejected):
        return result
    return Delivery(
        [
            msgspec.structs.replace(accepted, message_id=ids[i]) if assigned[i] else accepted
            for i, accepted in enumerate(result)
        ]
    )


def _lacks_id(message: Any) -> bool:
    own = message.get("messageId") if isinstance(message, dict) else "parse refuses it"
    return own is None or (isinstance(own, str) and not own.strip())


# --- Stripe -------------------------------------------------------------------------------


MAX_MINOR_UNITS = 10**15


def _stripe(event: dict[str, Any], now: float) -> Delivery | Rejected:
    event_id = event.get("id")
    if not isinstance(event_id, str) or not event_id:
        return Rejected("invalid_field", "a Stripe event needs an id")
    if event.get("type") != "checkout.session.completed":
        return Delivery([], ignored=1)
    data = event.get("data")
    session = data.get("object") if isinstance(data, dict) else None
    if not isinstance(session, dict):
        return Rejected("invalid_field", "data.object must be the checkout session")
    created = event.get("created")
    if _whole(created) and _iso_seconds(created) is None:
        # As HubSpot's `occurredAt`: parse cannot even be handed a date past the year 9999.
        return Rejected("invalid_timestamp", "created is past the year 9999")
    amount = session.get("amount_total")
    if isinstance(amount, int) and abs(amount) >= MAX_MINOR_UNITS:
        # Past what a double holds exactly, and past any amount Stripe accepts; 400 digits
        # overflowed the division into major units (a 500, retried by Stripe for days).
        return Rejected("invalid_field", "data.object.amount_total has more than 15 digits")
    message = order_completed(event_id, created, session)
    if message is None:  # nobody to attribute it to: acknowledged, like any other notice
        return Delivery([], ignored=1)
    result = parse.parse_request(message, "track", received_at=now, engine_ids=True)
    return result if isinstance(result, Rejected) else Delivery(result)


def order_completed(event_id: str, created: Any, session: dict[str, Any]) -> dict[str, Any] | None:
    """A completed checkout session as a Segment `Order Completed` track message, or None when
    it names no one (no customer email and no client_reference_id)."""
    details = session.get("customer_details")
    email = details.get("email") if isinstance(details, dict) else None
    email = email if isinstance(email, str) and email.strip() else None
    reference = session.get("client_reference_id")
    user_id = reference if isinstance(reference, str) and reference.strip() else None
    if email is None and user_id is None:
        return None
    properties: dict[str, Any] = {}
    if isinstance(session.get("id"), str):
        properties["order_id"] = session["id"]
    currency = session.get("currency")
    amount = session.get("amount_total")
    if isinstance(currency, str) and currency:
        properties["currency"] = currency.upper()
        if isinstance(amount, int) and not isinstance(amount, bool):
            properties["revenue"] = properties["value"] = major_units(amount, currency)
    message: dict[str, Any] = {
        "type": "track",
        "event": "Order Completed",
        "messageId": f"stripe-{event_id}",
        "properties": properties,
        "context": {"library": {"name": "stripe-webhook"}},
    }
    if user_id is not None:
        message["userId"] = user_id
    else:
        # parse requires a user or anonymous id; the email identifies the person.
        customer = session.get("customer")
        anchor = customer if isinstance(customer, str) and customer else session.get("id")
        message["anonymousId"] = f"stripe:{anchor or event_id}"
    if email is not None:
        message["context"]["traits"] = {"email": email}
    stamp = _iso_seconds(created) if _whole(created) else None
    if stamp is not None:
        message["timestamp"] = stamp
    return message


def _whole(created: Any) -> TypeGuard[int]:
    """A Stripe `created`: whole seconds since the epoch (anything else is left out)."""
    return isinstance(created, int) and not isinstance(created, bool) and created > 0


def _iso_seconds(seconds: int) -> str | None:
    """ISO-8601, or None when no `datetime` holds the time."""
    try:
        return datetime.fromtimestamp(seconds, UTC).isoformat()
    except (OverflowError, ValueError, OSError):
        return None


def major_units(amount: int, currency: str) -> float:
    """Stripe's minor-unit integer as an amount of the currency (4250 EUR -> 42.5)."""
    code = currency.upper()
    if code in ZERO_DECIMAL:
        return float(amount)
    return amount / (1000 if code in THREE_DECIMAL else 100)
