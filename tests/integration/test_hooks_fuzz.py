"""Generated deliveries to the signed webhook sources, correctly signed so that they get past
the signature to the parsers, on both backends with the example playbook running: no 5xx, and
what is accepted is processed (scored, journeyed, converted) without a stage raising.

Signed input is trusted only as far as its sender: a CRM's or a shop's payload is still data a
third party typed (a deal's amount, a customer's name), and a bug in reading it must not stop
the log. Examples are drawn deterministically, as in `test_api_fuzz`.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.integration.conftest import Api, serve_api
from tests.integration.test_api_fuzz import FUZZ, JSON, NUMBER, PLAYBOOK, SCALAR, TEXT
from tests.integration.test_inbound_hooks import (
    CRM_SECRET,
    HUBSPOT_SECRET,
    STRIPE_SECRET,
    hubspot_event,
    hubspot_headers,
    standard_headers,
    stripe_header,
)


@pytest.fixture
def signed(backend_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Api]:
    # The example playbook reads its sources' secrets from the environment.
    monkeypatch.setenv("LEADLOOP_CRM_WEBHOOK_SECRET", CRM_SECRET)
    monkeypatch.setenv("LEADLOOP_STRIPE_WEBHOOK_SECRET", STRIPE_SECRET)
    monkeypatch.setenv("LEADLOOP_HUBSPOT_CLIENT_SECRET", HUBSPOT_SECRET)
    yield from serve_api(backend_url, playbook=str(PLAYBOOK))


def _maybe(draw: st.DrawFn, value: Any) -> Any:
    """The plausible value, or (one time in five) a hostile one in its place: a delivery
    whose every field is hostile stops at the first check and reaches no stage."""
    return draw(JSON) if draw(st.integers(0, 4)) == 0 else value


@st.composite
def segment_messages(draw: st.DrawFn) -> dict[str, Any]:
    return {
        "type": _maybe(draw, draw(st.sampled_from(["identify", "track", "page", "group"]))),
        "userId": _maybe(draw, "crm-1"),
        "event": _maybe(draw, draw(st.sampled_from(["Deal Won", "Order Completed"]))),
        "traits": _maybe(draw, {"email": _maybe(draw, "ada@example.com"), "title": draw(TEXT)}),
        "properties": _maybe(
            draw,
            {"revenue": draw(SCALAR), "currency": _maybe(draw, "USD"), "order_id": draw(SCALAR)},
        ),
        "timestamp": _maybe(draw, "2026-11-01T10:00:00Z"),
    }


@st.composite
def stripe_events(draw: st.DrawFn) -> dict[str, Any]:
    session = {
        "id": _maybe(draw, "cs_1"),
        "amount_total": _maybe(draw, draw(NUMBER)),
        "currency": _maybe(draw, draw(st.sampled_from(["usd", "jpy", "bhd", "xxx"]))),
        "client_reference_id": _maybe(draw, "u1"),
        "customer": _maybe(draw, "cus_1"),
        "customer_details": _maybe(
            draw, {"email": _maybe(draw, "ada@example.com"), "phone": draw(SCALAR)}
        ),
        "created": _maybe(draw, 1_795_000_000),
    }
    return {
        "id": _maybe(draw, "evt_" + draw(st.text("abc123", min_size=1, max_size=8))),
        "type": _maybe(draw, "checkout.session.completed"),
        "created": _maybe(draw, 1_795_000_000),
        "data": _maybe(draw, {"object": _maybe(draw, session)}),
    }


@st.composite
def hubspot_events(draw: st.DrawFn) -> dict[str, Any]:
    kind = draw(st.sampled_from(["deal.propertyChange", "contact.creation", "deal.creation"]))
    event = hubspot_event(draw(st.integers(1, 10**6)), kind, draw(st.integers(1, 10**6)))
    for field in draw(st.lists(st.sampled_from(sorted(event)), max_size=3, unique=True)):
        event[field] = draw(JSON)
    if draw(st.booleans()):
        event["propertyName"] = _maybe(draw, "dealstage")
        event["propertyValue"] = _maybe(draw, "closedwon")
    return event


def _signed(api: Api, source: str, body: str, n: int) -> dict[str, str]:
    """Headers that sign `body` as `source`'s sender does."""
    if source == "crm":
        return standard_headers(api, body, msg_id=f"msg_{n}")
    if source == "stripe":
        stamp = int(api.engine.clock.now())
        header = stripe_header(body, STRIPE_SECRET, stamp)
        return {"Stripe-Signature": header, "content-type": "application/json"}
    return hubspot_headers(api, body, uri=f"http://testserver/hooks/inbound/default/{source}")


def _delivery(draw: st.DrawFn, api: Api, n: int) -> tuple[str, str, dict[str, str]]:
    source = draw(st.sampled_from(["crm", "stripe", "hubspot"]))
    if source == "crm":
        one = segment_messages()
        body = json.dumps(draw(st.one_of(one, st.fixed_dictionaries({"batch": st.lists(one)}))))
    elif source == "stripe":
        body = json.dumps(draw(stripe_events()))
    else:
        body = json.dumps(draw(st.lists(hubspot_events(), min_size=1, max_size=3)))
    return source, body, _signed(api, source, body, n)


PLAUSIBLE = {
    "crm": {"type": "track", "userId": "crm-1", "event": "Deal Won"},
    "stripe": {
        "id": "evt_plausible",
        "type": "checkout.session.completed",
        "data": {
            "object": {
                "id": "cs_1",
                "amount_total": 1999,
                "currency": "usd",
                "client_reference_id": "u1",
            }
        },
    },
    "hubspot": [hubspot_event(1, "contact.creation", 42)],
}


def test_signed_deliveries_are_answered_and_what_is_accepted_is_processed(signed: Api) -> None:
    api = signed
    answered: dict[tuple[str, int], int] = {}
    # The signing is right, so the generated deliveries reach each source's parser.
    for source, plausible in PLAUSIBLE.items():
        body = json.dumps(plausible)
        headers = _signed(api, source, body, -1)
        response = api.client.post(
            f"/hooks/inbound/default/{source}", content=body, headers=headers
        )
        assert response.status_code == 200, (source, response.text)

    @FUZZ
    @given(st.data())
    def fuzz(data: st.DataObject) -> None:
        n = sum(answered.values())
        source, body, headers = _delivery(data.draw, api, n)
        response = api.client.post(
            f"/hooks/inbound/default/{source}", content=body, headers=headers
        )
        assert response.status_code < 500, f"{source} {body[:300]} -> {response.text[:300]}"
        key = (source, response.status_code)
        answered[key] = answered.get(key, 0) + 1

    fuzz()
    api.settle()  # a stage that raised on an accepted delivery would leave a lag for ever
    # ... or, since a failing event is set aside rather than blocking, a parked event.
    assert api.engine.read_sync(lambda c: c.execute("SELECT * FROM parked_events")) == []
