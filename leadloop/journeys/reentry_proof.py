"""Whether a journey's own `update_profile` steps provably enter a `segment` or `stage` journey
again, read from the playbook alone (`loops.check_journey_loops`).

What the steps write is known exactly: a trait's whole value (traits are replaced, not merged),
a tag added or removed, a stage. So is what the entered journey's `segment` condition says when
it holds (an `equals` test on a trait or a stage, read as the value). Everything else — scores,
event counts, other traits — is unknown, and a condition on it is neither true nor false. A
segment is entered when it is known false at one step's event and known true at a later one's
(each `Journey Profile Updated` event is evaluated, once its traits are applied); a stage entry,
when a step moves a known stage to a `to` stage from another.

A score crossing depends on the score a profile has, which the playbook does not fix; but
what a journey's own run does to it, relative to where the other rules put it, can be known
(`recrosses_score`). After one run the traits its steps write are known, so every later run
sees the same scores at its steps: the other rules' points, the same for the whole run, plus
what the steps change (the fit rules that read only written traits, engagement rules that
score the steps' events). Where those differ within a run, a profile whose other points lie
in a range falls out of the entry's test and crosses it again on every run.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from leadloop.journeys.model import (
    PROFILE_UPDATE_EVENT,
    Journey,
    ScoreTrigger,
    SegmentTrigger,
    StageTrigger,
    Test,
    UpdateProfileStep,
)
from leadloop.journeys.runner import update_properties
from leadloop.log.model import Event
from leadloop.scoring.match import check, matches_filter, present
from leadloop.scoring.model import FitRule, ScoringModel


@dataclass(frozen=True, slots=True)
class Known:
    """What a run of steps has made certain about the profile."""

    traits: dict[str, Any] = field(default_factory=dict)
    tags: dict[str, bool] = field(default_factory=dict)
    """Tag → whether the profile has it (`tags` as a list is otherwise unknown)."""
    stages: dict[str, str] = field(default_factory=dict)
    """Scoring model → its stage."""


def entered_with(journey: Journey) -> Known:
    """What holds when the journey is entered: its segment's `equals` conditions, its single
    `to` stage."""
    trigger = journey.trigger
    if isinstance(trigger, StageTrigger) and len(trigger.to) == 1:
        return Known(stages={trigger.model: trigger.to[0]})
    if not isinstance(trigger, SegmentTrigger):
        return Known()
    traits: dict[str, Any] = {}
    tags: dict[str, bool] = {}
    stages: dict[str, str] = {}
    for test in trigger.tests:
        p = test.test
        if p is None or p.op != "equals" or isinstance(p.value, list | dict) or p.value is None:
            continue
        if test.kind == "stage" and not test.negate:
            stages[test.subject] = str(p.value)  # stage tests ignore case, as stages do
        elif test.kind != "trait" or p.ignore_case:
            continue
        elif test.subject == "tags" and isinstance(p.value, str):
            tags[p.value] = not test.negate
        elif "." not in test.subject and not test.negate:
            # A list trait passes `equals` when one item does: taken as that one value.
            traits[test.subject] = p.value
    return Known(traits, tags, stages)


def after(known: Known, step: UpdateProfileStep) -> Known:
    """What is known once the step's event is applied (as `identity.decide.apply_engine_event`
    does, before the event is scored)."""
    traits, tags, stages = dict(known.traits), dict(known.tags), dict(known.stages)
    traits.update(step.traits)
    if "tags" in step.traits:
        tags = {}
    if step.add_tags or step.remove_tags:
        traits.pop("tags", None)  # recomputed from the profile's tags, not the step's
        tags.update(dict.fromkeys(step.remove_tags, False))
        tags.update(dict.fromkeys(step.add_tags, True))
    if step.stage is not None and step.model is not None:
        stages[step.model] = step.stage
    return Known(traits, tags, stages)


def segment_state(tests: Sequence[Test], known: Known) -> bool | None:
    """Whether the segment holds: None when that depends on what is not known."""
    results = [_test_state(test, known) for test in tests]
    if False in results:
        return False
    return True if all(results) else None


def _test_state(test: Test, known: Known) -> bool | None:
    result = _holds(test, known)
    return None if result is None else result != test.negate


def _holds(test: Test, known: Known) -> bool | None:
    if test.test is None:
        return None
    if test.kind == "trait":
        head, *rest = test.subject.split(".")
        if head in known.traits:
            value: Any = known.traits[head]
            for part in rest:
                value = value.get(part) if isinstance(value, dict) else None
            return check(value, test.test)
        p = test.test
        if test.subject == "tags" and p.op == "equals" and not p.ignore_case:
            return known.tags.get(p.value) if isinstance(p.value, str) else None
        return None
    if test.kind == "stage" and test.subject in known.stages:
        return check(known.stages[test.subject], test.test)
    return None


def reenters_segment(
    trigger: SegmentTrigger, start: Known, updates: Sequence[UpdateProfileStep], at_start: bool
) -> bool:
    """Whether the events of `updates`, in order from `start`, take the profile out of the
    segment and back in (`at_start`: the segment is evaluated at `start` too)."""
    known = start
    out = at_start and segment_state(trigger.tests, known) is False
    for step in updates:
        known = after(known, step)
        state = segment_state(trigger.tests, known)
        if state is True and out:
            return True
        out = out or state is False
    return False


def moves_back(trigger: StageTrigger, start: Known, updates: Sequence[UpdateProfileStep]) -> bool:
    """Whether one of `updates` moves the model's stage, known before it, to a `to` stage
    (from a `from` stage, when the trigger names some)."""
    stage = start.stages.get(trigger.model)
    to = {s.casefold() for s in trigger.to}
    before_ok = {s.casefold() for s in trigger.from_}
    for step in updates:
        if step.stage is None or step.model != trigger.model:
            continue
        before, stage = stage, step.stage
        if before is None or before.casefold() == stage.casefold():
            continue  # unknown, or set to the stage it is on: no move
        if (not to or stage.casefold() in to) and (not before_ok or before.casefold() in before_ok):
            return True
    return False


def recrosses_score(
    trigger: ScoreTrigger,
    model: ScoringModel,
    journey_id: str,
    updates: Sequence[UpdateProfileStep],
) -> str | None:
    """Why a run of the journey's `updates` enters it again on its score crossing, for some
    profiles that have run it before; None when the playbook does not show it (what moves
    depends on what no step writes, or the points drift from run to run)."""
    test = trigger.test
    if test.op not in ("gte", "gt", "lte", "lt") or not updates:
        return None
    known = Known()
    for step in updates:
        known = after(known, step)  # as a run leaves the profile, so the next one finds it
    # An update's traits are on the profile before its own event is scored (the processor
    # applies them first): fit at a step's event reads the traits that step wrote.
    seen = []
    for step in updates:
        known = after(known, step)
        seen.append(known)
    fit = _fit_points(model.fit, seen)
    engagement = _engagement_points(model, journey_id, updates)
    if fit is None or engagement is None or engagement[-1] != 0:
        return None  # unknown, or a drift of points each run: no repeat is shown
    scores = [a + b for a, b in zip(fit, engagement, strict=True)]
    # Out at one step's event and back in at a later one's is a crossing within the run. An
    # upward test (`gte`, `gt`) needs a later score above an earlier one, a downward one below.
    upward = test.op in ("gte", "gt")
    rises = [
        (later - earlier if upward else earlier - later, earlier, later)
        for index, earlier in enumerate(scores)
        for later in scores[index + 1 :]
    ]
    move, earlier, later = max(rises, default=(0.0, 0.0, 0.0))
    if move <= 0:
        return None
    # The other points a profile needs to be out of the test at `earlier`, in at `later`.
    low, high = sorted((test.value - earlier, test.value - later))
    return (
        f"its update_profile steps move the {model.id} score by {move:g} points within a run: "
        f"a profile that has run it with {low:g} to {high:g} other points falls out of "
        f"`{test.op} {test.value:g}` and crosses it again on every run"
    )


def _fit_points(rules: Sequence[FitRule], states: Sequence[Known]) -> list[float] | None:
    """The points of the fit rules whose result changes within a run, with each of `states`;
    None when one's result depends on a trait no step writes."""
    points = [0.0] * len(states)
    for rule in rules:
        if rule.source == "account":
            continue  # steps write no account trait
        heads = sorted({field.split(".")[0] for field in rule.fields})
        read = [
            (
                tuple(state.traits.get(head, _UNSET) for head in heads),
                state.tags if "tags" in heads else None,
            )
            for state in states
        ]
        if all(r == read[0] for r in read):
            continue  # the same traits all run: its points are among the other rules'
        for index, state in enumerate(states):
            holds = _fit_holds(rule, state)
            if holds is None:
                return None
            points[index] += rule.points if holds else 0.0
    return points


