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

Segment and stage entries are re-entered by updates too, a journey's own included (no
`own_update` there): a run of updates that takes the profile out of a segment and back in, or
moves a stage away and back, is an edge when `reentry_proof` shows it from the playbook alone.
So is a run that moves a journey's own score across its `score` entry and back, for profiles
whose other points lie in a range (`reentry_proof.recrosses_score`); a score crossing entered
by another journey's updates depends on both runs' scores, and is not read.
"""

from __future__ import annotations

from collections.abc import Sequence

from leadloop.journeys.graph import waits
from leadloop.journeys.model import (
    AudienceStep,
    BranchStep,
    EventTrigger,
    ExitStep,
    Journey,
    ScoreTrigger,
    SegmentTrigger,
    SendStep,
    SplitStep,
    StageTrigger,
    Step,
    UpdateProfileStep,
    WaitForStep,
    WaitStep,
    WebhookStep,
)
from leadloop.journeys.reentry_proof import (
    entered_with,
    moves_back,
    recrosses_score,
    reenters_segment,
    update_event,
)
from leadloop.playbook.fields import Fields
from leadloop.scoring.match import matches_filter
from leadloop.scoring.model import ScoringModel


def check_journey_loops(
    journeys: Sequence[Journey],
    fields: Sequence[Fields],
    models: Sequence[ScoringModel],
) -> None:
    """Raise a `PlaybookError` at the `entry` of a journey on a cycle of journeys entering on
    each other's profile updates with no wait (`fields`: each journey's, in order; `models`:
    the playbook's scoring models, which `score` entries are read with)."""
    updates = {journey.id: _quick_updates(journey) for journey in journeys}
    paths = {journey.id: _quick_paths(journey) for journey in journeys}
    # A score entry's own runs, which are a loop for some profiles only: said with the loop.
    recrossing = {
        journey.id: why
        for journey in journeys
        if (why := _recrosses(journey, paths[journey.id], models)) is not None
    }
    edges = {
        source.id: [
            target.id
            for target in journeys
            if target.reentry.mode == "always"
            and (
                (
                    target.id != source.id  # its own updates never enter it (`own_update`)
                    and any(_enters(target, source, step) for step in updates[source.id])
                )
                or any(_reenters(target, source, path) for path in paths[source.id])
                or (target.id == source.id and source.id in recrossing)
            )
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
                    + " (each is entered by the update_profile steps of the one before, which"
                    " end without waiting; add a wait, narrow an entry's `where` or segment,"
                    " or use `reentry: once` or `every`)"
                    + (
                        f"; {target}: {recrossing[target]}"
                        if loop == [target, target] and target in recrossing
                        else ""
                    ),
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
        return matches_filter(update_event(source.id, step), trigger.when)
    if isinstance(trigger, StageTrigger):
        return (
            step.stage is not None
            and step.model == trigger.model
            and (not trigger.to or step.stage.casefold() in {s.casefold() for s in trigger.to})
        )
    return False  # a score or segment entry: not read here


def _reenters(target: Journey, source: Journey, path: list[UpdateProfileStep]) -> bool:
    """Whether the events of `path`, a run of `source`'s updates, provably enter `target`
    (`reentry_proof`: segments and stage moves, the source's own included). An instance of
    a measured journey stays live until its conversion window ends: it is not entered again."""
    trigger = target.trigger
    if target.measured or not path:
        return False
    if isinstance(trigger, SegmentTrigger):
        # A segment entry's own event is evaluated for every segment; another entry's may not
        # be (an engine event), so what holds at it counts only then.
        at_start = isinstance(source.trigger, SegmentTrigger)
        return reenters_segment(trigger, entered_with(source), path, at_start)
    if isinstance(trigger, StageTrigger) and target.id == source.id:
        return moves_back(trigger, entered_with(source), path)
    return False  # a score crossing: `_recrosses`, for a journey's own runs only


def _recrosses(
    journey: Journey, paths: Sequence[list[UpdateProfileStep]], models: Sequence[ScoringModel]
) -> str | None:
    """Why the journey's own runs enter it again on its score crossing, when the playbook
    shows it for one of its runs that end without waiting."""
    trigger = journey.trigger
    if not isinstance(trigger, ScoreTrigger) or journey.measured:
        return None
    model = next((m for m in models if m.id == trigger.model), None)
    if model is None:
        return None
    reasons = (recrosses_score(trigger, model, journey.id, path) for path in paths)
    return next((why for why in reasons if why is not None), None)


MAX_PATHS = 64
"""Runs of a journey read per source: more branches than this leave some runs unread (a loop
they hold is missed, never one made up)."""


def _quick_paths(journey: Journey) -> list[list[UpdateProfileStep]]:
    """The `update_profile` steps, in order, of runs from the first step to an end that do
    not wait (the graph check has rejected cycles without a wait)."""
    quick = {step.id: step for step in journey.steps if not waits(step)}
    found: dict[tuple[str, ...], list[UpdateProfileStep]] = {}
    budget = [MAX_PATHS * 64]

    def walk(step_id: str | None, seen: frozenset[str], run: list[UpdateProfileStep]) -> None:
        budget[0] -= 1
        if len(found) >= MAX_PATHS or budget[0] < 0:
            return
        if step_id is None:
            found.setdefault(tuple(step.id for step in run), run)
            return
        step = quick.get(step_id)
        if step is None or step_id in seen:
            return  # it waits (or, defensively, a cycle)
        if isinstance(step, UpdateProfileStep):
            run = [*run, step]
        if isinstance(step, ExitStep):
            found.setdefault(tuple(s.id for s in run), run)
            return
        for target in dict.fromkeys(_targets(step)):
            walk(target, seen | {step_id}, run)

    walk(journey.start, frozenset(), [])
    return list(found.values())


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
