"""When time alone changes a segment (`journeys.segments`), pure: the instant events leave a
window, the next change of a segment's value, and where the profile's one timer goes."""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from leadloop.journeys.evaluate import all_hold
from leadloop.journeys.model import (
    Journey,
    Membership,
    Reentry,
    ScoreTrigger,
    SegmentTrigger,
    WaitStep,
)
from leadloop.journeys.model import Test as Condition
from leadloop.journeys.segments import (
    RESOLUTION,
    UnwatchSegment,
    WatchSegment,
    leaves_window,
    next_change,
    sweep_segment,
    watch_segment,
)
from leadloop.journeys.sweep import segment_digest
from leadloop.scoring.model import Fading, Predicate, ScoreState, total_at

T0 = 1_800_000_000.0
DAY = 86400.0


@dataclass
class Facts:
    """Events by name, with their receive times; one trait."""

    received: dict[str, list[float]] = field(default_factory=dict)
    traits: dict[str, Any] = field(default_factory=dict)

    asked: list[str] = field(default_factory=list)

    def event_times(self, name: str, since: float | None, where: Any) -> list[float]:
        self.asked.append(name)
        return [t for t in self.received.get(name, []) if since is None or t >= since]

    def event_count(self, name: str, since: float | None, where: Any) -> int:
        return len(self.event_times(name, since, where))

    scores: dict[str, ScoreState] = field(default_factory=dict)
    at: float = T0

    def score(self, model: str) -> float | None:
        return self.score_at(model, self.at)

    def score_at(self, model: str, at: float) -> float | None:
        found = self.scores.get(model)
        return None if found is None else round(total_at(found, at), 6)

    def stage(self, model: str) -> str | None:
        return None


def visited(within: float | None = None, negate: bool = False, at_least: int = 1) -> Condition:
    return Condition("event", "Visited", Predicate("gte", at_least), within=within, negate=negate)


WINBACK = (visited(), visited(30 * DAY, negate=True))


def segment(*tests: Condition, reentry: str = "always") -> Journey:
    return Journey(
        id="j",
        version="v1",
        trigger=SegmentTrigger(tests),
        steps=(WaitStep("w", duration=1.0),),
        reentry=Reentry(reentry),  # type: ignore[arg-type]
    )


@settings(max_examples=300, deadline=None)
@given(
    received=st.floats(min_value=1e6, max_value=4e9, allow_nan=False),
    within=st.floats(min_value=1.0, max_value=4e8, allow_nan=False),
)
def test_an_event_leaves_its_window_at_the_first_instant_a_count_no_longer_reads_it(
    received: float, within: float
) -> None:
    due = leaves_window(received, within)
    assert due - within > received  # out at the timer's instant, not a moment late
    assert due - (received + within) <= 4 * math.ulp(due)


def test_a_silent_profile_enters_the_win_back_segment_when_its_visit_leaves_the_window() -> None:
    facts = Facts({"Visited": [T0]})
    due = next_change(WINBACK, facts, T0)
    assert due is not None and T0 + 30 * DAY < due < T0 + 30 * DAY + 1e-3
    assert not all_hold(WINBACK, facts, None, math.nextafter(due, -math.inf))
    assert all_hold(WINBACK, facts, None, due)
    assert next_change(WINBACK, facts, due) is None  # in for good while silent


def test_the_change_is_the_segments_not_the_first_event_leaving() -> None:
    """Three views in the window: only the last one leaving puts the profile in "no view in
    7 days", and the second one leaving in "fewer than two"."""
    views = [T0, T0 + DAY, T0 + 2 * DAY]
    facts = Facts({"Visited": views})
    none = next_change((visited(7 * DAY, negate=True),), facts, T0 + 2 * DAY)
    assert none == leaves_window(views[2], 7 * DAY)
    few = next_change((visited(7 * DAY, negate=True, at_least=2),), facts, T0 + 2 * DAY)
    assert few == leaves_window(views[1], 7 * DAY)


