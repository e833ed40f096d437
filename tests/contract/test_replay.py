"""Rebuilding derived state from the log gives the same profiles and scores, without
repeating any effect."""

from __future__ import annotations

from typing import Any

from leadloop.identity.service import IdentityBatch
from leadloop.log.batch import Batch, Timer
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


def test_fired_timers_are_settled_whether_rescheduled_cancelled_or_neither(
    scoring_harness: Harness,
) -> None:
    # A replay meets timer events whose rows it scheduled again: the batch settles them. A key
    # the same batch schedules anew keeps only its new time; a cancelled key is gone; a key
    # that fired at another due time, or did not fire, is left alone.
    h = scoring_harness
    keys = ("t:settled", "t:again", "t:cancelled", "t:later", "t:untouched")

    def run(c: Any) -> None:
        c.executemany(
            "INSERT INTO timers (workspace_id, key, profile_id, due_at, payload) "
            "VALUES (?, ?, 'p_1', ?, '{}')",
            [("default", key, 500.0 if key == "t:later" else 100.0) for key in keys],
        )
        batch = Batch(identity=IdentityBatch(conn=c), now=150.0)
        for key in keys[:4]:
            batch.settle_fired("default", key, 100.0)
        batch.schedule(Timer("default", "t:again", "p_1", 200.0, "Tick", {}))
        batch.cancel("default", "t:cancelled")
        batch.flush(c)

    h.engine.writer.submit(run).result()
    rows = h.sql("SELECT key, due_at FROM timers WHERE key LIKE ? ORDER BY key", "t:%")
    assert [(str(k), float(d)) for k, d in rows] == [
        ("t:again", 200.0),
        ("t:later", 500.0),
        ("t:untouched", 100.0),
    ]
