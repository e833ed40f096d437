"""Request bodies: field names per research/capi.md, batch limits, and no raw PII on the wire."""

from __future__ import annotations

import json
from typing import Any

import pytest

from leadloop.conversions.fields import event_id_for
from leadloop.conversions.model import (
    Content,
    Conversion,
    GoogleDestination,
    MetaDestination,
    TikTokDestination,
    UserIdentifiers,
)
from leadloop.conversions.payloads import (
    MAX_EVENTS,
    SEND_MARGIN,
    build_google_request,
    build_meta_request,
    build_request,
    build_tiktok_request,
    check_conversion,
    check_event_age,
    compute_appsecret_proof,
    derive_event_id,
    held_until,
    request_url,
    send_deadline,
    split_batches,
)

NOW = 1_780_000_000.0
DAY = 86_400.0

RAW = UserIdentifiers(
    email="Jane.Doe@Example.com",
    phone="(650) 555-1212",
    phone_region="US",
    first_name="Jane",
    last_name="Doe",
    city="Springfield",
    state="Illinois",
    zip="62704",
    country="US",
    external_id="contact-77",
    lead_id="1234567890123456",
    gclid="CjwKCAiA",
    fbc="fb.1.1700000000000.IwAR",
    fbp="fb.1.1700000000000.123",
    ttclid="E.C.P.abc",
    ttp="ttp-cookie",
    ip="198.51.100.4",
    user_agent="Mozilla/5.0",
)
RAW_STRINGS = ["Jane.Doe", "jane.doe@example.com", "555-1212", "6505551212", "Jane", "Doe"]
RAW_STRINGS += ["Springfield", "springfield", "Illinois"]

META = MetaDestination(pixel_id="1234", lead_event_source="In-house CRM", test_event_code="T1")
GOOGLE = GoogleDestination(operating_account_id="111", conversion_action_id="222")
TIKTOK = TikTokDestination(pixel_code="PX1", event_source="crm", test_event_code="TT1")


def conversion(**changes: Any) -> Conversion:
    values: dict[str, Any] = {
        "event_name": "Marketing Qualified Lead",
        "event_time": NOW - 3600,
        "event_id": derive_event_id("hubspot", "77", "Marketing Qualified Lead"),
        "user": RAW,
        "value": 120.5,
        "currency": "EUR",
        "contents": (Content(id="sku-1", quantity=2, item_price=60.25),),
        "ad_user_data": True,
        "ad_personalization": False,
    }
    values.update(changes)
    return Conversion(**values)


def assert_no_raw_pii(body: dict[str, Any]) -> None:
    wire = json.dumps(body, ensure_ascii=False)
    for raw in RAW_STRINGS:
        assert raw not in wire, raw


# --- ids ---------------------------------------------------------------------------------------


def test_event_ids_are_deterministic_and_unambiguous() -> None:
    assert derive_event_id("HubSpot", "4711", "Marketing Qualified Lead") == (
        "hubspot-4711-marketing_qualified_lead"
    )
    assert derive_event_id("sf", "00Q5e-Ab", "SQL") == "sf-00Q5e-Ab-sql"  # object id case kept
    assert derive_event_id("sf", "a", "b") == derive_event_id("sf", "a", "b")


def test_event_ids_of_names_without_ascii_letters() -> None:
    # A mapping `event: Покупка` (or a model and stage in Japanese) slugged to nothing: the
    # ValueError escaped `event_id_for` inside the processor, whose batch was retried forever.
    russian = derive_event_id("order", "o-1", "Покупка")
    assert russian == derive_event_id("order", "o-1", " покупка ")
    assert russian != derive_event_id("order", "o-1", "Заказ")
    assert russian.startswith("order-o-1-") and "-" not in russian.removeprefix("order-o-1-")
    assert event_id_for("leadloop", "p-1", "モデル_見込み客").startswith("leadloop-p-1-")
    with pytest.raises(ValueError):
        derive_event_id("order", "o-1", "   ")


@pytest.mark.parametrize("object_id", ["", "jane@example.com", "a b"])
def test_event_ids_refuse_pii_and_blanks(object_id: str) -> None:
    with pytest.raises(ValueError):
        derive_event_id("crm", object_id, "mql")


