"""Signed webhooks into the log: `POST /hooks/inbound/{workspace}/{source}` over HTTP.

Deliveries are signed with the real libraries: `standardwebhooks` for the generic source,
`hubspot-api-client`'s `Signature.get_signature` for HubSpot, and `stripe`'s own header
generator when it is installed (else a hand-written HMAC, checked here against the Stripe vector
of `research/webhook-vectors.json`).
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hubspot.utils.signature import Signature
from standardwebhooks import Webhook

from leadloop.ingest.model import MAX_REQUEST_BYTES
from tests.conftest import SHARED
from tests.integration.conftest import Api, serve_api

CRM_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
STRIPE_SECRET = "whsec_test_marketing_engine_stripe_0001"
HUBSPOT_SECRET = "00000000-1111-2222-3333-444444444444"
PLAYBOOK = f"""
version: 1
sources:
  - id: crm
    kind: standard
    secret: {CRM_SECRET}
  - id: shop
    kind: stripe
    secret: {STRIPE_SECRET}
  - id: paused
    kind: standard
    secret: ""
  - id: hubspot
    kind: hubspot
    secret: {HUBSPOT_SECRET}
    public_url: https://hooks.example.com/leadloop/
  - id: hubspot-v1
    kind: hubspot
    secret: {HUBSPOT_SECRET}
    legacy_signatures: true
