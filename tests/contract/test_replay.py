"""Rebuilding derived state from the log gives the same profiles and scores, without
repeating any effect."""

from __future__ import annotations

from leadloop.log.rebuild import reset_derived_state
from tests.contract.conftest import Harness
from tests.contract.test_scoring_pipeline import seed_lead

DAY = 86400.0


def snapshot(h: Harness) -> tuple[object, ...]:
    return (
        h.sql("SELECT id, state, merged_into FROM profiles ORDER BY id"),
        h.sql("SELECT type, value, profile_id FROM identities ORDER BY type, value"),
        h.sql("SELECT profile_id, model, state FROM scores ORDER BY profile_id, model"),
        h.sql("SELECT key, due_at FROM timers ORDER BY key"),
        h.sql("SELECT COUNT(*) FROM events"),
        h.sql("SELECT COUNT(*) FROM outbox"),
        h.sql("SELECT id, journey_id, step, status FROM journey_instances ORDER BY id"),
        h.sql("SELECT message_id, channel, outcome FROM sends ORDER BY message_id"),
        h.sql("SELECT kind, idempotency_key FROM outbox ORDER BY kind, idempotency_key"),
    )


def test_replay_rebuilds_the_same_state(scoring_harness: Harness) -> None:
    h = scoring_harness
    seed_lead(h, "vp-1")
    h.send({"type": "page", "anonymousId": "a-1", "properties": {"path": "/pricing"}})
    h.send({"type": "identify", "anonymousId": "a-1", "userId": "vp-2", "traits": {"title": "VP"}})
    h.advance(31 * DAY)
    before = snapshot(h)
    h.engine.writer.submit(reset_derived_state).result()
    h.engine.processor.wake()
    h.settle()
    assert snapshot(h) == before