def test_split_batches_respects_platform_limits() -> None:
    items = list(range(2500))
    assert [len(b) for b in split_batches(items, MAX_EVENTS["meta"])] == [1000, 1000, 500]
    assert [len(b) for b in split_batches(items, MAX_EVENTS["google"])] == [2000, 500]


@pytest.mark.parametrize(
    ("builder", "destination", "limit"),
    [
        (build_meta_request, META, 1000),
        (build_google_request, GOOGLE, 2000),
        (build_tiktok_request, TIKTOK, 1000),
    ],
)
def test_builders_refuse_oversized_and_empty_batches(
    builder: Any, destination: Any, limit: int
) -> None:
    assert len(builder([conversion()] * limit, destination)["events" if limit == 2000 else "data"])
    with pytest.raises(ValueError):
        builder([conversion()] * (limit + 1), destination)
    with pytest.raises(ValueError):
        builder([], destination)


# --- Meta --------------------------------------------------------------------------------------


def test_meta_body_has_crm_lead_fields_and_hashed_user_data() -> None:
    body = build_meta_request([conversion()], META, appsecret_proof="proof")
    assert body["test_event_code"] == "T1"
    assert body["appsecret_proof"] == "proof"
    event = body["data"][0]
    assert event["event_name"] == "Marketing Qualified Lead"
    assert event["event_time"] == int(NOW - 3600)
    assert event["event_id"] == "hubspot-77-marketing_qualified_lead"
    assert event["action_source"] == "system_generated"
    assert event["custom_data"]["lead_event_source"] == "In-house CRM"
    assert event["custom_data"]["event_source"] == "crm"
    assert event["custom_data"]["currency"] == "eur"
    assert event["custom_data"]["contents"] == [{"id": "sku-1", "quantity": 2, "item_price": 60.25}]
    user = event["user_data"]
    assert user["lead_id"] == "1234567890123456"
    for key in ("em", "ph", "fn", "ln", "ct", "st", "zp", "country", "external_id"):
        assert len(user[key]) == 1 and len(user[key][0]) == 64, key
    assert event["data_processing_options"] == []
    assert_no_raw_pii(body)


@pytest.mark.parametrize("source", ["website", "other", "physical_store", "email"])
def test_meta_crm_lead_fields_are_for_crm_events_only(source: str) -> None:
    # Meta's Conversion Leads payload specification is for CRM events only (capi.md §1.4): a
    # checkout on the same destination is not marked `event_source: crm`.
    web = conversion(action_source=source, event_source_url="https://shop.test/checkout")
    custom = build_meta_request([web], META)["data"][0]["custom_data"]
    assert "lead_event_source" not in custom and "event_source" not in custom
    assert custom["currency"] == "eur"


def test_meta_leaves_out_what_is_unset() -> None:
    # No custom_data without value, currency,
    # order, contents or CRM source; no null anywhere; `data_processing_options` always there.
    bare = conversion(value=None, currency=None, contents=(), user=UserIdentifiers(fbp="fb.1.2.3"))
    event = build_meta_request([bare], MetaDestination(pixel_id="1"))["data"][0]
    assert event == {
        "event_name": "Marketing Qualified Lead",
        "event_time": int(NOW - 3600),
        "event_id": bare.event_id,
        "action_source": "system_generated",
        "user_data": {"fbp": "fb.1.2.3"},
        "data_processing_options": [],
    }
    with_order = conversion(value=0.0, currency="", contents=(), order_id="o-1")
    custom = build_meta_request([with_order], MetaDestination(pixel_id="1"))["data"][0]
    assert custom["custom_data"] == {"value": 0.0, "order_id": "o-1"}


def test_meta_ldu_flags() -> None:
    event = build_meta_request([conversion(ldu=True)], META)["data"][0]
    assert event["data_processing_options"] == ["LDU"]
    assert event["data_processing_options_country"] == 0
    assert event["data_processing_options_state"] == 0
    california = MetaDestination(pixel_id="1", ldu_country=1, ldu_state=1000)
    event = build_meta_request([conversion(ldu=True)], california)["data"][0]
    assert (event["data_processing_options_country"], event["data_processing_options_state"]) == (
        1,
        1000,
    )


