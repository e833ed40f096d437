"""Journeys compare stage names ignoring case, as the scoring models do (`lead` model stages:
subscriber, lead, MQL, ...): an entry on a stage move, a goal, and a condition on a stage
(`branch` cases, `if`, `segment`) written `mql` mean the model's `MQL`."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from leadloop.journeys import decide
from leadloop.journeys.config import journey_from_definition
from leadloop.journeys.evaluate import all_hold
from leadloop.journeys.model import BranchStep, Journey, StageTrigger
from tests.unit.journeys.test_config import load

T0 = 1_800_000_000.0

BRANCH = """
journeys:
  templates: {{ email: [a] }}
  flows:
    - id: j
      entry: {{ stage: {{ model: lead, to: mql, from: LEAD }} }}
      steps:
        - id: b
          type: branch
          cases:
            - {{ if: [{{ stage: lead, {test} }}], then: s }}
        - {{ id: s, type: send, channel: email, template: a }}
"""


@dataclass
class OnStage:
    """Facts of a profile standing on `MQL` of the `lead` model."""

    current: str = "MQL"

    def stage(self, model: str) -> str | None:
        return self.current if model == "lead" else None


def journey(test: str) -> Journey:
    found = load(BRANCH.format(test=test)).journey("j")  # type: ignore[attr-defined]
    assert isinstance(found, Journey)
    return found


def branch_holds(j: Journey, facts: OnStage) -> bool:
    step = j.step("b")
    assert isinstance(step, BranchStep)
    return all_hold(step.cases[0].tests, facts, None, T0)  # type: ignore[arg-type]


def test_an_entry_on_a_stage_move_matches_the_stage_in_any_case() -> None:
    j = journey("op: equals, value: MQL")
    assert isinstance(j.trigger, StageTrigger)
    assert decide.stage_matches(j.trigger, [("lead", "lead", "MQL")])
    assert not decide.stage_matches(j.trigger, [("lead", "subscriber", "MQL")])


@pytest.mark.parametrize(
    "test",
    [
        "op: equals, value: mql",
        "op: equals, value: Mql",
        "op: in, value: [sql, mql]",
        "op: starts_with, value: mq",
        "op: contains, value: ql",
        "op: matches, value: '^mql$'",
    ],
)
def test_a_condition_on_a_stage_matches_it_in_any_case(test: str) -> None:
    j = journey(test)
    assert branch_holds(j, OnStage("MQL"))
    assert not branch_holds(j, OnStage("lead"))
    # A running instance's pinned version is rebuilt from its stored definition, without the
    # playbook: it must decide the same.
    again = journey_from_definition(j.definition, j.id, j.version)
    assert branch_holds(again, OnStage("MQL"))


def test_a_negated_stage_condition_ignores_case_too() -> None:
    j = journey("op: equals, value: mql, not: true")
    assert not branch_holds(j, OnStage("MQL"))
    assert branch_holds(j, OnStage("SQL"))
