"""Whether a journey's own `update_profile` steps provably enter a `segment` or `stage` journey
again, read from the playbook alone (`loops.check_journey_loops`).

What the steps write is known exactly: a trait's whole value (traits are replaced, not merged),
a tag added or removed, a stage. So is what the entered journey's `segment` condition says when
it holds (an `equals` test on a trait or a stage, read as the value). Everything else — scores,
event counts, other traits — is unknown, and a condition on it is neither true nor false. A
segment is entered when it is known false at one step's event and known true at a later one's
(each `Journey Profile Updated` event is evaluated, once its traits are applied); a stage entry,
when a step moves a known stage to a `to` stage from another.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from leadloop.journeys.model import (
    Journey,
    SegmentTrigger,
    StageTrigger,
    Test,
    UpdateProfileStep,
)
from leadloop.scoring.match import check


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
    """What is known once the step's event is applied (as `service._apply_update` does)."""
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