def test_appsecret_proof_is_hmac_sha256_hex() -> None:
    # The well-known HMAC-SHA256 test value (key "key", the quick brown fox), key = app secret.
    fox = "The quick brown fox jumps over the lazy dog"
    assert compute_appsecret_proof("key", fox) == (
        "f7bc83f430538424b13298e6aa6fb143ef4d59a14946175997479dbc2d1a3cd8"
    )


def test_request_urls() -> None:
    assert request_url(META) == "https://graph.facebook.com/v26.0/1234/events"
    assert request_url(GOOGLE) == "https://datamanager.googleapis.com/v1/events:ingest"
    assert request_url(TIKTOK) == "https://business-api.tiktok.com/open_api/v1.3/event/track/"


# --- Google ------------------------------------------------------------------------------------


def test_google_body_follows_data_manager() -> None:
    body = build_request([conversion(order_id="order-9")], GOOGLE)
    assert body["destinations"] == [
        {
            "operatingAccount": {"accountType": "GOOGLE_ADS", "accountId": "111"},
            "productDestinationId": "222",
        }
    ]
    assert body["encoding"] == "HEX"
    assert body["validateOnly"] is False
    event = body["events"][0]
    assert event["transactionId"] == "order-9"
    assert event["eventTimestamp"].endswith("Z") and "T" in event["eventTimestamp"]
    assert event["adIdentifiers"]["gclid"] == "CjwKCAiA"
    assert event["consent"] == {
        "adUserData": "CONSENT_GRANTED",
        "adPersonalization": "CONSENT_DENIED",
    }
    assert event["currency"] == "EUR" and event["conversionValue"] == 120.5
    kinds = [next(iter(identifier)) for identifier in event["userData"]["userIdentifiers"]]
    assert kinds == ["emailAddress", "phoneNumber", "address"]
    assert_no_raw_pii(body)


def test_google_transaction_id_falls_back_to_event_id_and_one_click_id() -> None:
    user = UserIdentifiers(email="a@example.com", gbraid="gb", wbraid="wb")
    event = build_google_request([conversion(user=user)], GOOGLE)["events"][0]
    assert event["transactionId"] == "hubspot-77-marketing_qualified_lead"
    assert event["adIdentifiers"] == {"gbraid": "gb"}


def test_google_consent_omitted_when_unknown() -> None:
    event = build_google_request([conversion(ad_user_data=None, ad_personalization=None)], GOOGLE)[
        "events"
    ][0]
    assert "consent" not in event


# --- TikTok ------------------------------------------------------------------------------------


def test_tiktok_body_follows_events_2() -> None:
    body = build_request([conversion(event_source_url="https://shop.example/thanks")], TIKTOK)
    assert body["event_source"] == "crm"
    assert body["event_source_id"] == "PX1"
    assert body["test_event_code"] == "TT1"
    event = body["data"][0]
    assert event["event"] == "Marketing Qualified Lead"
    assert isinstance(event["event_time"], int)
    assert event["page"] == {"url": "https://shop.example/thanks"}
    assert event["user"]["ttclid"] == "E.C.P.abc"
    assert len(event["user"]["email"]) == 64
    assert event["properties"]["contents"][0]["content_id"] == "sku-1"
    assert event["limited_data_use"] is False
    assert_no_raw_pii(body)


# --- checks ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("destination", "age_days", "action_source", "too_old"),
    [
        (META, 6.9, "system_generated", False),
        (META, 7.1, "system_generated", True),
        (META, 61, "physical_store", False),
        (META, 63, "physical_store", True),
        (GOOGLE, 89, "system_generated", False),
        (GOOGLE, 91, "system_generated", True),
        (TIKTOK, 27, "system_generated", False),  # crm/offline: 28 days
        (TikTokDestination(pixel_code="p"), 8, "website", True),  # web: 7 days
    ],
)
def test_event_age_limits(
    destination: Any, age_days: float, action_source: str, too_old: bool
) -> None:
    event = conversion(event_time=NOW - age_days * DAY, action_source=action_source)
    reason = check_event_age(event, destination, NOW)
    assert (reason is not None) == too_old
    if reason:
        assert reason.split(":")[0] in ("meta", "google", "tiktok")