_UNSET = object()


def _fit_holds(rule: FitRule, known: Known) -> bool | None:
    """`match.fit_holds` on what is known: None when it reads a trait no step writes (or the
    account's, which `any` falls back to)."""
    for name in rule.fields:
        head, *rest = name.split(".")
        if head not in known.traits:
            return None
        value: Any = known.traits[head]
        for part in rest:
            value = value.get(part) if isinstance(value, dict) else None
        if present(value):
            return check(value, rule.test)
        if rule.source == "any":
            return None
    return rule.test.op == "exists" and not rule.test.value


def _engagement_points(
    model: ScoringModel, journey_id: str, updates: Sequence[UpdateProfileStep]
) -> list[float] | None:
    """The engagement points the steps' events have added, at each step; None when an award
    is limited by what a run cannot know (`once`, caps, sessions, a half-life)."""
    total, points = 0.0, []
    for step in updates:
        event = update_event(journey_id, step)
        for rule in model.engagement:
            if not matches_filter(event, rule.when):
                continue
            fades = model.decay.half_life if rule.half_life is None else rule.half_life
            if rule.once or rule.cap or fades or model.cap or model.session:
                return None
            total += rule.points
        points.append(total)
    return points


def update_event(journey_id: str, step: UpdateProfileStep) -> Event:
    """The `Journey Profile Updated` event the step emits, as far as the playbook tells it."""
    return Event(
        seq=0,
        workspace_id="",
        message_id="",
        type="internal",
        event=PROFILE_UPDATE_EVENT,
        timestamp=0.0,
        received_at=0.0,
        body={"properties": update_properties(journey_id, step, "")},
    )
