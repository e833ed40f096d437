"""Scores of two profiles merged by a shared email, with the merge in the same batch as the
absorbed profile's first events or in a later one, on both backends."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import msgspec
import pytest

from leadloop.log.store import event_from_row
from leadloop.scoring import queries, replay
from leadloop.scoring.model import ScoreState
from leadloop.testing import WebhookReceiver, eventually
from tests.contract.conftest import EXAMPLE_PLAYBOOK, Harness, make_harness


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
    # Nothing overlaps (fit on one side, the magnet on the other): the merge adds 0 to the
    # sum of the two profiles' lines, which the survivor's ledger now shows together.
    merge = h.sql("SELECT points, total, reason FROM score_ledger WHERE kind = 'merge'")
    assert [(points, total) for points, total, _ in merge] == [(0, 52)]
    assert "gives 52 against 52 added up" in merge[0][2]
    h.send({"type": "page", "anonymousId": "web-2", "properties": {"path": "/pricing/x"}})
    h.settle()
    assert h.sql("SELECT COUNT(*) FROM events WHERE event = 'Lead Qualified'") == [(1,)]


def test_a_merge_promotes_to_a_stage_the_merged_history_reached_before(
    scoring_harness: Harness,
) -> None:
    """Together the person's events passed 50 (a VP's 40 and the CRM's lead magnet, 55) before
    the title changed; apart, neither profile did. The merged score is 40, under the threshold,
    yet the person did qualify: a rescore of the log says MQL, and so does the merge."""
    h = scoring_harness
    h.send(
        {"type": "identify", "anonymousId": "web-3", "traits": {"title": "VP Sales"}},
        {"type": "page", "anonymousId": "web-3", "properties": {"path": "/pricing"}},
        {"type": "track", "anonymousId": "web-3", "event": "Lead Magnet Downloaded"},
        {"type": "track", "anonymousId": "crm-3", "event": "Lead Magnet Downloaded"},
        {"type": "identify", "anonymousId": "web-3", "traits": {"title": "Engineer"}},
        {"type": "identify", "anonymousId": "crm-3", "traits": {"email": "e3@x.test"}},
    )
    h.settle()
    h.send({"type": "identify", "anonymousId": "web-3", "traits": {"email": "e3@x.test"}})
    h.settle()
    prof = h.profile("anonymous_id", "crm-3")
    assert prof is not None
    s = prof["scores"]["lead"]
    assert (s["score"], s["stage"]) == (40, "MQL")
    assert h.sql("SELECT COUNT(*) FROM events WHERE event = 'Lead Qualified'") == [(1,)]
    moves = h.sql("SELECT reason FROM score_ledger WHERE kind = 'stage' AND stage = 'MQL'")
    assert moves == [("lead → MQL (merge)",)]


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


def test_the_survivors_ledger_adds_up_to_the_merged_score(scoring_harness: Harness) -> None:
    """Both profiles have the senior title: the person's fit counts once, and the merge line
    takes back what adding the two scores up would have counted twice."""
    h = scoring_harness
    vp = {"title": "VP Sales"}
    h.send(
        {"type": "identify", "anonymousId": "web-3", "traits": vp},
        {"type": "page", "anonymousId": "web-3", "properties": {"path": "/pricing"}},
        {"type": "identify", "userId": "crm-3", "traits": {**vp, "email": "c@x.test"}},
        {"type": "track", "userId": "crm-3", "event": "Lead Magnet Downloaded"},
    )
    h.settle()
    h.send({"type": "identify", "userId": "crm-3", "anonymousId": "web-3"})
    h.settle()
    prof = h.profile("user_id", "crm-3")
    assert prof is not None
    s = prof["scores"]["lead"]
    assert (s["score"], s["fit"], s["engagement"]) == (40, 15, 25)
    pid = str(prof["id"])
    lines = h.engine.read_sync(lambda c: queries.ledger(c, "default", pid, "lead", 0, 100))
    assert sum(line["points"] for line in lines) == 40
    owners = {line["profile_id"] for line in lines}
    assert len(owners) == 2 and pid in owners
    (merge,) = [line for line in lines if line["kind"] == "merge"]
    assert merge["points"] == -15 and merge["total"] == 40
    # `leadloop explain` says which lines were earned on the profile since merged.
    (other,) = owners - {pid}
    out = subprocess.run(
        [sys.executable, "-m", "leadloop", "explain", "crm-3"],
        env={**os.environ, "LEADLOOP_DATABASE_URL": h.engine.url.url},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    pricing = [line for line in out.stdout.splitlines() if "[pricing_page]" in line]
    assert len(pricing) == 1 and pricing[0].endswith(f"(on {other}, since merged)")


def test_the_sales_webhook_of_a_merge_gives_the_reasons_from_both_profiles(
    backend_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    receiver = WebhookReceiver(secret)
    monkeypatch.setenv("LEADLOOP_SALES_WEBHOOK_URL", receiver.url)
    monkeypatch.setenv("LEADLOOP_SALES_WEBHOOK_SECRET", secret)
    h = make_harness(backend_url, EXAMPLE_PLAYBOOK)
    try:
        h.send(
            {"type": "identify", "anonymousId": "web-4", "traits": {"title": "VP Marketing"}},
            {
                "type": "group",
                "anonymousId": "web-4",
                "groupId": "g4",
                "traits": {"employees": 900},
            },
            {"type": "page", "anonymousId": "web-4", "properties": {"path": "/pricing"}},
            {"type": "identify", "userId": "crm-4", "traits": {"email": "d@x.test"}},
            {"type": "track", "userId": "crm-4", "event": "Lead Magnet Downloaded"},
        )
        h.settle()
        h.send({"type": "identify", "userId": "crm-4", "anonymousId": "web-4"})
        h.settle()
        eventually(lambda: len(receiver.deliveries) == 1, timeout=30)
        body = json.loads(receiver.deliveries[0]["body"])
        rules = sorted(r["rule"] for r in body["reasons"] if r["rule"])
        assert rules == ["company_200_plus", "lead_magnet", "pricing_page", "senior_title"]
        assert sum(r["points"] for r in body["reasons"]) == body["score"]["total"] == 50
    finally:
        h.engine.stop()
        receiver.close()
