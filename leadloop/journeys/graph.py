"""Checks on a journey's steps as a graph: every reference names a step of the journey (no
dangling branch), every step is reachable from the first, and every cycle passes through a wait
(`wait` or `wait_for`) that waits on every pass.
"""

from __future__ import annotations

from typing import NoReturn

from leadloop.journeys.fields import JourneyFields
from leadloop.journeys.model import Step, WaitForStep, WaitStep
from leadloop.journeys.steps import Refs

WAITING_TYPES = (WaitStep, WaitForStep)


def check_graph(steps: list[Step], nodes: dict[str, tuple[JourneyFields, Refs]]) -> None:
    edges: dict[str, list[str]] = {}
    for step in steps:
        fields, refs = nodes[step.id]
        targets = []
        for key, target in refs:
            if target is None:
                continue
            if target not in nodes:
                fields.fail(
                    key.split("[")[0] if "[" in key else key,
                    f"no step {target!r} (dangling reference from {key})",
                )
            targets.append(target)
        edges[step.id] = targets
    reached = {steps[0].id}
    frontier = [steps[0].id]
    while frontier:
        for target in edges[frontier.pop()]:
            if target not in reached:
                reached.add(target)
                frontier.append(target)
    for step in steps:
        if step.id not in reached:
            nodes[step.id][0].fail("id", f"step {step.id!r} is unreachable from {steps[0].id!r}")
    # A cycle must pass through a wait: find cycles among the steps that do not wait.
    quick = {s.id for s in steps if not waits(s)}
    state: dict[str, int] = {}

    def visit(step_id: str, trail: list[str]) -> None:
        state[step_id] = 1
        for target in edges[step_id]:
            if target not in quick:
                continue
            if state.get(target) == 1:
                loop = (
                    [*trail[trail.index(target) :], target]
                    if target in trail
                    else [step_id, target]
                )
                _loop_error(nodes[target][0], loop)
            if target not in state:
                visit(target, [*trail, target])
        state[step_id] = 2

    for step_id in quick:
        if step_id not in state:
            visit(step_id, [step_id])


def waits(step: Step) -> bool:
    """Whether the step waits on every pass. A `0s` wait never does, and an `until_trait` one
    only once: back at it after it fell due, its instant has passed (the runner goes straight
    on), so a loop through either alone runs until the step limit, sending on every pass."""
    if isinstance(step, WaitStep):
        return step.until_trait is None and step.duration != 0
    return isinstance(step, WAITING_TYPES)


def _loop_error(fields: JourneyFields, loop: list[str]) -> NoReturn:
    fields.fail("id", "loop without a wait: " + " → ".join(loop))