def test_a_segment_time_only_takes_profiles_out_of_gets_no_timer() -> None:
    """Its next event sees the views gone (`decide.trigger_fires`); a timer would only wake
    the profile to find it out."""
    facts = Facts({"Visited": [T0, T0 + DAY]})
    assert next_change((visited(7 * DAY, at_least=2),), facts, T0 + DAY) is None
    # Out while a view is recent, in when the last visit leaves: a timer for the entry.
    recent_not_back = (
        Condition("event", "Viewed", Predicate("lt", 1), within=7 * DAY),
        visited(30 * DAY, negate=True),
    )
    both = Facts({"Viewed": [T0 + 25 * DAY], "Visited": [T0]})
    assert next_change(recent_not_back, both, T0 + 25 * DAY) == leaves_window(
        T0 + 25 * DAY, 7 * DAY
    )
    # In now, out when one visit leaves, in again when the other does: the timer is set at
    # the first change, so the membership reads "out" when time brings the profile back in.
    not_one = (Condition("event", "Visited", Predicate("equals", 1), within=30 * DAY, negate=True),)
    twice = Facts({"Visited": [T0, T0 + 10 * DAY]})
    assert all_hold(not_one, twice, None, T0 + 10 * DAY)
    assert next_change(not_one, twice, T0 + 10 * DAY) == leaves_window(T0, 30 * DAY)


def test_time_changes_nothing_without_a_window_or_with_a_fixed_condition_false() -> None:
    facts = Facts({"Visited": [T0]})
    assert next_change((visited(),), facts, T0) is None
    pro = Condition("trait", "plan", Predicate("equals", "pro"))
    assert next_change((pro, *WINBACK), facts, T0) is None
    facts.traits["plan"] = "pro"
    assert next_change((pro, *WINBACK), facts, T0) is not None
    assert next_change(WINBACK, Facts(), T0) is None  # never visited: never in


def test_the_timer_moves_lazily_and_always_strictly_later() -> None:
    j = segment(*WINBACK)
    facts = Facts({"Visited": [T0]})
    member, change = watch_segment(j, Membership(), facts, T0)
    assert isinstance(change, WatchSegment) and member.segment_due == change.due_at
    first = change.due_at
    # A later visit postpones the change: the earlier timer stays, and fires first.
    facts.received["Visited"].append(T0 + 10 * DAY)
    assert watch_segment(j, member, facts, T0 + 10 * DAY) == (member, None)
    # When it fires, nothing changed there: the next change is set.
    member, change = watch_segment(j, member, facts, first)
    assert isinstance(change, WatchSegment) and change.due_at > first
    assert change.due_at == next_change(WINBACK, facts, first)


def test_no_timer_for_a_profile_the_journey_can_never_enter_again() -> None:
    facts = Facts({"Visited": [T0]})
    once = segment(*WINBACK, reentry="once")
    member, change = watch_segment(once, Membership(), facts, T0)
    assert isinstance(change, WatchSegment)
    entered = Membership(entries=1, segment_due=member.segment_due)
    member, change = watch_segment(once, entered, facts, T0 + DAY)
    assert change == UnwatchSegment() and member.segment_due is None
    # A timer that already fired needs no delete.
    due = leaves_window(T0, 30 * DAY)
    fired = Membership(entries=1, segment_due=due)
    assert watch_segment(once, fired, facts, due) == (Membership(entries=1), None)


def test_a_sweep_re_evaluates_now_a_profile_whose_place_in_the_segment_is_not_recorded() -> None:
    """In the segment and never seen in it (a journey just applied): its timer is due now, so
    the processor enters it; seen in under an old segment and out now: due now too, so the
    firing records it out and time can enter it again."""
    j = segment(*WINBACK)
    silent = Facts({"Visited": [T0]})
    at = T0 + 40 * DAY
    member, change = sweep_segment(j, Membership(), silent, at)
    assert change == WatchSegment(at) and member == Membership(segment_due=at)
    recent = Facts({"Visited": [T0, at - DAY]})
    stale = Membership(entries=1, in_segment=True)
    assert sweep_segment(j, stale, recent, at) == (
        Membership(entries=1, in_segment=True, segment_due=at),
        WatchSegment(at),
    )


