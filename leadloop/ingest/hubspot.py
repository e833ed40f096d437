"""HubSpot webhook deliveries as Segment `track` messages: pure functions of the body and `now`.

HubSpot posts a JSON array of subscription events (at most 100 per request), each naming a CRM
object by type (`contact.propertyChange` → contact) and id, never the person behind it. So each
object gets its own anonymous id, `hubspot:{portalId}:{object}:{objectId}`, and every later event
of that object joins the same profile; a contact's `email` property change brings the email
trait, which links it to the person's other profiles.

`contact.privacyDeletion` (a contact deleted under a privacy law such as the GDPR: HubSpot asks
the app to delete the person's data too) is not an event but an erasure of the person behind
the contact's anonymous id (`identity.erase.erase_anonymous_id`), run once the delivery's
other events are stored. Storing the notice would start the person again. The contact's other
events in the same delivery are not stored either, wherever they stand in the array: HubSpot
does not order a delivery, and a privacy-deleted contact cannot be restored (a contact created
later has a new id). For the same reason events of that id in a later delivery are dropped too
(`ingest.erased`).

The whole array is refused (400, naming the element) when one element is malformed: HubSpot
retries a refused request, and a request half stored would be half stored twice.

Retries keep `portalId`, `subscriptionId` and `eventId` (only `attemptNumber` grows); HubSpot
documents `eventId` as not guaranteed unique, so the message id carries all three.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from leadloop.ingest import parse
from leadloop.ingest.model import Accepted, Delivery, Rejected

MAX_EVENTS = 100
"""HubSpot sends at most 100 events in a request: a longer array is not HubSpot."""

OBJECTS = {"contact": "Contact", "company": "Company", "deal": "Deal", "ticket": "Ticket"}
ACTIONS = {
    "creation": "Created",
    "deletion": "Deleted",
    "restore": "Restored",
    "propertyChange": "Property Changed",
}
STAGE_PROPERTIES = {
    ("deal", "dealstage"): "Deal Stage Changed",
    ("contact", "lifecyclestage"): "Lifecycle Stage Changed",
}
"""Property changes with an event of their own, the new value in `properties.stage`, so a
playbook `stage_rules` entry can read it with `stage_field: properties.stage`."""

PRIVACY_DELETION = "contact.privacyDeletion"
ANONYMOUS_PREFIX = "hubspot:"
"""How every HubSpot object's anonymous id starts (`hubspot:{portalId}:{object}:{objectId}`)."""
_IDS = ("eventId", "subscriptionId", "portalId", "objectId", "occurredAt")


@dataclass(frozen=True, slots=True)
class ErasePerson:
    """A privacy deletion: erase whoever the anonymous id names."""

    anonymous_id: str


def read_hubspot(payload: Any, now: float) -> Delivery | Rejected:
    """The messages to store, how many events were acknowledged but ignored (object types and
    actions not mapped: merges, associations, conversations; and the events of a contact
    erased by the same delivery) and the contacts to erase."""
    if not isinstance(payload, list):
        return Rejected("invalid_json", "a HubSpot delivery is a JSON array of events")
    if not payload:
        return Rejected("invalid_batch", "the array of HubSpot events is empty")
    if len(payload) > MAX_EVENTS:
        return Rejected(
            "invalid_batch", f"{len(payload)} events in one request; HubSpot sends at most 100"
        )
    accepted: list[Accepted] = []
    erase: dict[str, None] = {}  # ordered and without repeats
    ignored = 0
    for i, element in enumerate(payload):
        message = hubspot_message(element, f"[{i}].")
        if isinstance(message, Rejected):
            return message
        if isinstance(message, ErasePerson):
            if message.anonymous_id in erase:
                ignored += 1  # the same deletion twice: erased once
            erase[message.anonymous_id] = None
            continue
        if message is None:
            ignored += 1
            continue
        one = parse.parse_message(
            message, "track", received_at=now, sent_at=None, index=f"[{i}].", engine_ids=True
        )
        if isinstance(one, Rejected):
            return one
        accepted.append(one)
    kept = [m for m in accepted if m.anonymous_id not in erase]
    return Delivery(kept, ignored + len(accepted) - len(kept), tuple(erase))


def hubspot_message(event: Any, index: str = "") -> dict[str, Any] | ErasePerson | Rejected | None:
    """One subscription event as a track message, or the erasure a privacy deletion asks for;
    None for a well-formed event that is not mapped. `index` prefixes fields in errors."""
    if not isinstance(event, dict):
        return Rejected("invalid_message", f"{index}a HubSpot event must be a JSON object")
    kind = event.get("subscriptionType")
    if not isinstance(kind, str) or not kind:
        return Rejected("invalid_field", f"{index}subscriptionType must be a non-empty string")
    obj, _, action = kind.partition(".")
    if kind != PRIVACY_DELETION and (obj not in OBJECTS or action not in ACTIONS):
        return None
    numbers: dict[str, int] = {}
    for field in _IDS:
        value = event.get(field)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            return Rejected("invalid_field", f"{index}{field} must be a whole number")
        numbers[field] = value
    anonymous_id = f"{ANONYMOUS_PREFIX}{numbers['portalId']}:{obj}:{numbers['objectId']}"
    if kind == PRIVACY_DELETION:
        return ErasePerson(anonymous_id)
    when = _iso(numbers["occurredAt"])
    if when is None:
        return Rejected("invalid_timestamp", f"{index}occurredAt is past the year 9999")
    properties: dict[str, Any] = {
        "object_type": obj,
        "object_id": str(numbers["objectId"]),
        "portal_id": numbers["portalId"],
        "subscription_type": kind,
    }
    source = event.get("changeSource")
    if isinstance(source, str) and source:
        properties["change_source"] = source
    name = f"{OBJECTS[obj]} {ACTIONS[action]}"
    traits: dict[str, Any] = {}
    if action == "propertyChange":
        prop, value = event.get("propertyName"), event.get("propertyValue")
        if not isinstance(prop, str) or not prop:
            return Rejected("invalid_field", f"{index}propertyName must be a non-empty string")
        if value is not None and not isinstance(value, str):
            return Rejected("invalid_field", f"{index}propertyValue must be a string or null")
        properties["property"], properties["value"] = prop, value
        if (obj, prop) in STAGE_PROPERTIES:
            name = STAGE_PROPERTIES[(obj, prop)]
            properties["stage"] = value
        if obj == "contact":
            traits[prop] = value  # the contact's profile keeps its HubSpot properties
    message: dict[str, Any] = {
        "type": "track",
        "event": name,
        "messageId": f"hubspot-{numbers['portalId']}-{numbers['subscriptionId']}-{numbers['eventId']}",
        "anonymousId": anonymous_id,
        "timestamp": when,
        "properties": properties,
        "context": {"library": {"name": "hubspot-webhook"}},
    }
    if traits:
        message["context"]["traits"] = traits
    return message


def _iso(millis: int) -> str | None:
    """`occurredAt` (epoch milliseconds) as ISO-8601; None when no date holds it."""
    try:
        return datetime.fromtimestamp(millis / 1000, UTC).isoformat()
    except (OverflowError, ValueError, OSError):
        return None