"""
CRM = "/hooks/inbound/default/crm"
SHOP = "/hooks/inbound/default/shop"
VECTORS = json.loads((SHARED / "research" / "webhook-vectors.json").read_text())


def _with_playbook(
    url: str, tmp_path: Path, text: str = PLAYBOOK, *, run_processor: bool = True
) -> Iterator[Api]:
    for api in serve_api(url, run_processor=run_processor):
        path = tmp_path / "playbook.yaml"
        path.write_text(text)
        api.engine.apply_playbook_file(str(path))
        api.engine.refresh_playbooks()
        yield api


@pytest.fixture
def hooks(sqlite_url: str, tmp_path: Path) -> Iterator[Api]:
    yield from _with_playbook(sqlite_url, tmp_path)


@pytest.fixture
def any_hooks(backend_url: str, tmp_path: Path) -> Iterator[Api]:
    yield from _with_playbook(backend_url, tmp_path)


def standard_headers(
    api: Api, body: str, msg_id: str = "msg_1", secret: str = CRM_SECRET, age: float = 0
) -> dict[str, str]:
    when = datetime.fromtimestamp(int(api.engine.clock.now() - age), UTC)
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(when.timestamp())),
        "webhook-signature": Webhook(secret).sign(msg_id, when, body),
        "content-type": "application/json",
    }


def stripe_header(body: str, secret: str, timestamp: int) -> str:
    try:
        import stripe
    except ImportError:
        mac = hmac.new(secret.encode(), f"{timestamp}.{body}".encode(), hashlib.sha256)
        return f"t={timestamp},v1={mac.hexdigest()}"
    return str(stripe.WebhookSignature.generate_signature_header(body, secret, timestamp))


def test_the_stripe_signer_matches_the_stripe_vector() -> None:
    vector = VECTORS["stripe"]["vectors"][0]
    made = stripe_header(vector["body"], vector["secret"], vector["timestamp"])
    assert made == vector["expected_header"]


def lookup(api: Api, kind: str, value: str) -> Any:
    api.settle()
    r = api.client.get(
        "/api/v1/profiles/lookup", params={"type": kind, "value": value}, headers=api.bearer()
    )
    return r


def events_of(api: Api, profile_id: str) -> list[dict[str, Any]]:
    r = api.client.get(f"/api/v1/profiles/{profile_id}/events", headers=api.bearer())
    assert r.status_code == 200, r.text
    body = r.json()
    return list(body["events"] if isinstance(body, dict) else body)


IDENTIFY = {"type": "identify", "userId": "crm-42", "traits": {"email": "ada@example.com"}}


# -- Standard Webhooks source --------------------------------------------------------------


def test_signed_segment_event_becomes_a_profile_and_a_retry_adds_nothing(
    any_hooks: Api,
) -> None:
    api = any_hooks
    body = json.dumps(IDENTIFY)
    headers = standard_headers(api, body, "msg_identify")
    r = api.client.post(CRM, content=body, headers=headers)
    assert r.status_code == 200, r.text
    assert r.json() == {"accepted": 1, "ignored": 0}
    found = lookup(api, "email", "ada@example.com")
    assert found.status_code == 200, found.text
    assert {"type": "user_id", "value": "crm-42"} in found.json()["identities"]

    # The provider retries the same delivery (same webhook-id, new timestamp and signature).
    again = api.client.post(CRM, content=body, headers=standard_headers(api, body, "msg_identify"))
    assert again.status_code == 200
    api.settle()
    assert api.event_count() == 1


def test_batch_messages_get_distinct_ids_from_the_delivery(any_hooks: Api) -> None:
    api = any_hooks
    body = json.dumps(
        {
            "batch": [
                {"type": "track", "userId": "u1", "event": "Deal Won"},
                {"type": "track", "userId": "u1", "event": "Deal Won"},
                {"type": "track", "userId": "u1", "event": "Own Id", "messageId": "mine"},
            ]
        }
    )
    for _ in range(2):
        r = api.client.post(CRM, content=body, headers=standard_headers(api, body, "msg_b"))
        assert r.status_code == 200, r.text
        assert r.json()["accepted"] == 3
    assert api.event_count() == 3
    ids = {
        row[0] for row in api.engine.read_sync(lambda c: c.execute("SELECT message_id FROM events"))
    }
    assert ids == {"hook-crm-msg_b-0", "hook-crm-msg_b-1", "mine"}


@pytest.mark.parametrize("problem", ["tampered", "wrong_secret", "stale", "unsigned"])
def test_a_bad_signature_is_401_and_stores_nothing(any_hooks: Api, problem: str) -> None:
    api = any_hooks
    body = json.dumps(IDENTIFY)
    secret = (
        "whsec_3X4NhiYzlVRQa+OHEiDKy//zIo5FI61xKI43YIR1j+E="
        if problem == "wrong_secret"
        else CRM_SECRET
    )
    headers = standard_headers(api, body, secret=secret, age=600 if problem == "stale" else 0)
    if problem == "tampered":
        body = body.replace("crm-42", "crm-43")
    if problem == "unsigned":
        del headers["webhook-signature"]
    r = api.client.post(CRM, content=body, headers=headers)
    assert r.status_code == 401
    assert r.json()["code"] == "unauthorized" and r.json()["message"]
    assert api.event_count() == 0


@pytest.mark.parametrize(
    "path",
    [
        "/hooks/inbound/default/nope",
        "/hooks/inbound/other/crm",
        "/hooks/inbound/nowhere/crm",
        "/hooks/inbound/default/paused",
        "/hooks/inbound/default",
    ],
)
def test_unknown_or_disabled_source_is_404(hooks: Api, path: str) -> None:
    body = json.dumps(IDENTIFY)
    r = hooks.client.post(path, content=body, headers=standard_headers(hooks, body))
    assert r.status_code == 404
    assert r.json()["code"] == "not_found"


def test_oversize_body_is_413(hooks: Api) -> None:
    body = json.dumps({**IDENTIFY, "traits": {"blob": "x" * (MAX_REQUEST_BYTES + 1)}})
    r = hooks.client.post(CRM, content=body, headers=standard_headers(hooks, body))
    assert r.status_code == 413
    assert r.json()["code"] == "request_too_large"
    assert hooks.event_count() == 0


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ("{not json", "invalid_json"),
        (json.dumps({"type": "track", "userId": "u"}), "missing_event"),
        (json.dumps({"userId": "u"}), "invalid_type"),
        (json.dumps({"batch": []}), "invalid_batch"),
        ('{"type": "identify", "userId": "u", "type": "track", "event": "X"}', "duplicate_key"),
    ],
)
def test_signed_but_invalid_body_is_400(hooks: Api, body: str, code: str) -> None:
    r = hooks.client.post(CRM, content=body, headers=standard_headers(hooks, body))
    assert r.status_code == 400
    assert r.json()["code"] == code
    assert hooks.event_count() == 0


def test_only_post(hooks: Api) -> None:
    assert hooks.client.get(CRM).status_code == 405


# -- Stripe source -------------------------------------------------------------------------


def checkout(event_id: str, amount: int, currency: str, **session: Any) -> str:
    return json.dumps(
        {
            "id": event_id,
            "object": "event",
            "created": 1714564800,
            "type": "checkout.session.completed",
            "data": {
                "object": {
                    "id": f"cs_{event_id}",
                    "object": "checkout.session",
                    "customer_details": {"email": "grace@example.com"},
                    "amount_total": amount,
                    "currency": currency,
                    **session,
                }
            },
        }
    )


def post_stripe(api: Api, body: str, secret: str = STRIPE_SECRET, age: float = 0) -> Any:
    header = stripe_header(body, secret, int(api.engine.clock.now() - age))
    return api.client.post(SHOP, content=body, headers={"Stripe-Signature": header})


def order_events(api: Api, kind: str, value: str) -> list[dict[str, Any]]:
    found = lookup(api, kind, value)
    assert found.status_code == 200, found.text
    return [e for e in events_of(api, found.json()["id"]) if e.get("event") == "Order Completed"]


def properties(event: dict[str, Any]) -> dict[str, Any]:
    body = event.get("body") or event
    return dict(body["properties"])


def test_checkout_completed_is_an_order_for_the_customer(any_hooks: Api) -> None:
    api = any_hooks
    r = post_stripe(api, checkout("evt_1", 4250, "eur"))
    assert r.status_code == 200, r.text
    assert r.json() == {"accepted": 1, "ignored": 0}
    assert post_stripe(api, checkout("evt_1", 4250, "eur")).status_code == 200  # a retry
    (order,) = order_events(api, "email", "grace@example.com")
    assert properties(order) == {
        "order_id": "cs_evt_1",
        "revenue": 42.5,
        "value": 42.5,
        "currency": "EUR",
    }
    assert api.event_count() == 1


def test_zero_decimal_currency_is_not_divided_and_reference_is_the_user_id(
    hooks: Api,
) -> None:
    r = post_stripe(hooks, checkout("evt_2", 5000, "jpy", client_reference_id="user-7"))
    assert r.status_code == 200, r.text
    (order,) = order_events(hooks, "user_id", "user-7")
    assert properties(order)["revenue"] == 5000
    assert properties(order)["currency"] == "JPY"


def test_other_stripe_events_are_acknowledged_and_ignored(any_hooks: Api) -> None:
    body = json.dumps({"id": "evt_3", "type": "invoice.paid", "data": {"object": {}}})
    r = post_stripe(any_hooks, body)
    assert r.status_code == 200
    assert r.json() == {"accepted": 0, "ignored": 1}
    assert any_hooks.event_count() == 0


@pytest.mark.parametrize("problem", ["wrong_secret", "stale", "tampered"])
def test_bad_stripe_signature_is_401(hooks: Api, problem: str) -> None:
    body = checkout("evt_4", 100, "usd")
    secret = "whsec_other" if problem == "wrong_secret" else STRIPE_SECRET
    header = stripe_header(
        body, secret, int(hooks.engine.clock.now() - (301 if problem == "stale" else 0))
    )
    if problem == "tampered":
        body = body.replace("100", "1")
    r = hooks.client.post(SHOP, content=body, headers={"Stripe-Signature": header})
    assert r.status_code == 401
    assert r.json()["code"] == "unauthorized"
    assert hooks.event_count() == 0


# -- HubSpot source ------------------------------------------------------------------------

HUBSPOT = "/hooks/inbound/default/hubspot"
OWN_URL = f"http://testserver{HUBSPOT}"  # the TestClient's base URL: what the engine sees
PUBLIC_URL = f"https://hooks.example.com/leadloop{HUBSPOT}"  # what HubSpot called


def hubspot_event(event_id: int, kind: str, object_id: int, **fields: Any) -> dict[str, Any]:
    return {
        "eventId": event_id,
        "subscriptionId": 4711,
        "portalId": 62515,
        "appId": 54321,
        "occurredAt": 1714564800000 + event_id,
        "subscriptionType": kind,
        "attemptNumber": 0,
        "objectId": object_id,
        "changeSource": "CRM_UI",
        **fields,
    }


def deal_won(event_id: int = 1, deal: int = 987, attempt: int = 0) -> dict[str, Any]:
    return hubspot_event(
        event_id,
        "deal.propertyChange",
        deal,
        propertyName="dealstage",
        propertyValue="closedwon",
        attemptNumber=attempt,
    )


def hubspot_headers(
    api: Api,
    body: str,
    uri: str = PUBLIC_URL,
    secret: str = HUBSPOT_SECRET,
    skew: float = 0,
) -> dict[str, str]:
    """Signed by HubSpot's own Python client."""
    stamp = str(int((api.engine.clock.now() + skew) * 1000))
    signature = Signature.get_signature(secret, body, "v3", uri, "POST", stamp)
    return {
        "X-HubSpot-Signature-v3": signature,
        "X-HubSpot-Request-Timestamp": stamp,
        "content-type": "application/json",
    }


