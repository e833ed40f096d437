"""A journey whose goal already holds when its trigger fires enters nobody (issue 4's seed
journey: "a profile becomes a lead below MQL"), on both backends."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from leadloop.journeys import queries
from tests.contract.conftest import Harness
from tests.contract.test_journeys_seed import journey_harness, messages, playbook_with_journeys

pytestmark = pytest.mark.usefixtures("channels_env")

LEAD_MAGNET = "          event: Lead Magnet Downloaded\n          points: 15"


@pytest.fixture
def jumpy(backend_url: str, tmp_path: Path) -> Iterator[Harness]:
    """The seed journey, with a lead magnet worth 55: one download goes past lead and MQL."""
    path = Path(playbook_with_journeys(tmp_path))
    text = path.read_text(encoding="utf-8")
    assert LEAD_MAGNET in text
    path.write_text(text.replace(LEAD_MAGNET, LEAD_MAGNET.replace("15", "55")), encoding="utf-8")
    h = journey_harness(backend_url, str(path))
    try:
        yield h
    finally:
        h.engine.stop()


def jump_past_mql(h: Harness, user: str) -> None:
    h.send(
        {"type": "identify", "userId": user, "traits": {"email": f"{user}@acme.test"}},
        {"type": "track", "userId": user, "event": "Lead Magnet Downloaded"},
    )
    h.settle()


def test_one_event_past_mql_enters_nobody_and_sends_no_guide(jumpy: Harness) -> None:
    h = jumpy
    jump_past_mql(h, "jump")
    prof = h.profile("user_id", "jump")
    assert prof is not None and prof["scores"]["lead"]["stage"] == "MQL"
    pid = str(prof["id"])
    assert messages(h, pid) == []
    assert h.sql("SELECT COUNT(*) FROM journey_instances WHERE profile_id = ?", pid) == [(0,)]
    skipped = h.engine.read_sync(lambda c: queries.not_entered(c, "default", pid))
    assert [(s["journey"], s["times"]) for s in skipped] == [("lead_nurture", 1)]
    assert skipped[0]["reason"] == "goal already reached: lead moved to MQL"
    (raw,) = h.sql("SELECT state FROM journey_profiles WHERE profile_id = ?", pid)[0]
    assert json.loads(raw)["lead_nurture"].get("entries", 0) == 0
    # Counts: nobody entered, in either group, so no conversion is credited to the journey.
    overview = h.engine.read_sync(
        lambda c: queries.journeys_overview(c, "default", {"lead_nurture": "x"})
    )
    (nurture,) = [j for j in overview if j["id"] == "lead_nurture"]
    assert nurture["treated"] == {"entered": 0, "converted": 0}
    assert nurture["holdout"] == {"entered": 0, "converted": 0}
    assert nurture["not_entered"] == {"profiles": 1, "times": 1}
    # A second profile skipping counts apart.
    jump_past_mql(h, "jump2")
    overview = h.engine.read_sync(
        lambda c: queries.journeys_overview(c, "default", {"lead_nurture": "x"})
    )
    (nurture,) = [j for j in overview if j["id"] == "lead_nurture"]
    assert nurture["not_entered"] == {"profiles": 2, "times": 2}


def test_a_skip_is_no_entry_a_later_move_down_to_lead_enters(jumpy: Harness) -> None:
    h = jumpy
    jump_past_mql(h, "back")
    h.send(
        {
            "type": "track",
            "userId": "back",
            "event": "CRM Stage Changed",
            "properties": {"stage": "lead"},
        }
    )
    h.settle()
    prof = h.profile("user_id", "back")
    assert prof is not None and prof["scores"]["lead"]["stage"] == "lead"
    pid = str(prof["id"])
    assert [(c, t) for c, t, _ in messages(h, pid)] == [("email", "guide")]
    rows = h.sql("SELECT status, step FROM journey_instances WHERE profile_id = ?", pid)
    assert rows == [("waiting", "wait_click")]
