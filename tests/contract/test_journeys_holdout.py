"""A journey with a holdout, on both backends: held-out entrants get nothing, and
`GET /api/v1/journeys` reports both groups' sizes and conversions and the lift."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest

from tests.contract.journeys_helpers import (
    DAY,
    admin_get,
    flows,
    instances,
    outbox,
    people,
    sends,
    timers,
    track,
)

pytestmark = pytest.mark.usefixtures("channels_env")

HOLDOUT = """
journeys:
  templates:
    email: [offer]
  flows:
    - id: offer
      entry: { event: Signed Up }
      holdout: 0.3
      goal: { event: Order Completed }
      steps:
        - { id: offer, type: send, channel: email, template: offer, next: pause }
        - { id: pause, type: wait, duration: 7d }
"""


def held_out(journey: str, profile_id: str, share: float) -> bool:
    """The documented assignment, computed here on its own: a stable hash of journey and
    profile (SHA-256 of the parts joined by U+001F; its first 52 bits as a fraction)."""
    digest = hashlib.sha256(f"holdout\x1f{journey}\x1f{profile_id}".encode()).hexdigest()
    return int(digest[:13], 16) / float(1 << 52) < share


def test_holdout_entrants_get_nothing_and_the_api_reports_lift(
    backend_url: str, tmp_path: Path
) -> None:
    with flows(backend_url, tmp_path, HOLDOUT) as h:
        users = [f"h{i}" for i in range(20)]
        pids = people(h, users)
        h.send(*({"type": "track", "userId": u, "event": "Signed Up"} for u in users))
        h.settle()
        held = [u for u in users if held_out("offer", pids[u], 0.3)]
        treated = [u for u in users if u not in held]
        assert 0 < len(held) < len(users)  # both groups exist for these ids
        for user in held:
            pid = pids[user]
            assert instances(h, pid, "offer") == [("holdout", None, "")]
            assert outbox(h, "message", pid) == [] and sends(h, pid) == [] and timers(h, pid) == []
        for user in treated:
            assert instances(h, pids[user], "offer") == [("waiting", "pause", "")]
            assert [p["template"] for _d, p in outbox(h, "message", pids[user])] == ["offer"]
        # Two held-out and three treated profiles convert.
        converts = held[:2] + treated[:3]
        for user in converts:
            track(h, user, "Order Completed")
        for user in converts:
            goal = "goal reached by Order Completed"
            step = None if user in held else "pause"
            assert instances(h, pids[user], "offer") == [("converted", step, goal)]
        h.advance(7 * DAY)
        for user in held[2:]:  # held out until the end: no timer ever moves them
            assert instances(h, pids[user], "offer") == [("holdout", None, "")]
        (journey,) = admin_get(h, "/api/v1/journeys")["journeys"]
        assert journey["holdout"] == {"entered": len(held), "converted": 2}
        assert journey["treated"] == {"entered": len(treated), "converted": 3}
        assert journey["lift"] == 3 / len(treated) - 2 / len(held)
        version = journey["live_version"]

        def count(step: str | None, status: str, n: int) -> dict[str, Any]:
            return {"version": version, "step": step, "status": status, "count": n}

        # Ended instances (no step) first, then by step id, on both backends alike.
        assert journey["steps"] == [
            count(None, "completed", len(treated) - 3),
            count(None, "converted", 2),
            count(None, "holdout", len(held) - 2),
            count("pause", "converted", 3),
        ]
