"""A `score` entry (a crossing) on a score whose points fade by `half_life`, through the real
processor on a manual clock, on both backends: fading carries the score under `lt 5` with no
event, and the profile enters at that instant (a timer, like a segment's), or at its next
event if that comes first, never twice."""

from __future__ import annotations

from pathlib import Path

import pytest

from leadloop.testing import eventually
from tests.contract.conftest import Harness
from tests.contract.journeys_helpers import (
    DAY,
    HOUR,
    flows,
    instances,
    person,
    pricing,
    timers,
)
from tests.contract.test_journeys_seed import playbook_with_journeys
from tests.contract.test_journeys_segment_time import (
    FADED_AFTER,
    _download,
    _entered,
    _fade_twice,
    _fading,
    _replay,
    _snapshot,
)
from tests.contract.test_journeys_triggers import SCORE, _score

pytestmark = pytest.mark.usefixtures("channels_env")

DONE = ("completed", None, "reached the end")

FLOWS = """
journeys:
  templates:
    email: [cooled, hot]
  flows:"""
COOLED = """
    - id: cooled
      entry: { score: { model: lead, op: lt, value: 5 } }
      reentry: always
      steps:
        - { id: cooled, type: send, channel: email, template: cooled }"""
HOT = """
    - id: hot
      entry: { score: { model: lead, op: gte, value: 10 } }
      reentry: always
      steps:
        - { id: hot, type: send, channel: email, template: hot }
"""
CROSSINGS = FLOWS + COOLED + HOT
HOT_ONLY = FLOWS + HOT


def _keys(h: Harness, pid: str) -> list[str]:
    rows = h.sql("SELECT key FROM timers WHERE profile_id = ? AND key LIKE ?", pid, "segment:%")
    return sorted(str(r[0]) for r in rows)


def test_a_silent_profile_enters_when_its_score_fades_under_the_crossing(
    backend_url: str, tmp_path: Path
) -> None:
    """The download's 15 points fade under 5 after log2(3) half-lives: the profile enters at
    that instant (within a millisecond after it), with no event of its own. The `gte 10`
    crossing, which fading can only take the profile out of, has no timer."""
    h = _fading(backend_url, tmp_path, CROSSINGS)
    try:
        pid, download = _download(h, "f")
        assert instances(h, pid, "hot") == [DONE]
        assert instances(h, pid, "cooled") == []  # 0 before the download: already under 5
        assert _keys(h, pid) == [f"segment:cooled:{pid}"]
        [due] = timers(h, pid, "segment")
        assert download + FADED_AFTER < due < download + FADED_AFTER + 1
        h.advance(FADED_AFTER - HOUR)
        assert instances(h, pid, "cooled") == []
        h.advance(2 * HOUR)
        assert instances(h, pid, "cooled") == [DONE]
        assert _entered(h, pid)[-1] == due
        # Under 5 for good while silent: nothing left waiting, no second entry.
        assert timers(h, pid, "segment") == []
        h.advance(90 * DAY)
        person(h, "f")
        assert instances(h, pid, "cooled") == [DONE]
        assert instances(h, pid, "hot") == [DONE]
    finally:
        h.engine.stop()


def test_an_event_after_the_fade_enters_once_and_the_timer_then_changes_nothing(
    backend_url: str, tmp_path: Path
) -> None:
    """The event is in the log before the timer fires (the timer loop is stopped to order
    them): it reads the faded score before and after it, and enters as the score crossed
    since the last evaluation; the timer's firing then finds the crossing taken."""
    h = _fading(backend_url, tmp_path, CROSSINGS)
    try:
        pid, _download_at = _download(h, "e")
        h.engine.timers.stop()
        assert h.engine.manual_clock is not None
        h.engine.manual_clock.advance(FADED_AFTER + DAY)
        person(h, "e")  # an identify: no points
        [(received,)] = h.sql(
            "SELECT MAX(received_at) FROM events WHERE profile_id = ? AND type = 'identify'", pid
        )
        assert instances(h, pid, "cooled") == [DONE]
        assert _entered(h, pid)[-1] == float(received)
        assert h.engine.timers.fire_now() == 1  # the timer set at the download
        h.settle()
        assert instances(h, pid, "cooled") == [DONE]
    finally:
        h.engine.stop()


def test_a_score_that_faded_out_of_a_gte_crossing_unseen_enters_when_an_event_lifts_it(
    backend_url: str, tmp_path: Path
) -> None:
    """Fading takes the profile out of `gte 10` with no timer to see it (time only takes it
    out); an event that lifts the score over 10 again is a new crossing."""
    h = _fading(backend_url, tmp_path, HOT_ONLY)
    try:
        pid, _download_at = _download(h, "g")  # 15
        assert instances(h, pid, "hot") == [DONE]
        h.advance(30 * DAY)  # 15 / 8: under 10 since day 6
        pricing(h, "g")  # 10 more
        assert 10 <= _score(h, "g") < 15
        assert instances(h, pid, "hot") == [DONE, DONE]
    finally:
        h.engine.stop()


def test_a_replay_of_the_log_enters_on_fading_the_same_way(
    backend_url: str, tmp_path: Path
) -> None:
    h = _fading(backend_url, tmp_path, CROSSINGS)
    try:
        pid = _fade_twice(h, "r")  # the second download is back over 5 and over 10
        person(h, "r")

        before = _snapshot(h)
        assert instances(h, pid, "cooled") == [DONE, DONE]
        assert instances(h, pid, "hot") == [DONE, DONE]
        _replay(h)
        assert _snapshot(h) == before
    finally:
        h.engine.stop()


def test_a_rescore_that_carries_the_score_across_enters_at_the_next_event(
    backend_url: str, tmp_path: Path
) -> None:
    """A rescore evaluates nobody; the profile's next event finds the test holding where it
    did not at its last evaluation, as after a fade (docs/journeys.md, Rescores)."""
    with flows(backend_url, tmp_path, SCORE) as h:
        pid = person(h, "r")
        pricing(h, "r")  # 10: under 20
        assert instances(h, pid, "hot") == []
        text = Path(playbook_with_journeys(tmp_path, SCORE, "rescored.yaml")).read_text("utf-8")
        ten = "          points: 10\n        - id: lead_magnet"
        assert ten in text
        changed = tmp_path / "rescored.yaml"
        changed.write_text(text.replace(ten, ten.replace("10", "30")), "utf-8")
        h.engine.apply_playbook_file(str(changed))
        h.engine.refresh_playbooks()
        eventually(lambda: _score(h, "r") == 30)
        assert instances(h, pid, "hot") == []
        person(h, "r")  # no points: the rescored 30 crosses here
        assert instances(h, pid, "hot") == [DONE]
        person(h, "r")
        assert instances(h, pid, "hot") == [DONE]
