"""A sender cannot take the id of an event the engine will write: internal events (timers,
stage actions, journey updates, channel receipts) and checkout or CRM hooks share the log's
unique key with every client's `messageId`, so a client id in their namespaces is kept apart."""

from __future__ import annotations

from tests.contract.conftest import Harness


def internal(h: Harness, name: str) -> list[str]:
    rows = h.sql("SELECT message_id FROM events WHERE type = 'internal' AND event = ?", name)
    return [str(r[0]) for r in rows]


def test_a_client_id_in_the_engines_namespace_does_not_drop_its_event(
    scoring_harness: Harness,
) -> None:
    h = scoring_harness
    # The stage action's event id is derived from the id of the event that crosses the
    # threshold: a client that knows its own next id can send that id first.
    h.send(
        {"type": "track", "userId": "vp", "event": "Noise", "messageId": "scoring:lead:MQL:m-last"},
        {"type": "track", "userId": "vp", "event": "Noise", "messageId": "stripe-evt_1"},
    )
    h.send(
        {"type": "identify", "userId": "vp", "traits": {"title": "VP Sales"}},
        {"type": "group", "userId": "vp", "groupId": "acme", "traits": {"employees": 500}},
        {"type": "page", "userId": "vp", "properties": {"path": "/"}},
        {"type": "page", "userId": "vp", "properties": {"path": "/pricing"}},
    )
    h.send(
        {"type": "track", "userId": "vp", "event": "Lead Magnet Downloaded", "messageId": "m-last"}
    )
    h.settle()
    assert internal(h, "Lead Qualified") == ["scoring:lead:MQL:m-last"]
    noise = h.sql("SELECT message_id FROM events WHERE event = 'Noise' ORDER BY seq")
    assert [str(r[0]) for r in noise] == [
        "client:scoring:lead:MQL:m-last",
        "client:stripe-evt_1",
    ]
    # Kept apart the same way every time: a client's retry is still recognised as a repeat.
    h.send({"type": "track", "userId": "vp", "event": "Noise", "messageId": "stripe-evt_1"})
    h.settle()
    assert len(h.sql("SELECT 1 FROM events WHERE event = 'Noise'")) == 2
