"""HubSpot subscription events as Segment messages: pure, no signature involved."""

from __future__ import annotations

from typing import Any

import pytest

from leadloop.ingest.hubspot import MAX_EVENTS, ErasePerson, hubspot_message, read_hubspot
from leadloop.ingest.model import Delivery, Rejected

NOW = 1_714_564_900.0


def event(kind: str, **fields: Any) -> dict[str, Any]:
    return {
        "eventId": 7,
        "subscriptionId": 4711,
        "portalId": 62515,
        "appId": 54321,
        "occurredAt": 1714564800250,
        "subscriptionType": kind,
        "attemptNumber": 3,
        "objectId": 987,
        "changeSource": "CRM_UI",
        **fields,
    }


def message(kind: str, **fields: Any) -> dict[str, Any]:
    found = hubspot_message(event(kind, **fields))
    assert isinstance(found, dict), found
    return found


def test_deal_stage_change_carries_the_new_stage() -> None:
    m = message("deal.propertyChange", propertyName="dealstage", propertyValue="closedwon")
    assert (m["type"], m["event"]) == ("track", "Deal Stage Changed")
    assert m["messageId"] == "hubspot-62515-4711-7"  # the attempt number is not part of it
    assert m["anonymousId"] == "hubspot:62515:deal:987"
    assert m["timestamp"] == "2024-05-01T12:00:00.250000+00:00"
    assert m["properties"] == {
        "object_type": "deal",
        "object_id": "987",
        "portal_id": 62515,
        "subscription_type": "deal.propertyChange",
        "change_source": "CRM_UI",
        "property": "dealstage",
        "value": "closedwon",
        "stage": "closedwon",
    }
    assert "traits" not in m["context"]  # a deal is not a person


@pytest.mark.parametrize(
    ("kind", "fields", "name"),
    [
        ("contact.creation", {}, "Contact Created"),
        ("contact.deletion", {}, "Contact Deleted"),
        ("company.restore", {}, "Company Restored"),
        ("ticket.creation", {}, "Ticket Created"),
        ("deal.creation", {}, "Deal Created"),
        (
            "deal.propertyChange",
            {"propertyName": "amount", "propertyValue": "10"},
            "Deal Property Changed",
        ),
        (
            "contact.propertyChange",
            {"propertyName": "lifecyclestage", "propertyValue": "customer"},
            "Lifecycle Stage Changed",
        ),
    ],
)
def test_event_names(kind: str, fields: dict[str, Any], name: str) -> None:
    assert message(kind, **fields)["event"] == name


def test_contact_property_changes_become_traits() -> None:
    m = message("contact.propertyChange", propertyName="email", propertyValue="lin@example.com")
    assert m["context"]["traits"] == {"email": "lin@example.com"}
    assert m["anonymousId"] == "hubspot:62515:contact:987"


@pytest.mark.parametrize(
    "kind",
    [
        "contact.merge",
        "deal.associationChange",
        "conversation.creation",
        "object.propertyChange",
        "product.creation",
    ],
)
def test_unmapped_events_are_ignored(kind: str) -> None:
    assert hubspot_message(event(kind)) is None


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"eventId": None}, "eventId"),
        ({"portalId": "62515"}, "portalId"),
        ({"objectId": True}, "objectId"),
        ({"subscriptionId": -1}, "subscriptionId"),
        ({"occurredAt": 1.5}, "occurredAt"),
        ({"propertyName": ""}, "propertyName"),
        ({"propertyValue": 5}, "propertyValue"),
    ],
)
def test_malformed_fields_are_named_with_the_index(change: dict[str, Any], field: str) -> None:
    bad = {
        **event("contact.propertyChange", propertyName="email", propertyValue="a@b.co"),
        **change,
    }
    found = hubspot_message(bad, "[4].")
    assert isinstance(found, Rejected) and found.status == 400
    assert found.message.startswith(f"[4].{field}"), found.message


def test_a_batch_is_all_or_nothing() -> None:
    good = event("contact.creation")
    read = read_hubspot([good, event("contact.creation", eventId=8), event("contact.merge")], NOW)
    assert isinstance(read, Delivery)
    assert [m.message_id for m in read.messages] == [
        "hubspot-62515-4711-7",
        "hubspot-62515-4711-8",
    ]
    assert (read.ignored, read.erase) == (1, ())
    refused = read_hubspot([good, {**good, "objectId": "x"}], NOW)
    assert isinstance(refused, Rejected) and "[1].objectId" in refused.message


def test_nul_is_refused_like_the_tracking_api() -> None:
    bad = event("contact.propertyChange", propertyName="firstname", propertyValue="a\x00")
    refused = read_hubspot([bad], NOW)
    assert isinstance(refused, Rejected) and refused.code == "invalid_field"
    assert "[0]." in refused.message and "NUL" in refused.message


@pytest.mark.parametrize(
    ("payload", "code"),
    [({"a": 1}, "invalid_json"), ([], "invalid_batch"), ("x", "invalid_json")],
)
def test_the_body_must_be_a_non_empty_array(payload: Any, code: str) -> None:
    refused = read_hubspot(payload, NOW)
    assert isinstance(refused, Rejected) and refused.code == code


def test_at_most_a_hubspot_sized_batch() -> None:
    events = [event("contact.creation", eventId=i) for i in range(MAX_EVENTS)]
    assert not isinstance(read_hubspot(events, NOW), Rejected)
    refused = read_hubspot([*events, event("contact.creation")], NOW)
    assert isinstance(refused, Rejected) and refused.code == "invalid_batch"


def test_a_privacy_deletion_is_an_erasure_not_an_event() -> None:
    assert hubspot_message(event("contact.privacyDeletion")) == ErasePerson(
        "hubspot:62515:contact:987"
    )
    refused = hubspot_message(event("contact.privacyDeletion", objectId="987"), "[2].")
    assert isinstance(refused, Rejected) and refused.message.startswith("[2].objectId")


def test_the_deleted_contacts_events_are_dropped_wherever_they_stand() -> None:
    """HubSpot does not order a delivery: the contact's events before and after its deletion
    are not stored; another contact's are, and a repeated deletion is erased once."""
    deleted = {"objectId": 123}
    read = read_hubspot(
        [
            event("contact.creation", eventId=1, **deleted),
            event(
                "contact.propertyChange",
                eventId=2,
                propertyName="email",
                propertyValue="lin@example.com",
                **deleted,
            ),
            event("contact.privacyDeletion", eventId=3, **deleted),
            event("contact.deletion", eventId=4, **deleted),
            event("contact.privacyDeletion", eventId=5, **deleted),
            event("contact.creation", eventId=6, objectId=456),
            event("deal.creation", eventId=7, objectId=123),  # a deal, not the contact
        ],
        NOW,
    )
    assert isinstance(read, Delivery)
    assert [m.message_id for m in read.messages] == ["hubspot-62515-4711-6", "hubspot-62515-4711-7"]
    assert read.erase == ("hubspot:62515:contact:123",)
    assert (read.accepted, read.ignored) == (3, 4)
