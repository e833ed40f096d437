"""Whether a journey's conditions hold (the `Test`s `journeys.conditions` parses from the
playbook), asked of the shell's `Facts`: traits, scores, stages, event counts, engagement."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, assert_never

from leadloop.journeys.model import Facts, Instance, Test
from leadloop.log.model import Event
from leadloop.scoring.match import check, condition_holds


def holds(
    test: Test, facts: Facts, instance: Instance | None, at: float, without: Event | None = None
) -> bool:
    """`without`: the event being decided, left out of event counts (whether the test held
    just before it)."""
    return _holds(test, facts, instance, at, without) != test.negate


def _holds(
    test: Test, facts: Facts, instance: Instance | None, at: float, without: Event | None
) -> bool:
    match test.kind:
        case "trait":
            assert test.test is not None
            value: Any = facts.traits
            for part in test.subject.split("."):
                value = value.get(part) if isinstance(value, dict) else None
            return check(value, test.test)
        case "score":
            assert test.test is not None
            return check(facts.score(test.subject), test.test)
        case "stage":
            assert test.test is not None
            return check(facts.stage(test.subject), test.test)
        case "event":
            assert test.test is not None
            since = None if test.within is None else at - test.within
            count = facts.event_count(test.subject, since, test.where)
            if (
                without is not None
                and without.event == test.subject
                and (since is None or without.received_at >= since)
                and all(condition_holds(without, c) for c in test.where)
            ):
                count -= 1  # the shell's count holds the event being decided
            return check(count, test.test)
        case "engaged":
            if instance is None:
                return False
            sent = instance.messages.get(test.subject)
            return sent is not None and test.engagement in instance.engagement.get(sent, [])
        case _:
            assert_never(test.kind)


def all_hold(
    tests: Sequence[Test],
    facts: Facts,
    instance: Instance | None,
    at: float,
    without: Event | None = None,
) -> bool:
    return all(holds(test, facts, instance, at, without) for test in tests)