def test_a_sweep_leaves_the_rest_to_the_timer_an_event_would_set() -> None:
    j = segment(*WINBACK)
    at = T0 + 20 * DAY
    twenty = Facts({"Visited": [T0]})
    assert sweep_segment(j, Membership(), twenty, at) == watch_segment(j, Membership(), twenty, at)
    _member, change = sweep_segment(j, Membership(), twenty, at)
    assert change == WatchSegment(leaves_window(T0, 30 * DAY))
    # Already in and still in: nothing to enter, nothing to watch.
    inside = Membership(entries=1, in_segment=True)
    assert sweep_segment(j, inside, Facts({"Visited": [T0]}), T0 + 40 * DAY) == (inside, None)
    # `once` and entered: never again, whatever the segment says now.
    once = segment(*WINBACK, reentry="once")
    assert sweep_segment(once, Membership(entries=1), twenty, T0 + 40 * DAY) == (
        Membership(entries=1),
        None,
    )


def test_a_profile_a_trait_keeps_out_is_known_out_before_its_events_are_read() -> None:
    """However the conditions are listed: a sweep of every profile reads no events for the
    profiles a trait, score or stage condition excludes."""
    pro = Condition("trait", "plan", Predicate("equals", "pro"))
    j = segment(*WINBACK, pro)
    facts = Facts({"Visited": [T0]}, {"plan": "free"})
    assert sweep_segment(j, Membership(), facts, T0 + 40 * DAY) == (Membership(), None)
    assert facts.asked == []
    facts.traits["plan"] = "pro"
    _member, change = sweep_segment(j, Membership(), facts, T0 + 40 * DAY)
    assert change == WatchSegment(T0 + 40 * DAY) and facts.asked


def fading(points: float, half_life: float = 10 * DAY, fit: float = 0.0) -> ScoreState:
    """A `lead` score of `fit` and `points` awarded at T0 that halve every `half_life`."""
    bucket = Fading(half_life, points, T0)
    return ScoreState(model_id="lead", model_version="v", stage="lead", fit=fit, fading=(bucket,))


def score(op: str, value: float, negate: bool = False) -> Condition:
    return Condition("score", "lead", Predicate(op, value), negate=negate)  # type: ignore[arg-type]


def test_a_fading_score_enters_a_segment_when_the_score_read_then_passes_its_test() -> None:
    facts = Facts(scores={"lead": fading(15)})
    below = (score("lt", 5),)
    due = next_change(below, facts, T0)
    assert due is not None and T0 + 10 * DAY * math.log2(3) < due < T0 + 16 * DAY
    assert all_hold(below, Facts(scores=facts.scores, at=due), None, due)
    assert not all_hold(below, Facts(scores=facts.scores, at=due - RESOLUTION), None, T0)
    # `not: true` on a `gte` reads the same; an event count in the segment must hold too.
    assert next_change((score("gte", 5, negate=True),), facts, T0) == due
    facts.received["Visited"] = [T0]
    assert next_change((visited(), *below), facts, T0) == due
    assert next_change((visited(at_least=2), *below), facts, T0) is None


def test_the_timer_is_due_at_the_later_of_a_window_and_a_fading_score_both_needed() -> None:
    """A win-back for leads gone cold: no visit in 30 days and a score under 5. The visit
    leaves the window first (the score is still 15 / 2**3 there), so the score decides."""
    facts = Facts({"Visited": [T0]}, scores={"lead": fading(15)})
    cold = (*WINBACK, score("lt", 1))
    due = next_change(cold, facts, T0)
    assert due is not None and due > T0 + 30 * DAY
    assert due == next_change((score("lt", 1),), facts, T0)
    # Faster fading: the score passes first, and the window decides.
    quick = Facts({"Visited": [T0]}, scores={"lead": fading(15, half_life=DAY)})
    assert next_change(cold, quick, T0) == leaves_window(T0, 30 * DAY)


