"""Journey entry triggers through the real processor on a manual clock, on both backends: an
event with property conditions, a score crossing, and entering a segment (traits, scores and
event counts in a window). Every journey here re-enters `always`, so a missing entry is the
trigger's doing, not the re-entry rule's."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.contract.conftest import Harness
from tests.contract.journeys_helpers import (
    DAY,
    flows,
    instances,
    person,
    pricing,
    templates,
    track,
)

pytestmark = pytest.mark.usefixtures("channels_env")

DONE = ("completed", None, "reached the end")

EVENT = """
journeys:
  templates:
    email: [hello]
  flows:
    - id: trial
      entry:
        event: Trial Started
        where:
          - { field: properties.plan, op: equals, value: pro }
          - { field: properties.seats, op: gte, value: 5 }
      reentry: always
      steps:
        - { id: hello, type: send, channel: email, template: hello }
"""


def test_an_event_enters_only_when_its_property_conditions_hold(
    backend_url: str, tmp_path: Path
) -> None:
    with flows(backend_url, tmp_path, EVENT) as h:
        pid = person(h, "t")
        track(h, "t", "Trial Started", plan="free", seats=10)  # plan differs
        track(h, "t", "Trial Started", plan="pro", seats=2)  # too few seats
        track(h, "t", "Trial Started", plan="Pro", seats=10)  # no ignore_case: no match
        track(h, "t", "Trial Ended", plan="pro", seats=10)  # another event
        assert instances(h, pid, "trial") == []
        assert templates(h, pid) == []
        track(h, "t", "Trial Started", plan="pro", seats=5)
        assert instances(h, pid, "trial") == [DONE]
        assert templates(h, pid) == ["hello"]


SCORE = """
journeys:
  templates:
    email: [hot, warm]
  flows:
    - id: hot
      entry: { score: { model: lead, op: gte, value: 20 } }
      reentry: always
      steps:
        - { id: hot, type: send, channel: email, template: hot }
"""
SECOND_SCORE_JOURNEY = """
    - id: warm
      entry: { score: { model: lead, op: gte, value: 20 } }
      reentry: always
      steps:
        - { id: warm, type: send, channel: email, template: warm }
"""


def _score(h: Harness, user: str) -> float:
    prof = h.profile("user_id", user)
    assert prof is not None
    return float(prof["scores"]["lead"]["score"])


def test_a_score_crossing_upward_enters_and_staying_above_does_not(
    backend_url: str, tmp_path: Path
) -> None:
    with flows(backend_url, tmp_path, SCORE) as h:
        pid = person(h, "s")
        pricing(h, "s")  # 10: below 20
        assert _score(h, "s") == 10 and instances(h, pid, "hot") == []
        track(h, "s", "Lead Magnet Downloaded")  # 25: crosses 20
        assert _score(h, "s") == 25 and instances(h, pid, "hot") == [DONE]
        track(h, "s", "Lead Magnet Downloaded")  # 40: still above, no crossing
        pricing(h, "s")  # 50
        assert _score(h, "s") == 50 and instances(h, pid, "hot") == [DONE]
        # Decay (20 points per 30 days) takes it back to 10, below the line; crossing again
        # enters again.
        h.advance(60 * DAY)
        track(h, "s", "Lead Magnet Downloaded")
        assert _score(h, "s") == 25
        assert instances(h, pid, "hot") == [DONE, DONE]
        assert templates(h, pid) == ["hot", "hot"]


def test_two_journeys_on_the_same_score_crossing_both_enter(
    backend_url: str, tmp_path: Path
) -> None:
    with flows(backend_url, tmp_path, SCORE + SECOND_SCORE_JOURNEY) as h:
        pid = person(h, "two")
        pricing(h, "two")
        track(h, "two", "Lead Magnet Downloaded")
        assert instances(h, pid, "hot") == [DONE]
        assert instances(h, pid, "warm") == [DONE]
        assert templates(h, pid) == ["hot", "warm"]


SEGMENT = """
journeys:
  templates:
    email: [seg]
  flows:
    - id: seg
      entry:
        segment:
          - { trait: plan, op: equals, value: enterprise }
          - { score: lead, op: gte, value: 10 }
          - { event: Pricing Viewed, within: 7d, op: gte, value: 2 }
      reentry: always
      steps:
        - { id: seg, type: send, channel: email, template: seg }
