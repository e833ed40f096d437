"""Traits a journey's `update_profile` step sets are scored at the step's own `Journey Profile
Updated` event: the fit they change, the stage it crosses, its webhook and the journeys entered
on the crossing do not wait for the profile's next event, which may never come. A replay of
the log scores them at the same event."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest

from leadloop.log.rebuild import reset_derived_state
from leadloop.scoring import replay
from leadloop.scoring.model import ScoreState
from tests.contract.conftest import Harness
from tests.contract.journeys_helpers import flows, instances, outbox, person, track

pytestmark = pytest.mark.usefixtures("channels_env")

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
FRAGMENT = """journeys:
  flows:
    - id: promote
      entry: { event: Demo Booked }
      steps:
        - { id: set_title, type: update_profile, traits: { title: VP } }
    - id: hot
      entry: { score: { model: lead, op: gte, value: 50 } }
      steps:
        - { id: note, type: update_profile, add_tags: [hot] }
"""


@pytest.fixture
def h(backend_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Harness]:
    monkeypatch.setenv("LEADLOOP_SALES_WEBHOOK_URL", "http://127.0.0.1:9/sales")
    monkeypatch.setenv("LEADLOOP_SALES_WEBHOOK_SECRET", SECRET)
    with flows(backend_url, tmp_path, FRAGMENT) as harness:
        yield harness


def _lead_at_35(h: Harness) -> str:
    """A lead with 35 points besides the title: company size 10, the guide 15, pricing 10."""
    pid = person(h, "ann", company_size=250)
    track(h, "ann", "Lead Magnet Downloaded")
    h.send({"type": "page", "userId": "ann", "properties": {"path": "/pricing"}})
    h.settle()
    return pid


def test_the_title_a_step_sets_is_scored_at_the_steps_event(h: Harness) -> None:
    pid = _lead_at_35(h)
    found = h.profile("user_id", "ann")
    assert found is not None and found["scores"]["lead"]["score"] == 35
    track(h, "ann", "Demo Booked")  # no later event: the update's own event must score it
    found = h.profile("user_id", "ann")
    assert found is not None and found["traits"]["title"] == "VP"
    lead = found["scores"]["lead"]
    assert lead["score"] == 50 and lead["stage"] == "MQL"
    fit = h.sql(
        "SELECT rule, points, reason FROM score_ledger WHERE profile_id = ? AND kind = 'fit' "
        "AND rule = 'senior_title'",
        pid,
    )
    assert fit == [
        (
            "senior_title",
            15.0,
            "fit rule senior_title holds (title='VP') (journey promote/set_title)",
        )
    ]
    moved = h.sql(
        "SELECT l.reason, e.event FROM score_ledger l JOIN events e ON e.message_id = l.message_id "
        "WHERE l.profile_id = ? AND l.kind = 'stage' AND l.stage = 'MQL'",
        pid,
    )
    assert moved == [("lead → MQL (threshold)", "Journey Profile Updated")]
    assert [dest for dest, _ in outbox(h, "webhook", pid)] == ["sales"]
    assert h.sql("SELECT COUNT(*) FROM events WHERE event = 'Lead Qualified'") == [(1,)]
    # The crossing enters the score journey, whose own update then runs.
    assert [status for status, _, _ in instances(h, pid, "hot")] == ["completed"]
    again = h.profile("user_id", "ann")
    assert again is not None and again["traits"]["tags"] == ["hot"]


def _states(h: Harness) -> list[tuple[str, str, str]]:
    return h.sql("SELECT profile_id, model, state FROM scores ORDER BY profile_id, model")


def _ledger(h: Harness) -> list[tuple[object, ...]]:
    return h.sql(
        "SELECT profile_id, model, kind, rule, points, total, stage, reason, message_id "
        "FROM score_ledger ORDER BY profile_id, model, at, id"
    )


def test_a_replay_scores_the_update_where_live_processing_did(h: Harness) -> None:
    pid = _lead_at_35(h)
    track(h, "ann", "Demo Booked")
    scores, ledger = _states(h), _ledger(h)
    events = h.engine.read_sync(lambda c: replay.history_of(c, "default", pid))
    (model,) = h.engine.scoring_models("default")
    replayed = replay.replay(pid, events, model, h.engine.clock.now()).state
    (stored,) = h.sql("SELECT state FROM scores WHERE profile_id = ?", pid)
    live = msgspec.json.decode(stored[0], type=ScoreState)
    assert (replayed.fit, replayed.fit_rules, replayed.stage) == (
        live.fit,
        live.fit_rules,
        live.stage,
    )
    assert live.fit == 25.0 and live.stage == "MQL"
    h.engine.writer.submit(reset_derived_state).result()
    h.engine.processor.wake()
    h.settle()
    assert _states(h) == scores and _ledger(h) == ledger