def post_hubspot(api: Api, events: Any, path: str = HUBSPOT, **signing: Any) -> Any:
    body = json.dumps(events)
    return api.client.post(path, content=body, headers=hubspot_headers(api, body, **signing))


def named(api: Api, anonymous_id: str, event: str) -> list[dict[str, Any]]:
    found = lookup(api, "anonymous_id", anonymous_id)
    assert found.status_code == 200, found.text
    return [e for e in events_of(api, found.json()["id"]) if e.get("event") == event]


HUBSPOT_PLAYBOOK = f"""
version: 1
sources:
  - id: hubspot
    kind: hubspot
    secret: {HUBSPOT_SECRET}
"""
"""A playbook with the one HubSpot source, to add sections to."""
WON_PLAYBOOK = (
    HUBSPOT_PLAYBOOK
    + """scoring:
  models:
    - id: lead
      stages:
        - name: lead
        - name: customer
          actions:
            - emit: Deal Won
      stage_rules:
        - id: hubspot_won
          type: track
          event: Deal Stage Changed
          where:
            - { field: properties.stage, op: in, value: [closedwon] }
          stage: customer
"""
)


@pytest.fixture
def won(backend_url: str, tmp_path: Path) -> Iterator[Api]:
    yield from _with_playbook(backend_url, tmp_path, WON_PLAYBOOK)


