"""A `score` entry (a crossing), pure: decided against whether the test held at the profile's
last evaluation, as its membership recorded it, so a score that faded across the threshold
between two events enters at the next one; and the timer at the instant fading alone makes
the test hold, for a profile that sends nothing more."""

from __future__ import annotations

import math
from typing import Any

from leadloop.journeys import decide
from leadloop.journeys.model import (
    Journey,
    Membership,
    Reentry,
    ScoreReading,
    ScoreTrigger,
    WaitStep,
)
from leadloop.journeys.model import Test as Condition
from leadloop.journeys.segments import WatchSegment, next_change, watch_segment
from leadloop.journeys.state import _merge_membership
from leadloop.log.model import Event
from leadloop.scoring.model import Predicate
from tests.unit.journeys.test_segments import DAY, T0, Facts, fading


def crossing(op: str, value: float, reentry: str = "always") -> Journey:
    return Journey(
        id="j",
        version="v1",
        trigger=ScoreTrigger("lead", Predicate(op, value)),  # type: ignore[arg-type]
        steps=(WaitStep("w", duration=1.0),),
        reentry=Reentry(reentry),  # type: ignore[arg-type]
    )


def visit(at: float) -> Event:
    return Event(
        seq=1,
        workspace_id="ws",
        message_id=f"m-{at}",
        type="track",
        event="Visited",
        timestamp=at,
        received_at=at,
        body={},
    )


def fires(j: Journey, membership: Membership, reading: ScoreReading, at: float) -> Any:
    return decide.trigger_fires(j, membership, visit(at), (), reading, Facts(), at)


COLD = crossing("lt", 5)


def test_a_score_that_faded_across_between_two_events_enters_at_the_next_one() -> None:
    """15 at the download, recorded as not under 5; the next event, twenty days later, reads
    the faded 3.75 both before and after it (nothing it does moves the score): the test
    holds now and did not at the last evaluation, so the profile crosses here."""
    seen = Membership(score_above=False)
    faded = ScoreReading(before=3.75, after=3.75)
    entered, updated = fires(COLD, seen, faded, T0 + 20 * DAY)
    assert entered and updated.score_above is True
    # Still under 5 at the event after: no second crossing.
    again, _same = fires(COLD, updated, ScoreReading(3.0, 3.0), T0 + 21 * DAY)
    assert not again


def test_the_first_evaluation_compares_with_the_score_just_before_the_event() -> None:
    """No recorded value (a new journey, a new profile): the score the event found decides
    what held before it, and the value is recorded either way."""
    entered, updated = fires(COLD, Membership(), ScoreReading(0.0, 0.0), T0)
    assert not entered and updated.score_above is True  # a new profile at 0: already under
    entered, updated = fires(COLD, Membership(), ScoreReading(0.0, 15.0), T0)
    assert not entered and updated.score_above is False
    hot = crossing("gte", 20)
    entered, _updated = fires(hot, Membership(), ScoreReading(10.0, 25.0), T0)
    assert entered


def test_failing_at_the_last_evaluation_or_just_before_the_event_makes_a_crossing() -> None:
    """Fading only lowers a score between evaluations: a `gte 10` profile recorded at 15 may
    have faded to 2 unseen (no timer: time only takes it out), and an event lifting it to 12
    crosses again. Held both at the last evaluation and just before: no crossing."""
    hot = crossing("gte", 10)
    seen = Membership(score_above=True)
    assert fires(hot, seen, ScoreReading(2.0, 12.0), T0)[0]
    assert not fires(hot, seen, ScoreReading(14.0, 24.0), T0)[0]
    over = Membership(score_above=False)
    assert fires(COLD, over, ScoreReading(3.0, 3.0), T0)[0]
    assert not fires(COLD, over, ScoreReading(3.0, 6.0), T0)[0]


def test_a_changed_test_is_not_compared_with_what_the_old_one_read() -> None:
    """A new version of the journey lowers the line from 20 to 10 under a profile at 15: the
    score did not cross it, so the profile does not enter (as a new journey at 10 would
    not enter it); the score moving across the new line does."""
    seen = Membership(score_above=False, score_test="lead gte 20")
    lower = crossing("gte", 10)
    entered, updated = fires(lower, seen, ScoreReading(15.0, 15.0), T0)
    assert not entered
    assert updated.score_above is True and updated.score_test == "lead gte 10"
    seen = Membership(score_above=False, score_test="lead gte 20")
    assert fires(lower, seen, ScoreReading(5.0, 15.0), T0)[0]
    # Recorded against this very test, or before tests were recorded: compared with.
    for recorded in ("lead gte 10", None):
        assert fires(
            lower, Membership(score_above=False, score_test=recorded), ScoreReading(15.0, 15.0), T0
        )[0]


def test_a_merge_keeps_what_held_at_the_survivors_last_evaluation() -> None:
    ours = Membership(score_above=False, score_test="lead lt 5")
    theirs = Membership(score_above=True, score_test="lead lt 4")
    merged = _merge_membership(ours, theirs)
    assert (merged.score_above, merged.score_test) == (False, "lead lt 5")
    merged = _merge_membership(Membership(), theirs)
    assert (merged.score_above, merged.score_test) == (True, "lead lt 4")


def test_a_fading_score_under_a_crossing_gets_a_timer_at_the_instant_it_passes() -> None:
    facts = Facts(scores={"lead": fading(15)})
    membership = Membership(score_above=False)
    updated, change = watch_segment(COLD, membership, facts, T0)
    due = next_change((Condition("score", "lead", Predicate("lt", 5)),), facts, T0)
    assert due is not None and T0 + 10 * DAY * math.log2(3) < due < T0 + 16 * DAY
    assert change == WatchSegment(due) and updated.segment_due == due


def test_no_timer_where_fading_cannot_start_the_test() -> None:
    """A score only fades down: over a threshold it can only leave the test; under one it
    already holds; a journey entered once under `once` is never entered again."""
    facts = Facts(scores={"lead": fading(15)})
    assert watch_segment(crossing("gt", 10), Membership(), facts, T0)[1] is None
    assert watch_segment(crossing("gte", 10), Membership(), facts, T0)[1] is None
    assert watch_segment(crossing("lt", 20), Membership(), facts, T0)[1] is None
    entered = Membership(entries=1, score_above=False)
    assert watch_segment(crossing("lt", 5, "once"), entered, facts, T0)[1] is None