def test_no_timer_where_a_fading_score_cannot_bring_the_profile_in() -> None:
    facts = Facts(scores={"lead": fading(15, fit=10)})
    assert next_change((score("gte", 10),), facts, T0) is None  # fades out, never in
    assert next_change((score("lt", 10),), facts, T0) is None  # the fit stays: never under 10
    assert next_change((score("lt", 30),), facts, T0) is None  # already in (25 now)
    assert next_change((score("equals", 10),), facts, T0) is None  # only comparisons
    steady = Facts(scores={"lead": ScoreState(model_id="lead", model_version="v", stage="x")})
    assert next_change((score("lt", 5),), steady, T0) is None
    assert next_change((score("lt", 5),), Facts(), T0) is None  # no score at all
    pro = Condition("trait", "plan", Predicate("equals", "pro"))
    assert next_change((pro, score("lt", 5)), Facts(scores={"lead": fading(15)}), T0) is None


@settings(max_examples=200, deadline=None)
@given(
    points=st.floats(min_value=0.5, max_value=1e4),
    half_life=st.floats(min_value=60.0, max_value=4e7),
    share=st.floats(min_value=0.001, max_value=0.999),
    fit=st.floats(min_value=-50, max_value=50),
)
def test_the_instant_a_fading_score_passes_a_threshold_is_the_first_within_resolution(
    points: float, half_life: float, share: float, fit: float
) -> None:
    state = fading(points, half_life, fit)
    facts = Facts(scores={"lead": state})
    threshold = fit + points * share
    below = (score("lt", threshold),)
    due = next_change(below, facts, T0)
    if all_hold(below, facts, None, T0):
        assert due is None
        return
    assert due is not None
    assert facts.score_at("lead", due) < threshold  # type: ignore[operator]
    assert facts.score_at("lead", due - RESOLUTION) >= threshold  # type: ignore[operator]


def crossing(op: str, value: float, reentry: str = "always") -> Journey:
    return replace(
        segment(reentry=reentry),
        trigger=ScoreTrigger("lead", Predicate(op, value)),  # type: ignore[arg-type]
    )


def test_a_swept_score_entry_records_the_failed_test_where_fading_will_carry_it_across() -> None:
    """The record an evaluation at an event would leave (`decide.score_crosses`), so the
    timer's firing is a crossing; nothing where the test holds already (nothing crossed), nor
    where fading cannot bring the profile across, nor once `reentry: once` has entered it."""
    at = T0 + DAY
    fifteen = Facts(scores={"lead": fading(15)}, at=at)
    member, change = sweep_segment(crossing("lt", 5), Membership(), fifteen, at)
    assert isinstance(change, WatchSegment) and change.due_at > T0 + 10 * DAY * math.log2(3)
    assert member == Membership(
        score_above=False, score_test="lead lt 5", segment_due=change.due_at
    )
    under = Facts(scores={"lead": fading(15)}, at=T0 + 20 * DAY)
    assert sweep_segment(crossing("lt", 5), Membership(), under, T0 + 20 * DAY) == (
        Membership(),
        None,
    )
    recorded = Membership(score_above=True, score_test="lead lt 5")
    assert sweep_segment(crossing("lt", 5), recorded, under, T0 + 20 * DAY) == (recorded, None)
    assert sweep_segment(crossing("gte", 10), Membership(), fifteen, at) == (Membership(), None)
    entered = Membership(entries=1)
    assert sweep_segment(crossing("lt", 5, "once"), entered, fifteen, at) == (entered, None)


def test_a_score_entrys_sweep_digest_counts_its_test_and_its_models_version_only() -> None:
    journey = crossing("lt", 5)
    digest = segment_digest(journey, {"lead": "v1"})
    assert segment_digest(replace(journey, version="v2"), {"lead": "v1"}) == digest
    assert segment_digest(journey, {"lead": "v1", "other": "x"}) == digest
    assert segment_digest(journey, {"lead": "v2"}) != digest
    assert segment_digest(crossing("lt", 3), {"lead": "v1"}) != digest
    # A segment's digest is its conditions alone: a rescore does not sweep it again.
    assert segment_digest(segment(*WINBACK), {"lead": "v2"}) == segment_digest(segment(*WINBACK))