def test_a_closed_won_deal_moves_the_deal_to_customer_once(won: Api) -> None:
    api = won
    r = post_hubspot(api, [deal_won()], uri=OWN_URL)
    assert r.status_code == 200, r.text
    assert r.json() == {"accepted": 1, "ignored": 0}
    # HubSpot retries the same event (same eventId, the next attemptNumber, a new signature).
    again = post_hubspot(api, [deal_won(attempt=1)], uri=OWN_URL)
    assert again.status_code == 200, again.text

    (changed,) = named(api, "hubspot:62515:deal:987", "Deal Stage Changed")
    assert properties(changed)["stage"] == "closedwon"
    assert len(named(api, "hubspot:62515:deal:987", "Deal Won")) == 1
    found = lookup(api, "anonymous_id", "hubspot:62515:deal:987").json()
    assert found["scores"]["lead"]["stage"] == "customer"
    ids = api.engine.read_sync(
        lambda c: c.execute("SELECT message_id FROM events WHERE event = 'Deal Stage Changed'")
    )
    assert [row[0] for row in ids] == ["hubspot-62515-4711-1"]


def test_hubspot_contact_events_join_one_profile_with_their_properties(any_hooks: Api) -> None:
    api = any_hooks
    events = [
        hubspot_event(1, "contact.creation", 123),
        hubspot_event(
            2, "contact.propertyChange", 123, propertyName="email", propertyValue="lin@example.com"
        ),
        hubspot_event(3, "contact.associationChange", 123),  # acknowledged, not mapped
        hubspot_event(4, "conversation.creation", 55),
    ]
    r = post_hubspot(api, events)
    assert r.status_code == 200, r.text
    assert r.json() == {"accepted": 2, "ignored": 2}
    found = lookup(api, "email", "lin@example.com")
    assert found.status_code == 200, found.text
    assert {"type": "anonymous_id", "value": "hubspot:62515:contact:123"} in (
        found.json()["identities"]
    )
    names = sorted(e["event"] for e in events_of(api, found.json()["id"]))
    assert names == ["Contact Created", "Contact Property Changed"]


@pytest.mark.parametrize(
    "problem",
    ["tampered", "wrong_secret", "stale", "future", "unsigned", "other_host", "legacy_v1"],
)
def test_a_bad_hubspot_signature_is_401_and_stores_nothing(any_hooks: Api, problem: str) -> None:
    api = any_hooks
    body = json.dumps([deal_won()])
    headers = hubspot_headers(
        api,
        body,
        uri="https://evil.example.com" + HUBSPOT if problem == "other_host" else PUBLIC_URL,
        secret="another-app-secret" if problem == "wrong_secret" else HUBSPOT_SECRET,
        skew={"stale": -301, "future": 301}.get(problem, 0),
    )
    if problem == "tampered":
        body = body.replace("closedwon", "closedlost")
    if problem == "unsigned":
        del headers["X-HubSpot-Signature-v3"]
    if problem == "legacy_v1":
        headers = {
            "X-HubSpot-Signature": Signature.get_signature(HUBSPOT_SECRET, body, "v1"),
            "X-HubSpot-Signature-Version": "v1",
        }
    r = api.client.post(HUBSPOT, content=body, headers=headers)
    assert r.status_code == 401, r.text
    assert r.json()["code"] == "unauthorized" and r.json()["message"]
    assert api.event_count() == 0


