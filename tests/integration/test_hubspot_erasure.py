"""HubSpot's `contact.privacyDeletion` erases the person behind the contact, over HTTP on SQLite
and PostgreSQL, signed by `hubspot-api-client` as in `test_inbound_hooks`.

Where events must still be waiting in the log when the deletion comes, the engine runs without
its processor and the test processes the log itself (`process_all`); elsewhere the processor
runs, so on SQLite the erasure goes through the processor's job queue as in production.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from leadloop.testing import eventually
from tests.integration.conftest import Api
from tests.integration.test_inbound_hooks import (
    CRM,
    CRM_SECRET,
    HUBSPOT,
    HUBSPOT_PLAYBOOK,
    OWN_URL,
    _with_playbook,
    hubspot_event,
    hubspot_headers,
    lookup,
    post_hubspot,
    standard_headers,
)
from tests.integration.test_ingest_hostile import process_all

PLAYBOOK = (
    HUBSPOT_PLAYBOOK
    + """scoring:
  models:
    - id: lead
      engagement:
        - id: pricing
          type: page
          points: 5
        - id: in_the_crm
          type: track
          event: Contact Created
          points: 10
      stages:
        - name: subscriber
        - name: lead
          at: 10
"""
)
CRM_SOURCE = f"""  - id: crm
    kind: standard
    secret: {CRM_SECRET}
"""
CONTACT = "hubspot:62515:contact:123"
TABLES = ("events", "profiles", "identities", "scores", "score_ledger")


@pytest.fixture
def held(backend_url: str, tmp_path: Path) -> Iterator[Api]:
    """An engine whose log waits until the test processes it."""
    yield from _with_playbook(backend_url, tmp_path, PLAYBOOK, run_processor=False)


@pytest.fixture
def running(backend_url: str, tmp_path: Path) -> Iterator[Api]:
    yield from _with_playbook(backend_url, tmp_path, PLAYBOOK)


@pytest.fixture
def with_crm(backend_url: str, tmp_path: Path) -> Iterator[Api]:
    """As `running`, with a `standard` source beside HubSpot's."""
    text = PLAYBOOK.replace("sources:\n", "sources:\n" + CRM_SOURCE, 1)
    yield from _with_playbook(backend_url, tmp_path, text)


def contact(event_id: int, object_id: int, email: str | None = None) -> list[dict[str, Any]]:
    """A contact's creation, and its email when given (the next event id)."""
    created = [hubspot_event(event_id, "contact.creation", object_id)]
    if email is None:
        return created
    change = {"propertyName": "email", "propertyValue": email}
    return [*created, hubspot_event(event_id + 1, "contact.propertyChange", object_id, **change)]


def deletion(event_id: int, object_id: int = 123, attempt: int = 0) -> dict[str, Any]:
    return hubspot_event(event_id, "contact.privacyDeletion", object_id, attemptNumber=attempt)


def delivered(api: Api, events: list[dict[str, Any]]) -> dict[str, int]:
    r = post_hubspot(api, events, uri=OWN_URL)
    assert r.status_code == 200, r.text
    return dict(r.json())


def track(api: Api, kind: str, message: dict[str, Any]) -> None:
    r = api.client.post(f"/v1/{kind}", json=message, headers=api.basic())
    assert r.status_code == 200, r.text


