"""A check across a playbook's journeys: no cycle of journeys that enter on each other's
`update_profile` steps without a wait.

`graph.check_graph` finds a loop inside one journey; a loop can also run through several. When
journey A's `update_profile` step emits the `Journey Profile Updated` event (or sets the stage)
that enters B, and B's enters A, each instance ends and the next begins, one event after
another for good. A journey's own updates never enter it (`decide.own_update`), but the
other's do. So, as inside one journey, a cycle of such entries must pass through a wait.

An edge A → B is drawn when B's `reentry` is `always` (with `once` a profile goes round at most
once, with `every` at most once per period, like a loop through a wait) and A has an
`update_profile` step that an instance can run and then end without waiting on the way (an
instance still waiting when the other's update comes is `already in the journey`, and does
not enter again), whose event matches B's `entry` event (`type`, name and `where`, tested on
the event the step emits) or whose `stage` is one B's `entry` stage move goes `to`. The check
reads entries, `update_profile` steps and waits only: entry `if` conditions and goals are not
evaluated, so narrow the entry's `where`, add a wait or limit `reentry` to break a loop.
"""

from __future__ import annotations

from collections.abc import Sequence

from leadloop.journeys.graph import waits
from leadloop.journeys.model import (
    PROFILE_UPDATE_EVENT,
    AudienceStep,
    BranchStep,
    EventTrigger,
    ExitStep,
    Journey,
    SendStep,
    SplitStep,
    StageTrigger,
    Step,
    UpdateProfileStep,
    WaitForStep,
    WaitStep,
    WebhookStep,
)
from leadloop.journeys.runner import update_properties
from leadloop.log.model import Event
from leadloop.playbook.fields import Fields
from leadloop.scoring.match import matches_filter


def check_journey_loops(journeys: Sequence[Journey], fields: Sequence[Fields]) -> None:
    """Raise a `PlaybookError` at the `entry` of a journey on a cycle of journeys entering on
    each other's profile updates with no wait (`fields`: each journey's, in order)."""
    updates = {journey.id: _quick_updates(journey) for journey in journeys}
    edges = {
        source.id: [
            target.id
            for target in journeys
            if target.id != source.id  # its own updates never enter it (`decide.own_update`)
            and target.reentry.mode == "always"
            and any(_enters(target, source, step) for step in updates[source.id])
        ]
        for source in journeys
    }
    where = {journey.id: field for journey, field in zip(journeys, fields, strict=True)}
    state: dict[str, int] = {}

    def visit(journey_id: str, trail: list[str]) -> None:
        state[journey_id] = 1
        for target in edges[journey_id]:
            if state.get(target) == 1:
                loop = [*trail[trail.index(target) :], target]
                where[target].fail(
                    "entry",
                    "loop across journeys without a wait: "
                    + " → ".join(loop)
                    + " (each enters on the one before's update_profile step; add a wait, "
                    "narrow an entry's `where`, or use `reentry: once` or `every`)",
                )
            if target not in state:
                visit(target, [*trail, target])
        state[journey_id] = 2

    for journey in journeys:
        if journey.id not in state:
            visit(journey.id, [journey.id])


def _enters(target: Journey, source: Journey, step: UpdateProfileStep) -> bool:
    """Whether what `source`'s `step` emits fires `target`'s entry trigger."""
    trigger = target.trigger
    if isinstance(trigger, EventTrigger):
        body = {"properties": update_properties(source.id, step, "")}
        event = Event(
            seq=0,
            workspace_id="",
            message_id="",
            type="internal",
            event=PROFILE_UPDATE_EVENT,
            timestamp=0.0,
            received_at=0.0,
            body=body,
        )
        return matches_filter(event, trigger.when)
    if isinstance(trigger, StageTrigger):
        return (
            step.stage is not None
            and step.model == trigger.model
            and (not trigger.to or step.stage.casefold() in {s.casefold() for s in trigger.to})
        )
    return False  # a score or segment entry: not read here


def _quick_updates(journey: Journey) -> list[UpdateProfileStep]:
    """The `update_profile` steps an instance can run between its entry and its end without
    waiting: reached from the first step, and reaching an end, through steps that do not wait."""
    quick = {step.id: step for step in journey.steps if not waits(step)}
    reached: set[str] = set()
    frontier = [journey.start] if journey.start in quick else []
    while frontier:
        step_id = frontier.pop()
        if step_id in reached:
            continue
        reached.add(step_id)
        frontier.extend(t for t in _targets(quick[step_id]) if t is not None and t in quick)
    ending: set[str] = set()
    changed = True
    while changed:
        changed = False
        for step_id in reached - ending:
            targets = _targets(quick[step_id])
            if isinstance(quick[step_id], ExitStep) or any(
                t is None or t in ending for t in targets
            ):
                ending.add(step_id)
                changed = True
    return [step for sid in ending if isinstance(step := quick[sid], UpdateProfileStep)]


def _targets(step: Step) -> tuple[str | None, ...]:
    """Where the step may go next (None: the instance completes there)."""
    if isinstance(step, SendStep):
        return (step.next, step.otherwise if step.otherwise is not None else step.next)
    if isinstance(step, WaitForStep):
        return (step.happened, step.timed_out)
    if isinstance(step, BranchStep):
        return (*(case.then for case in step.cases), step.otherwise)
    if isinstance(step, SplitStep):
        return tuple(path.next for path in step.paths)
    if isinstance(step, WaitStep | UpdateProfileStep | WebhookStep | AudienceStep):
        return (step.next,)
    return ()  # an exit step ends the instance