def test_legacy_hubspot_signatures_only_where_the_source_opts_in(hooks: Api) -> None:
    path = "/hooks/inbound/default/hubspot-v1"
    body = json.dumps([deal_won()])
    for version in ("v1", "v2"):
        signature = Signature.get_signature(
            HUBSPOT_SECRET, body, version, f"http://testserver{path}", "POST"
        )
        headers = {"X-HubSpot-Signature": signature, "X-HubSpot-Signature-Version": version}
        r = hooks.client.post(path, content=body, headers=headers)
        assert r.status_code == 200, r.text
    assert hooks.event_count() == 1  # the second version's delivery is the same event


def test_the_signed_url_keeps_its_query(hooks: Api) -> None:
    body = json.dumps([deal_won()])
    # HubSpot decodes %3A (and a few other escapes) in the URL before it signs.
    headers = hubspot_headers(hooks, body, uri=f"{PUBLIC_URL}?portal=62515&x=:")
    r = hooks.client.post(f"{HUBSPOT}?portal=62515&x=%3A", content=body, headers=headers)
    assert r.status_code == 200, r.text
    wrong = hubspot_headers(hooks, body, uri=PUBLIC_URL)  # signed without the query
    r = hooks.client.post(f"{HUBSPOT}?portal=62515&x=%3A", content=body, headers=wrong)
    assert r.status_code == 401


GOOD = deal_won(1, 1)


@pytest.mark.parametrize(
    ("body", "code", "words"),
    [
        ("[{not json", "invalid_json", "not valid JSON"),
        (json.dumps({"events": [GOOD]}), "invalid_json", "JSON array"),
        ("[]", "invalid_batch", "empty"),
        (json.dumps([deal_won(i, i) for i in range(101)]), "invalid_batch", "at most 100"),
        (json.dumps([GOOD, "deal"]), "invalid_message", "[1]"),
        (json.dumps([GOOD, {**GOOD, "eventId": "x"}]), "invalid_field", "[1].eventId"),
        (json.dumps([GOOD, {**GOOD, "subscriptionType": 7}]), "invalid_field", "[1].subscr"),
        (json.dumps([GOOD, {**GOOD, "propertyName": None}]), "invalid_field", "[1].propertyN"),
        (json.dumps([GOOD, {**GOOD, "propertyValue": "a\u0000b"}]), "invalid_field", "[1]."),
        (json.dumps([{**GOOD, "occurredAt": 10**15}]), "invalid_timestamp", "[0].occurredAt"),
    ],
)
def test_a_malformed_hubspot_delivery_is_400_and_stores_nothing(
    any_hooks: Api, body: str, code: str, words: str
) -> None:
    api = any_hooks
    r = api.client.post(HUBSPOT, content=body, headers=hubspot_headers(api, body))
    assert r.status_code == 400, r.text
    assert r.json()["code"] == code
    assert words in r.json()["message"]
    assert api.event_count() == 0


def test_an_oversize_hubspot_delivery_is_413(hooks: Api) -> None:
    body = json.dumps([{**GOOD, "propertyValue": "x" * (MAX_REQUEST_BYTES + 1)}])
    r = hooks.client.post(HUBSPOT, content=body, headers=hubspot_headers(hooks, body))
    assert r.status_code == 413
    assert hooks.event_count() == 0


def test_a_tracking_client_cannot_take_a_hook_deliverys_id(any_hooks: Api) -> None:
    """The ids a standard source gives messages without their own (`hook-{source}-{webhook-id}`)
    share the log's unique key with every client's: one holding the public write key sent
    that id first, and the signed delivery was then dropped as a repeat."""
    api = any_hooks
    squatter = {"userId": "x", "event": "Squat", "messageId": "hook-crm-msg_next"}
    assert api.client.post("/v1/track", json=squatter, headers=api.basic()).status_code == 200
    body = json.dumps({"type": "track", "userId": "u1", "event": "Deal Won"})
    r = api.client.post(CRM, content=body, headers=standard_headers(api, body, "msg_next"))
    assert r.status_code == 200 and r.json() == {"accepted": 1, "ignored": 0}, r.text
    api.settle()
    rows = api.engine.read_sync(lambda c: c.execute("SELECT message_id, event FROM events"))
    assert sorted((str(m), str(e)) for m, e in rows) == [
        ("client:hook-crm-msg_next", "Squat"),
        ("hook-crm-msg_next", "Deal Won"),
    ]