"""


def test_a_segment_enters_when_its_last_condition_becomes_true(
    backend_url: str, tmp_path: Path
) -> None:
    with flows(backend_url, tmp_path, SEGMENT) as h:
        # The trait comes last.
        by_trait = person(h, "trait", plan="free")
        pricing(h, "trait")
        track(h, "trait", "Pricing Viewed")
        track(h, "trait", "Pricing Viewed")
        assert instances(h, by_trait, "seg") == []
        person(h, "trait", plan="enterprise")
        assert instances(h, by_trait, "seg") == [DONE]
        # The score comes last.
        by_score = person(h, "score", plan="enterprise")
        track(h, "score", "Pricing Viewed")
        track(h, "score", "Pricing Viewed")
        assert instances(h, by_score, "seg") == []
        pricing(h, "score")
        assert instances(h, by_score, "seg") == [DONE]
        # The event count comes last, and only events inside the 7-day window count.
        by_count = person(h, "count", plan="enterprise")
        pricing(h, "count")
        track(h, "count", "Pricing Viewed")
        h.advance(8 * DAY)
        track(h, "count", "Pricing Viewed")  # the first one is out of the window: 1 in 7 days
        assert instances(h, by_count, "seg") == []
        track(h, "count", "Pricing Viewed")
        assert instances(h, by_count, "seg") == [DONE]
        # Still in the segment: no new entry.
        track(h, "count", "Pricing Viewed")
        assert instances(h, by_count, "seg") == [DONE]
        # Out of it (the views age out of the window), then in again: a second entry.
        h.advance(8 * DAY)
        track(h, "count", "Pricing Viewed")
        assert instances(h, by_count, "seg") == [DONE]
        track(h, "count", "Pricing Viewed")
        assert instances(h, by_count, "seg") == [DONE, DONE]
        assert templates(h, by_count) == ["seg", "seg"]


OWN_UPDATES = """
journeys:
  flows:
    - id: starter
      entry: { event: Trial Started }
      steps:
        - { id: tag, type: update_profile, add_tags: [trial] }
    - id: tagger
      entry: { event: Journey Profile Updated }
      reentry: always
      steps:
        - { id: tag, type: update_profile, add_tags: [seen] }
"""


def test_a_journey_is_not_entered_by_its_own_profile_updates(
    backend_url: str, tmp_path: Path
) -> None:
    """`tagger` enters on any journey's profile update and makes one itself: its update ended
    the instance and then entered it again, one instance and one event after another for good."""
    with flows(backend_url, tmp_path, OWN_UPDATES) as h:
        pid = person(h, "t")
        track(h, "t", "Trial Started")  # settles: the log stops growing
        assert instances(h, pid, "starter") == [DONE]
        assert instances(h, pid, "tagger") == [DONE]  # from starter's update, not its own
        profile = h.profile("user_id", "t")
        assert profile is not None and set(profile["traits"]["tags"]) == {"trial", "seen"}


# One condition: a single view within the window puts the profile in.
RECENT = SEGMENT.replace(
    """
          - { trait: plan, op: equals, value: enterprise }
          - { score: lead, op: gte, value: 10 }
          - { event: Pricing Viewed, within: 7d, op: gte, value: 2 }
""",
    """
          - { event: Pricing Viewed, within: 7d }
""",
)
assert RECENT != SEGMENT


def test_a_profile_that_left_a_window_segment_as_time_passed_enters_on_its_next_event(
    backend_url: str, tmp_path: Path
) -> None:
    """Its view ages out with no event to notice; the next view, which alone puts it back in,
    is a second entry (it was taken for staying in, and `always` never entered again)."""
    with flows(backend_url, tmp_path, RECENT) as h:
        pid = person(h, "back")
        track(h, "back", "Pricing Viewed")
        assert instances(h, pid, "seg") == [DONE]
        h.advance(DAY)
        track(h, "back", "Pricing Viewed")  # still in: no entry
        assert instances(h, pid, "seg") == [DONE]
        h.advance(8 * DAY)
        track(h, "back", "Pricing Viewed")
        assert instances(h, pid, "seg") == [DONE, DONE]