def rows(api: Api, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    return [tuple(r) for r in api.engine.read_sync(lambda c: c.execute(sql, args))]


def snapshot(api: Api) -> dict[str, list[tuple[Any, ...]]]:
    return {t: sorted(rows(api, f"SELECT * FROM {t}"), key=repr) for t in TABLES}


def mentioned(api: Api, text: str) -> int:
    """Events whose body holds `text`."""
    return int(rows(api, "SELECT COUNT(*) FROM events WHERE body LIKE ?", f"%{text}%")[0][0])


def gone(api: Api, kind: str, value: str) -> bool:
    found = lookup(api, kind, value)
    assert found.status_code in (200, 404), found.text
    return found.status_code == 404


def test_a_privacy_deletion_erases_the_contact_and_the_web_profile_merged_into_it(
    held: Api, caplog: pytest.LogCaptureFixture
) -> None:
    api = held
    track(api, "page", {"anonymousId": "web-1", "properties": {"path": "/pricing"}})
    track(api, "identify", {"anonymousId": "web-1", "traits": {"email": "lin@example.com"}})
    process_all(api)  # the visitor's profile is stored before the contact joins it
    delivered(api, contact(1, 123, "lin@example.com"))
    delivered(api, contact(10, 456, "kim@example.com"))  # someone else, who stays
    process_all(api)
    person = lookup(api, "email", "lin@example.com").json()
    assert {"type": "anonymous_id", "value": "web-1"} in person["identities"]
    assert {"type": "anonymous_id", "value": CONTACT} in person["identities"]
    assert person["scores"]["lead"]["score"] > 0
    kim = lookup(api, "email", "kim@example.com").json()["id"]
    # Still waiting in the log when the deletion comes: the contact's and the visitor's.
    job = {"propertyName": "jobtitle", "propertyValue": "CTO"}
    delivered(api, [hubspot_event(3, "contact.propertyChange", 123, **job)])
    track(api, "page", {"anonymousId": "web-1", "properties": {"path": "/pricing/team"}})
    assert rows(api, "SELECT COUNT(*) FROM events WHERE profile_id IS NULL") == [(2,)]

    caplog.set_level(logging.INFO, logger="leadloop.hooks")
    assert delivered(api, [deletion(4)]) == {"accepted": 1, "ignored": 0}
    process_all(api)

    assert gone(api, "email", "lin@example.com")
    assert gone(api, "anonymous_id", "web-1") and gone(api, "anonymous_id", CONTACT)
    for table in ("events", "identities", "scores", "score_ledger"):
        assert rows(api, f"SELECT DISTINCT profile_id FROM {table}") == [(kim,)], table
    assert rows(api, "SELECT id FROM profiles") == [(kim,)]
    assert not mentioned(api, "lin@example.com")
    (line,) = [r.getMessage() for r in caplog.records if r.name == "leadloop.hooks"]
    assert line == "inbound source default/hubspot: privacy deletion erased 2 profiles"


def test_a_contact_only_waiting_in_the_log_is_erased_before_it_becomes_a_profile(
    held: Api,
) -> None:
    api = held
    delivered(api, contact(1, 123, "lin@example.com"))  # the delivery just before: not processed
    delivered(api, contact(10, 456))
    assert delivered(api, [deletion(3)]) == {"accepted": 1, "ignored": 0}
    assert rows(api, "SELECT COUNT(*) FROM events WHERE anonymous_id = ?", CONTACT) == [(0,)]
    process_all(api)
    assert gone(api, "anonymous_id", CONTACT) and gone(api, "email", "lin@example.com")
    assert not gone(api, "anonymous_id", "hubspot:62515:contact:456")
    # HubSpot never gives a new contact an old id: a late event of this one starts nobody.
    late = {"propertyName": "email", "propertyValue": "lin@example.com"}
    assert delivered(api, [hubspot_event(20, "contact.propertyChange", 123, **late)]) == {
        "accepted": 0,
        "ignored": 1,
    }
    process_all(api)
    assert gone(api, "anonymous_id", CONTACT) and gone(api, "email", "lin@example.com")
    assert not mentioned(api, "lin@example.com")


def test_a_retry_or_a_deletion_of_an_unknown_contact_changes_no_profile(running: Api) -> None:
    api = running
    delivered(api, [*contact(1, 123, "lin@example.com"), *contact(10, 456)])
    assert not gone(api, "anonymous_id", CONTACT)
    delivered(api, [deletion(5)])
    assert gone(api, "anonymous_id", CONTACT)
    before = snapshot(api)
    assert before["profiles"]  # the other contact's
    # HubSpot retries the same event (the next attemptNumber, a new signature).
    assert delivered(api, [deletion(5, attempt=1)]) == {"accepted": 1, "ignored": 0}
    assert delivered(api, [deletion(6, object_id=999)]) == {"accepted": 1, "ignored": 0}
    api.settle()
    assert snapshot(api) == before


def test_a_deletion_after_a_property_change_in_the_same_delivery_wins(running: Api) -> None:
    api = running
    events = [*contact(1, 123, "lin@example.com"), deletion(3), *contact(10, 456)]
    assert delivered(api, events) == {"accepted": 2, "ignored": 2}
    api.settle()
    assert gone(api, "anonymous_id", CONTACT) and gone(api, "email", "lin@example.com")
    assert not mentioned(api, "lin@example.com")
    assert not gone(api, "anonymous_id", "hubspot:62515:contact:456")


def test_a_badly_signed_deletion_erases_nothing(running: Api) -> None:
    api = running
    delivered(api, contact(1, 123, "lin@example.com"))
    assert not gone(api, "email", "lin@example.com")
    before = snapshot(api)
    body = json.dumps([deletion(3)])
    headers = hubspot_headers(api, body, OWN_URL, secret="another-app-secret")
    r = api.client.post(HUBSPOT, content=body, headers=headers)
    assert r.status_code == 401, r.text
    api.settle()
    assert snapshot(api) == before


def test_events_of_an_erased_contact_delivered_later_are_dropped_and_others_kept(
    running: Api, caplog: pytest.LogCaptureFixture
) -> None:
    api = running
    delivered(api, contact(1, 123, "lin@example.com"))
    delivered(api, [deletion(3)])
    api.settle()
    caplog.set_level(logging.INFO, logger="leadloop.hooks")
    # Later deliveries: the contact.deletion HubSpot also sends, a late property change, and a
    # retry of a delivery refused before the deletion, beside another contact's events.
    later = [
        hubspot_event(4, "contact.deletion", 123),
        hubspot_event(
            5, "contact.propertyChange", 123, propertyName="jobtitle", propertyValue="CTO"
        ),
        *contact(10, 456, "kim@example.com"),
    ]
    assert delivered(api, later) == {"accepted": 2, "ignored": 2}
    assert delivered(api, contact(1, 123, "lin@example.com")) == {"accepted": 0, "ignored": 2}
    api.settle()
    assert gone(api, "anonymous_id", CONTACT) and gone(api, "email", "lin@example.com")
    assert rows(api, "SELECT COUNT(*) FROM events WHERE anonymous_id = ?", CONTACT) == [(0,)]
    assert not gone(api, "email", "kim@example.com")
    lines = [r.getMessage() for r in caplog.records if r.name == "leadloop.hooks"]
    assert lines == [
        "inbound source default/hubspot: 2 events of privacy-deleted contacts dropped",
        "inbound source default/hubspot: 2 events of privacy-deleted contacts dropped",
    ]
    # What is kept of the contact is a digest of its id, not the id.
    kept = rows(api, "SELECT * FROM erased_ids")
    assert not any(CONTACT in str(v) for row in kept for v in row)
    assert [len(d) == 64 and set(d) <= set("0123456789abcdef") for _ws, d, _at in kept] == [True]


def test_a_deletion_of_a_contact_not_heard_of_yet_drops_its_later_events(running: Api) -> None:
    api = running
    assert delivered(api, [deletion(1, object_id=777)]) == {"accepted": 1, "ignored": 0}
    assert delivered(api, contact(2, 777, "late@example.com")) == {"accepted": 0, "ignored": 2}
    api.settle()
    assert gone(api, "anonymous_id", "hubspot:62515:contact:777")
    assert gone(api, "email", "late@example.com")


def test_several_deletions_in_one_delivery_erase_each_person(running: Api) -> None:
    api = running
    people = {100 + i: f"p{i}@example.com" for i in range(5)}
    for i, (object_id, email) in enumerate(people.items()):
        delivered(api, contact(10 * i + 1, object_id, email))
    delivered(api, contact(90, 999, "stays@example.com"))
    api.settle()
    deletions = [deletion(200 + i, object_id) for i, object_id in enumerate(people)]
    assert delivered(api, deletions) == {"accepted": 5, "ignored": 0}
    api.settle()
    for object_id, email in people.items():
        assert gone(api, "anonymous_id", f"hubspot:62515:contact:{object_id}")
        assert gone(api, "email", email)
    assert not gone(api, "email", "stays@example.com")
    assert rows(api, "SELECT COUNT(*) FROM erased_ids") == [(5,)]


def test_a_delivery_to_a_saturated_writer_is_refused_and_changes_nothing(running: Api) -> None:
    api = running
    delivered(api, contact(1, 123, "lin@example.com"))
    api.settle()
    before = snapshot(api)
    writer = api.engine.writer
    writer._max_pending, writer._pending = 0, 1  # every request now finds the writer "full"
    try:
        r = post_hubspot(api, [deletion(3), *contact(10, 456)], uri=OWN_URL)
    finally:
        writer._max_pending, writer._pending = 50_000, 0
    assert r.status_code == 429, r.text
    assert r.headers["retry-after"].isdigit()
    api.settle()
    assert snapshot(api) == before
    assert rows(api, "SELECT COUNT(*) FROM erased_ids") == [(0,)]


def test_deliveries_waiting_for_the_writer_count_towards_its_limit(running: Api) -> None:
    """A HubSpot delivery is written by a job, not an append; while it waits for the writer its
    events are pending all the same, so the next delivery over the limit is a 429 at once
    instead of one more job queued without bound."""
    api = running
    writer = api.engine.writer
    held, release = threading.Event(), threading.Event()
    writer.submit(lambda _conn: held.set() or release.wait(30))
    assert held.wait(30)
    answers: dict[str, Any] = {}

    def post(name: str, first_id: int) -> threading.Thread:
        events = [hubspot_event(first_id + i, "contact.creation", first_id + i) for i in range(100)]
        thread = threading.Thread(
            target=lambda: answers.__setitem__(name, post_hubspot(api, events, uri=OWN_URL))
        )
        thread.start()
        return thread

    writer._max_pending = 150
    try:
        first = post("first", 1000)
        # Generous waits (a loaded CI machine answers slowly, not wrongly): the first
        # delivery's events must be pending before the second comes, and a second one queued
        # behind the held writer would still be waiting after 30 s.
        eventually(lambda: writer.pending >= 100, timeout=30)
        second = post("second", 2000)
        second.join(30)
        assert not second.is_alive(), "the second delivery was queued behind the first"
        assert answers["second"].status_code == 429, answers["second"].text
    finally:
        release.set()
        writer._max_pending = 50_000
    first.join(30)
    assert answers["first"].status_code == 200, answers["first"].text
    second.join(30)
    api.settle()
    assert writer.pending == 0
    assert rows(api, "SELECT COUNT(*) FROM events") == [(100,)]


def test_the_erased_contact_id_from_another_sender_starts_nobody(with_crm: Api) -> None:
    """A sender that links HubSpot's objects to people (a `standard` source, the tracking API's
    batch) sends the contact's anonymous id too: after the deletion, its events of that id are
    dropped as HubSpot's are, and the others it sends are kept."""
    api = with_crm
    delivered(api, contact(1, 123, "lin@example.com"))
    delivered(api, [deletion(3)])
    api.settle()
    linked = {"type": "identify", "anonymousId": CONTACT, "userId": "crm-lin"}
    body = json.dumps({"batch": [{**linked, "traits": {"email": "lin@example.com"}}]})
    r = api.client.post(CRM, content=body, headers=standard_headers(api, body, "msg_link"))
    assert r.status_code == 200, r.text
    assert r.json() == {"accepted": 0, "ignored": 1}
    batch = [
        {**linked, "type": "track", "event": "Deal Linked"},
        {"type": "track", "anonymousId": "web-2", "event": "Kept"},
    ]
    r = api.client.post("/v1/batch", json={"batch": batch}, headers=api.basic())
    assert r.status_code == 200, r.text
    api.settle()
    assert gone(api, "anonymous_id", CONTACT) and gone(api, "user_id", "crm-lin")
    assert gone(api, "email", "lin@example.com")
    assert rows(api, "SELECT COUNT(*) FROM events WHERE anonymous_id = ?", CONTACT) == [(0,)]
    assert not gone(api, "anonymous_id", "web-2")


def test_an_alias_from_the_erased_contact_id_links_nobody(running: Api) -> None:
    """An alias's `previousId` names the contact as much as an `anonymousId` does: after the
    deletion, an alias from the contact's id to a user is dropped, and the graph does not give
    the erased id to anyone again."""
    api = running
    delivered(api, contact(1, 123, "lin@example.com"))
    delivered(api, [deletion(3)])
    api.settle()
    track(api, "alias", {"userId": "crm-lin", "previousId": CONTACT})
    track(api, "identify", {"userId": "crm-lin", "traits": {"plan": "pro"}})
    api.settle()
    assert gone(api, "anonymous_id", CONTACT)
    assert rows(api, "SELECT COUNT(*) FROM events WHERE previous_id = ?", CONTACT) == [(0,)]
    assert not gone(api, "user_id", "crm-lin")


def test_a_deletion_that_repeats_a_key_is_refused_and_erases_no_one(held: Api) -> None:
    """`subscriptionType` twice: read by its last value the event erases the contact, by its
    first (as the signer's parser may) it is a property change. Neither reading is taken."""
    api = held
    delivered(api, contact(1, 123, "lin@example.com"))
    process_all(api)
    before = snapshot(api)
    body = json.dumps([deletion(4)]).replace(
        '"subscriptionType": "contact.privacyDeletion"',
        '"subscriptionType": "contact.propertyChange", '
        '"subscriptionType": "contact.privacyDeletion"',
    )
    r = api.client.post(HUBSPOT, content=body, headers=hubspot_headers(api, body, uri=OWN_URL))
    assert (r.status_code, r.json()["code"]) == (400, "duplicate_key"), r.text
    assert "'subscriptionType'" in r.json()["message"]
    process_all(api)
    assert snapshot(api) == before
    assert not gone(api, "email", "lin@example.com")
