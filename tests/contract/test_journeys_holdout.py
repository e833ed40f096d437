"""A journey with a holdout, on both backends: held-out entrants get nothing, and
`GET /api/v1/journeys` reports both groups' sizes and conversions and the lift."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest

from tests.contract.conftest import Harness
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


def signed_up(
    h: Harness, prefix: str, count: int, share: float
) -> tuple[dict[str, str], list[str], list[str]]:
    """`count` people sign up and enter `offer`: their profile ids by user, then the users held
    out (by `held_out` at `share`) and the users treated."""
    users = [f"{prefix}{i}" for i in range(count)]
    pids = people(h, users)
    h.send(*({"type": "track", "userId": u, "event": "Signed Up"} for u in users))
    h.settle()
    held = [u for u in users if held_out("offer", pids[u], share)]
    return pids, held, [u for u in users if u not in held]


def test_holdout_entrants_get_nothing_and_the_api_reports_lift(
    backend_url: str, tmp_path: Path
) -> None:
    with flows(backend_url, tmp_path, HOLDOUT) as h:
        pids, held, treated = signed_up(h, "h", 20, 0.3)
        window_ends = h.engine.clock.now() + 30 * DAY  # the default conversion window
        assert held and treated  # both groups exist for these ids
        for user in held:
            pid = pids[user]
            assert instances(h, pid, "offer") == [("holdout", None, "")]
            assert outbox(h, "message", pid) == [] and sends(h, pid) == []
            assert timers(h, pid) == [window_ends]
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
        for user in held[2:]:  # held out until the conversion window ends
            assert instances(h, pids[user], "offer") == [("holdout", None, "")]
        (journey,) = admin_get(h, "/api/v1/journeys")["journeys"]
        assert journey["holdout"] == {"entered": len(held), "converted": 2}
        assert journey["treated"] == {"entered": len(treated), "converted": 3}
        assert journey["lift"] == 3 / len(treated) - 2 / len(held)
        version = journey["live_version"]

        def count(step: str | None, status: str, n: int) -> dict[str, Any]:
            return {"version": version, "step": step, "status": status, "count": n}

        # Ended instances (no step) first, then by step id, on both backends alike.
        # Past their last step, treated ones wait for the goal until the window ends too.
        assert journey["steps"] == [
            count(None, "converted", 2),
            count(None, "holdout", len(held) - 2),
            count(None, "waiting", len(treated) - 3),
            count("pause", "converted", 3),
        ]
        h.advance(23 * DAY)
        (journey,) = admin_get(h, "/api/v1/journeys")["journeys"]
        assert journey["steps"] == [
            count(None, "completed", len(treated) - 3),
            count(None, "converted", 2),
            count(None, "ended", len(held) - 2),
            count("pause", "converted", 3),
        ]


WINDOW = HOLDOUT.replace(
    "holdout: 0.3", "reentry: always\n      holdout: 0.5\n      conversion_window: 10d"
).replace("duration: 7d", "duration: 2d")


def test_both_groups_convert_within_the_same_window(backend_url: str, tmp_path: Path) -> None:
    """A held-out instance never ended, so its profile counted as converted whenever it bought,
    while a treated one counted only until its last step: lift was biased against the journey,
    and held-out profiles never entered again under `reentry: always`. Both groups are now
    measured over `conversion_window` from entry: a conversion at the same delay counts the
    same in both, and one after the window counts in neither."""
    with flows(backend_url, tmp_path, WINDOW) as h:
        users = [f"w{i}" for i in range(16)]
        pids = people(h, users)
        h.send(*({"type": "track", "userId": u, "event": "Signed Up"} for u in users))
        h.settle()
        entered = h.engine.clock.now()
        held = [u for u in users if held_out("offer", pids[u], 0.5)]
        treated = [u for u in users if u not in held]
        assert len(held) >= 2 and len(treated) >= 2  # both groups exist for these ids
        for user in held:
            assert timers(h, pids[user]) == [entered + 10 * DAY]
        h.advance(5 * DAY)  # treated ones are past their last step, still within the window
        for user in treated[1:]:
            assert instances(h, pids[user], "offer") == [("waiting", None, "")]
        for user in (held[0], treated[0]):  # the same delay in each group
            track(h, user, "Order Completed")
            assert instances(h, pids[user], "offer")[0][0] == "converted"
        h.advance(6 * DAY)  # past the window
        for user in (held[1], treated[1]):
            track(h, user, "Order Completed")
        for user in held[1:]:
            assert instances(h, pids[user], "offer") == [
                ("ended", None, "conversion window over: goal not reached")
            ]
        for user in treated[1:]:
            assert instances(h, pids[user], "offer") == [("completed", None, "reached the end")]
        (journey,) = admin_get(h, "/api/v1/journeys")["journeys"]
        assert journey["holdout"] == {"entered": len(held), "converted": 1}
        assert journey["treated"] == {"entered": len(treated), "converted": 1}
        assert journey["lift"] == 1 / len(treated) - 1 / len(held)
        track(h, held[1], "Signed Up")  # the window is over: a held-out profile enters again
        assert [i[0] for i in instances(h, pids[held[1]], "offer")] == ["ended", "holdout"]


# The window is shorter than the journey.
LONG = WINDOW.replace("      reentry: always\n", "").replace("duration: 2d", "duration: 20d")


def test_a_treated_conversion_after_the_window_does_not_count(
    backend_url: str, tmp_path: Path
) -> None:
    """A journey longer than its window: its steps go on, and its goal still ends it, but a
    conversion after the window is not counted for lift (no held-out one could be)."""
    with flows(backend_url, tmp_path, LONG) as h:
        users = [f"l{i}" for i in range(8)]
        pids = people(h, users)
        h.send(*({"type": "track", "userId": u, "event": "Signed Up"} for u in users))
        h.settle()
        treated = [u for u in users if not held_out("offer", pids[u], 0.5)]
        h.advance(12 * DAY)
        track(h, treated[0], "Order Completed")
        assert instances(h, pids[treated[0]], "offer") == [
            ("converted", "pause", "goal reached by Order Completed")
        ]
        (journey,) = admin_get(h, "/api/v1/journeys")["journeys"]
        assert journey["treated"] == {"entered": len(treated), "converted": 0}
