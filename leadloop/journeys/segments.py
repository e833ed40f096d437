"""Segments that time alone changes, pure: when a profile's events leave a segment's `within`
windows, or its score fades under a `half_life`, its membership can change with no event of
its own to notice ("no visit in 30 days" is entered by staying silent, "score below 5" by
fading). The instant is computable from the events in the window and from the score's state,
so the shell keeps one timer per profile and segment journey at the next instant the segment's
value changes, when time alone would then enter the profile; its firing is an event, and the
segment is evaluated again then. A `score` entry (a crossing) on a fading score gets the same
timer, its test read as a segment of one condition. Step decay needs nothing here: each step
is a timer firing, an event at which segments and crossings are evaluated.

Like scoring's decay timer, the timer is moved lazily: one already due earlier stays (an event
in the window only postpones the change it watches), and when it fires and nothing changed, the
evaluation sets the next one. Profiles of journeys without a window, profiles time can only
take out of a segment, and profiles a journey can never enter again get none.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections.abc import Sequence

import msgspec
from msgspec.structs import replace

from leadloop.journeys.decide import crossing_test
from leadloop.journeys.evaluate import all_hold, holds
from leadloop.journeys.model import (
    Facts,
    Journey,
    Membership,
    ScoreTrigger,
    SegmentTrigger,
    Test,
)
from leadloop.scoring.match import check
from leadloop.scoring.model import NUMERIC_OPERATORS


class WatchSegment(msgspec.Struct, frozen=True):
    """Move the profile's timer for the journey's segment to `due_at`."""

    due_at: float


class UnwatchSegment(msgspec.Struct, frozen=True):
    """Delete the profile's timer for the journey's segment."""


def timer_key(journey_id: str, profile_id: str) -> str:
    return f"segment:{journey_id}:{profile_id}"


def leaves_window(received_at: float, within: float) -> float:
    """The first instant at which an event received at `received_at` is out of a `within`
    window. A count reads events received at or after `at - within` (`Facts.event_count`), so
    the event is in until strictly after `received_at + within`, as the float subtraction reads
    it: the timer must not fire while the event still counts."""
    due = math.nextafter(received_at + within, math.inf)
    while due - within <= received_at:
        due = math.nextafter(due, math.inf)
    return due


def next_change(tests: Sequence[Test], facts: Facts, at: float) -> float | None:
    """The first instant after `at` at which the segment's value differs from its value at
    `at` by time alone (no event in between), when time alone goes on to bring the profile into
    it at that instant or later; else None. So a segment time only takes profiles out of (at
    least two views in 7 days, a score at least 10 that fades) needs no timer: the next event
    sees the views gone. Neither does one without a `within` window or a fading score, nor one
    a condition time does not move keeps out (traits, stages, scores that do not fade and
    counts without a window stay as they are)."""
    windowed = [t for t in tests if t.kind == "event" and t.within is not None]
    fading = [t for t in tests if _fades(t, facts, at)]
    if not windowed and not fading:
        return None
    moving = (*windowed, *fading)
    fixed = (t for t in fixed_first(tests) if t not in moving)
    if not all(holds(t, facts, None, at) for t in fixed):
        return None
    times: list[list[float]] = []
    instants: set[float] = set()
    for test in windowed:
        assert test.within is not None
        found = sorted(facts.event_times(test.subject, at - test.within, test.where))
        times.append(found)
        instants.update(leaves_window(received, test.within) for received in found)
    for test in fading:
        turn = _score_turns(test, facts, at)
        if turn is not None:
            instants.add(turn)

    def value(instant: float) -> bool:
        for test, found in zip(windowed, times, strict=True):
            assert test.within is not None and test.test is not None
            count = len(found) - bisect_left(found, instant - test.within)
            if check(count, test.test) == test.negate:
                return False
        return all(_score_holds(test, facts, instant) for test in fading)

    first = None
    before = value(at)
    for instant in sorted(i for i in instants if i > at):
        now = value(instant)
        if now != before:
            first = instant if first is None else first
            if now:
                return first
        before = now
    return None


RESOLUTION = 1e-3
"""How close to the instant a fading score passes a segment's test its timer is set: within
a millisecond after it, where the score read then has passed it."""
LONGEST = 1e12
"""Seconds (about 30,000 years) past which a score still fading is not looked for."""


def _fades(test: Test, facts: Facts, at: float) -> bool:
    """Whether a score comparison reads a score that time alone moves: one with points
    fading by half-life. Only numeric comparisons (`gt`, `gte`, `lt`, `lte`) are followed:
    a score that only goes down passes each of them at most once."""
    if test.kind != "score" or test.test is None or test.test.op not in NUMERIC_OPERATORS:
        return False
    return facts.score_at(test.subject, at) != facts.score_at(test.subject, math.inf)


def may_hold(test: Test, facts: Facts, at: float) -> bool:
    """Whether a trait, score or stage test holds at `at`, or a fading score's will once
    faded: a sweep reads events only for the profiles these let through."""
    if holds(test, facts, None, at):
        return True
    return _fades(test, facts, at) and _score_holds(test, facts, math.inf)


def _score_holds(test: Test, facts: Facts, at: float) -> bool:
    assert test.test is not None
    return check(facts.score_at(test.subject, at), test.test) != test.negate


def _score_turns(test: Test, facts: Facts, at: float) -> float | None:
    """The first instant after `at` at which a fading score's test reads otherwise than at
    `at` (to within `RESOLUTION`, never before it); None when it never does. The score read
    at an instant, `facts.score_at`, only goes down between events, so the test turns once
    at most, and bisection finds where."""
    now = _score_holds(test, facts, at)
    if _score_holds(test, facts, math.inf) == now:
        return None
    low, span = at, 3600.0
    while _score_holds(test, facts, at + span) == now:
        if span > LONGEST:
            return None
        low, span = at + span, span * 2
    high = at + span
    while high - low > RESOLUTION:
        middle = low + (high - low) / 2
        if middle <= low or middle >= high:
            break
        if _score_holds(test, facts, middle) == now:
            low = middle
        else:
            high = middle
    return high


def watch_segment(
    journey: Journey, membership: Membership, facts: Facts, at: float
) -> tuple[Membership, WatchSegment | UnwatchSegment | None]:
    """After the profile's segment was evaluated at `at`: where its timer should be, and the
    membership recording it. A timer due after `at` and no later than the next change stays;
    one due at or before `at` has fired (its event is being decided, or was)."""
    tests = watched_tests(journey)
    due = None
    if tests is not None and not _never_again(journey, membership):
        due = next_change(tests, facts, at)
    pending = membership.segment_due
    existing = pending if pending is not None and pending > at else None
    if due is None:
        if pending is None:
            return membership, None
        return replace(membership, segment_due=None), (
            UnwatchSegment() if existing is not None else None
        )
    # Strictly later than the firing being decided: a timer due at the same instant would
    # fire under the same event id and be dropped as a duplicate.
    due = max(due, math.nextafter(at, math.inf))
    if existing is not None and existing <= due:
        return membership, None
    return replace(membership, segment_due=due), WatchSegment(due)


def watched_tests(journey: Journey) -> tuple[Test, ...] | None:
    """What the journey's timer watches: its segment's conditions, or a `score` entry's test
    as a segment of that one condition (both fire when it starts to hold); None for the
    other triggers, which time alone never fires."""
    trigger = journey.trigger
    if isinstance(trigger, SegmentTrigger):
        return trigger.tests
    if isinstance(trigger, ScoreTrigger):
        return (Test("score", trigger.model, trigger.test),)
    return None


def sweep_segment(
    journey: Journey, membership: Membership, facts: Facts, at: float
) -> tuple[Membership, WatchSegment | UnwatchSegment | None]:
    """When the journey's segment (or `score` entry) is new or changed (`journeys.sweep`):
    where the profile's timer should be. A profile whose place in the segment differs from what its membership
    says (in it now and never seen in, or seen in under the old segment and out now) gets its
    timer due at `at`: the firing evaluates the segment in the processor as any event does,
    entering it under the journey's re-entry rule, and sets the next timer. Any other gets
    the timer its next event would set; a `score` entry's, at the instant fading carries the
    score across its test (`_swept_crossing`)."""
    trigger = journey.trigger
    if isinstance(trigger, SegmentTrigger) and not _never_again(journey, membership):
        now_in = all_hold(fixed_first(trigger.tests), facts, None, at)
        if now_in != membership.in_segment:
            return replace(membership, segment_due=at), WatchSegment(at)
    updated, change = watch_segment(journey, membership, facts, at)
    if isinstance(trigger, ScoreTrigger):
        updated = _swept_crossing(trigger, updated, facts, at)
    return updated, change


def _swept_crossing(
    trigger: ScoreTrigger, membership: Membership, facts: Facts, at: float
) -> Membership:
    """A `score` entry's membership once swept at `at`. Where fading will carry the score
    across the test (a timer is pending) the test fails now, and the sweep records it as an
    event's evaluation would (`decide.score_crosses`): the timer's firing, or an event after
    the fade, then finds the crossing. A replay of the log, where the journey is live from
    the first event, records the same at the profile's last event before the sweep (a score
    fading towards the line was not past it then either), so it decides the same. Nothing is
    recorded elsewhere: a profile already past the line has crossed nothing (its next event
    decides as at a first evaluation), and a rescored profile's record stays for its next
    event, which enters it if the rescore carried it across."""
    due = membership.segment_due
    test = Test("score", trigger.model, trigger.test)
    if due is None or due <= at or _score_holds(test, facts, at):
        return membership
    return replace(membership, score_above=False, score_test=crossing_test(trigger))


def fixed_first(tests: Sequence[Test]) -> list[Test]:
    """The tests, those on traits, scores and stages first: a profile they keep out is known
    out before its events are asked for (a sweep of every profile reads no events for it)."""
    return sorted(tests, key=lambda t: t.kind == "event")


def _never_again(journey: Journey, membership: Membership) -> bool:
    """Entered once under `reentry: once`: no change of its segment can enter it again."""
    return journey.reentry.mode == "once" and membership.entries > 0
