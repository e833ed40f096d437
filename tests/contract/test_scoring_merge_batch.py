"""Scores of two profiles merged by a shared email, with the merge in the same batch as the
absorbed profile's first events or in a later one, on both backends."""

from __future__ import annotations

import msgspec
import pytest

from leadloop.log.store import event_from_row
from leadloop.scoring import replay
from leadloop.scoring.model import ScoreState
from tests.contract.conftest import Harness


def events(h: Harness, settle_between: bool) -> None:
    """A web visitor and a CRM contact, each its own profile, until the visitor identifies with
    the contact's email."""
    h.send({"type": "page", "anonymousId": "web-1", "properties": {"path": "/pricing"}})
    h.send({"type": "identify", "anonymousId": "crm-1", "traits": {"email": "x@acme.test"}})
    h.send({"type": "track", "anonymousId": "crm-1", "event": "Lead Magnet Downloaded"})
    if settle_between:
        h.settle()
    h.send({"type": "identify", "anonymousId": "web-1", "traits": {"email": "x@acme.test"}})
    h.settle()


@pytest.mark.parametrize("settle_between", [False, True], ids=["one_batch", "two_batches"])
def test_a_merge_keeps_both_profiles_points(scoring_harness: Harness, settle_between: bool) -> None:
    h = scoring_harness
    events(h, settle_between)
    web = h.profile("anonymous_id", "web-1")
    crm = h.profile("anonymous_id", "crm-1")
    assert web is not None and crm is not None and web["id"] == crm["id"]
    assert web["scores"]["lead"]["engagement"] == 25
    live = {r[0] for r in h.sql("SELECT id FROM profiles WHERE merged_into IS NULL")}
    owners = {r[0] for r in h.sql("SELECT DISTINCT profile_id FROM score_ledger")}
    stored = {r[0] for r in h.sql("SELECT id FROM profiles")}
    assert owners <= stored, f"ledger lines of profiles never stored: {owners - stored}"
    assert live == {web["id"]}


def test_a_merge_that_crosses_the_threshold_qualifies_once(scoring_harness: Harness) -> None:
    """A VP's visits on one device (37) and the lead magnet from the CRM (15) are one lead at
    52 once merged: qualified by the merge, once, and the ledger says why."""
    h = scoring_harness
    h.send(
        {"type": "identify", "anonymousId": "web-2", "traits": {"title": "VP Marketing"}},
        {"type": "group", "anonymousId": "web-2", "groupId": "big", "traits": {"employees": 500}},
        {"type": "page", "anonymousId": "web-2", "properties": {"path": "/"}},
        {"type": "page", "anonymousId": "web-2", "properties": {"path": "/pricing"}},
        {"type": "identify", "anonymousId": "crm-2", "traits": {"email": "vp@big.test"}},
        {"type": "track", "anonymousId": "crm-2", "event": "Lead Magnet Downloaded"},
    )
    h.settle()
    assert h.sql("SELECT COUNT(*) FROM events WHERE event = 'Lead Qualified'") == [(0,)]
    h.send({"type": "identify", "anonymousId": "web-2", "traits": {"email": "vp@big.test"}})
    h.settle()
    prof = h.profile("anonymous_id", "crm-2")
    assert prof is not None
    s = prof["scores"]["lead"]
    assert (s["score"], s["fit"], s["engagement"], s["stage"]) == (52, 25, 27, "MQL")
    assert h.sql("SELECT COUNT(*) FROM events WHERE event = 'Lead Qualified'") == [(1,)]
    merge = h.sql("SELECT points, total, reason FROM score_ledger WHERE kind = 'merge'")
    assert (
        len(merge) == 1 and merge[0][1] == 52 and "rescored from the merged history" in merge[0][2]
    )
    h.send({"type": "page", "anonymousId": "web-2", "properties": {"path": "/pricing/x"}})
    h.settle()
    assert h.sql("SELECT COUNT(*) FROM events WHERE event = 'Lead Qualified'") == [(1,)]


@pytest.mark.parametrize("settle_between", [False, True], ids=["one_batch", "two_batches"])
def test_the_merged_score_is_what_a_replay_of_the_log_gives(
    scoring_harness: Harness, settle_between: bool
) -> None:
    h = scoring_harness
    events(h, settle_between)
    # Events after the merge go on from the merged state.
    h.send({"type": "track", "anonymousId": "web-1", "event": "Lead Magnet Downloaded"})
    h.settle()
    prof = h.profile("anonymous_id", "web-1")
    assert prof is not None
    pid = str(prof["id"])
    (model,) = h.engine.scoring_models("default")
    rows = h.sql(f"SELECT {replay._COLUMNS} FROM events WHERE profile_id = ? ORDER BY seq", pid)
    history = [event_from_row(tuple(r[:12])) for r in rows]
    replayed = replay.replay(pid, history, model, h.engine.clock.now()).state
    (stored,) = h.sql("SELECT state FROM scores WHERE profile_id = ?", pid)[0]
    live = msgspec.json.decode(stored, type=ScoreState)
    assert (live.fit, live.steady, live.usage) == (replayed.fit, replayed.steady, replayed.usage)
    assert h.sql("SELECT COUNT(*) FROM scores") == [(1,)]