@pytest.mark.parametrize(
    ("destination", "limit_days", "action_source"),
    [
        (META, 7, "system_generated"),
        (META, 62, "physical_store"),
        (GOOGLE, 90, "system_generated"),
        (TIKTOK, 28, "system_generated"),
        (TikTokDestination(pixel_code="p"), 7, "website"),
    ],
)
def test_events_at_the_edge_of_a_window_are_not_sent(
    destination: Any, limit_days: int, action_source: str
) -> None:
    """An event a few seconds inside Meta's 7 days at the claim was past them when Meta read
    it (the request goes out later, bisection resends, `event_time` is truncated, clocks
    differ), and Meta refused the whole request for it (capi.md §1.1). The last hour of every
    window is not used, with a reason that says so."""
    edge = NOW - limit_days * DAY
    for event_time in (edge + 1, edge + 60, edge + SEND_MARGIN - 1):
        event = conversion(event_time=event_time, action_source=action_source)
        reason = check_event_age(event, destination, NOW)
        assert reason is not None and "margin" in reason, event_time
    inside = conversion(event_time=edge + SEND_MARGIN + 1, action_source=action_source)
    assert check_event_age(inside, destination, NOW) is None
    deadline = send_deadline(inside.event_time, action_source, destination)
    assert deadline == inside.event_time + limit_days * DAY - SEND_MARGIN


def test_meta_events_from_the_future_wait_until_they_are_due() -> None:
    """Meta refuses an event_time more than a minute ahead; one stamped ahead (clock skew, a
    CRM milestone dated ahead) was skipped for good. It waits until it is due, unless it is so
    far ahead that its date is wrong rather than early."""
    ahead = conversion(event_time=NOW + 120)
    assert check_event_age(ahead, META, NOW) is None
    assert held_until(ahead.event_time, META, NOW) == NOW + 120
    assert held_until(NOW + 7 * DAY, META, NOW) == NOW + 7 * DAY
    assert held_until(NOW + 30, META, NOW) is None  # within Meta's minute: sent now
    assert check_event_age(conversion(event_time=NOW + 30), META, NOW) is None
    far = conversion(event_time=NOW + 7 * DAY + 1)
    assert held_until(far.event_time, META, NOW) is None
    assert check_event_age(far, META, NOW) == "meta: event_time is more than 7 days in the future"
    for destination in (GOOGLE, TIKTOK):  # no such rule known for them (capi.md §9)
        assert held_until(NOW + 3600, destination, NOW) is None


def test_a_meta_purchase_with_a_value_and_no_currency_is_skipped() -> None:
    """Meta requires `currency` on a Purchase and may refuse the whole request over one without:
    skipped with a reason, not sent. Other events and platforms carry a value without one."""
    bare = conversion(event_name="Purchase", currency=None)
    assert check_conversion(bare, META, NOW) == (
        "meta: a Purchase with a value needs a currency (none at the mapping's `currency` "
        "path and no `default_currency`)"
    )
    assert check_conversion(conversion(event_name="Purchase"), META, NOW) is None
    assert (
        check_conversion(conversion(event_name="Purchase", currency=None, value=None), META, NOW)
        is None
    )
    assert check_conversion(conversion(currency=None), META, NOW) is None
    for destination in (GOOGLE, TIKTOK):
        assert check_conversion(bare, destination, NOW) is None


def test_check_conversion_reasons() -> None:
    assert check_conversion(conversion(), META, NOW) is None
    assert "consent" in (check_conversion(conversion(ad_user_data=False), GOOGLE, NOW) or "")
    web = conversion(action_source="website")
    assert "event_source_url" in (check_conversion(web, META, NOW) or "")
    early = conversion(lead_created_at=NOW)
    assert "before the lead" in (check_conversion(early, META, NOW) or "")
    nobody = conversion(user=UserIdentifiers(email="not an email"))
    for destination in (META, GOOGLE, TIKTOK):
        assert check_conversion(nobody, destination, NOW) is not None
