"""A journey's `update_profile` step sets the scoring stage on its own (no `stage_rules` entry
needed), with a ledger line naming the journey, on both backends."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.contract.conftest import Harness
from tests.contract.test_journeys_seed import HOUR
from tests.contract.test_journeys_variants import fragment_harness

pytestmark = pytest.mark.usefixtures("channels_env")

FRAGMENT = """journeys:
  flows:
    - id: promote
      entry: { event: Demo Booked }
      steps:
        - { id: settle_in, type: wait, duration: 1h, next: set_sql }
        - { id: set_sql, type: update_profile, stage: SQL, traits: { demo: booked } }
"""


@pytest.fixture
def promote(backend_url: str, tmp_path: Path) -> Iterator[Harness]:
    yield from fragment_harness(backend_url, tmp_path, FRAGMENT)


def test_the_step_sets_the_stage_and_the_ledger_says_which_journey(promote: Harness) -> None:
    h = promote
    h.send(
        {"type": "identify", "userId": "demo", "traits": {"email": "demo@acme.test"}},
        {"type": "track", "userId": "demo", "event": "Demo Booked"},
    )
    h.settle()
    before = h.profile("user_id", "demo")
    assert before is not None and before["scores"]["lead"]["stage"] == "subscriber"
    h.advance(HOUR)
    after = h.profile("user_id", "demo")
    assert after is not None
    assert after["scores"]["lead"]["stage"] == "SQL"
    assert after["traits"]["demo"] == "booked"
    rows = h.sql(
        "SELECT rule, stage, reason FROM score_ledger WHERE profile_id = ? AND kind = 'stage'",
        str(after["id"]),
    )
    assert rows == [
        ("journey:promote/set_sql", "SQL", "subscriber → SQL (journey promote/set_sql)")
    ]
    status = h.sql("SELECT status FROM journey_instances WHERE profile_id = ?", str(after["id"]))
    assert status == [("completed",)]
