"""A send step's variant set through the processor: each profile's queued message carries the
template its stable hash chose, on both backends."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from leadloop.journeys.hashing import choose_variant
from leadloop.journeys.model import Variant
from tests.contract.conftest import Harness
from tests.contract.test_journeys_seed import journey_harness, playbook_with_journeys

pytestmark = pytest.mark.usefixtures("channels_env")

FRAGMENT = """journeys:
  templates:
    email: [guide, case_study]
  flows:
    - id: ab
      entry: { event: Guide Requested }
      steps:
        - id: send_guide
          type: send
          channel: email
          variants:
            - { template: guide, weight: 1 }
            - { template: case_study, weight: 1 }
"""
VARIANTS = (Variant("guide", 1), Variant("case_study", 1))


def fragment_harness(backend_url: str, tmp_path: Path, fragment: str) -> Iterator[Harness]:
    """A journey harness on the example playbook with `fragment` as its journeys section."""
    h = journey_harness(backend_url, playbook_with_journeys(tmp_path, fragment))
    try:
        yield h
    finally:
        h.engine.stop()


@pytest.fixture
def ab(backend_url: str, tmp_path: Path) -> Iterator[Harness]:
    yield from fragment_harness(backend_url, tmp_path, FRAGMENT)


def test_each_profile_gets_the_variant_its_hash_chose(ab: Harness) -> None:
    h = ab
    users = [f"v{i}" for i in range(16)]
    for user in users:
        h.send(
            {"type": "identify", "userId": user, "traits": {"email": f"{user}@acme.test"}},
            {"type": "track", "userId": user, "event": "Guide Requested"},
        )
    h.settle()
    seen = set()
    for user in users:
        prof = h.profile("user_id", user)
        assert prof is not None
        pid = str(prof["id"])
        chosen = VARIANTS[choose_variant(VARIANTS, "ab", "send_guide", pid)].template
        rows = h.sql(
            "SELECT payload FROM outbox JOIN outbox_payloads USING (id) "
            "WHERE kind = 'message' AND profile_id = ?",
            pid,
        )
        (payload,) = [json.loads(r[0]) for r in rows]
        assert (payload["template"], payload["variant"]) == (chosen, chosen)
        recorded = h.sql("SELECT template, outcome FROM sends WHERE profile_id = ?", pid)
        assert recorded == [(chosen, "queued")]
        seen.add(chosen)
    assert seen == {"guide", "case_study"}
