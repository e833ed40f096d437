"""Journey decisions, pure: entering, advancing on an event or a timer, goals, migrations.

Each function takes the instance, the journey version it is pinned to, the facts the shell can
answer, the contact policy and `at` (an instant taken from the log: the event's receive time, or
the due time of the timer that fired), and returns the new instance with the effects to carry
out. Nothing here reads a clock or a database, so replaying the log decides the same path. The
steps themselves run in `journeys.runner`, conditions are evaluated in `journeys.evaluate`,
and ids and buckets come from `journeys.hashing`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import assert_never

from msgspec.structs import replace

from leadloop.journeys.evaluate import all_hold
from leadloop.journeys.hashing import in_holdout, instance_id
from leadloop.journeys.model import (
    ENGAGEMENT_EVENTS,
    PROFILE_UPDATE_EVENT,
    WINDOW_OVER,
    Advance,
    CancelWake,
    Effect,
    EventTrigger,
    Facts,
    Goal,
    Instance,
    Journey,
    Membership,
    PathLine,
    ScheduleWake,
    ScoreReading,
    ScoreTrigger,
    SegmentTrigger,
    StageTrigger,
    WaitForStep,
    WaitStep,
)
from leadloop.journeys.runner import end_instance, goto_step, next_of, run_steps
from leadloop.log.model import Event
from leadloop.policy.model import PolicyConfig
from leadloop.scoring.match import check, matches_filter

# --- entering ----------------------------------------------------------------------------------


def stage_matches(trigger: StageTrigger, moves: Sequence[tuple[str, str, str]]) -> bool:
    """`moves` are (model, from, to) stage moves the event caused."""
    for model, before, after in moves:
        if model != trigger.model:
            continue
        if trigger.to and after.casefold() not in {s.casefold() for s in trigger.to}:
            continue
        if trigger.from_ and before.casefold() not in {s.casefold() for s in trigger.from_}:
            continue
        return True
    return False


def trigger_fires(
    journey: Journey,
    membership: Membership,
    event: Event,
    moves: Sequence[tuple[str, str, str]],
    score: ScoreReading | None,
    facts: Facts,
    at: float,
) -> tuple[bool, Membership]:
    """Whether this event enters the profile, and the membership with any segment or score
    position updated. `score` is the trigger model's score as this event reads it."""
    trigger = journey.trigger
    if isinstance(trigger, EventTrigger):
        if own_update(journey, event):
            # Entering again on its own `update_profile` event would loop for good under
            # `reentry: always`: the update ends an instance, the event starts the next.
            return False, membership
        return matches_filter(event, trigger.when), membership
    if isinstance(trigger, StageTrigger):
        return stage_matches(trigger, moves), membership
    if isinstance(trigger, ScoreTrigger):
        if score is None:
            return False, membership
        return score_crosses(trigger, membership, score)
    if isinstance(trigger, SegmentTrigger):
        # Every event reaches a segment but a journey wake-up, which changes nothing it reads:
        # an open or a receipt is counted, a decay step lowers a score, and a segment timer
        # (`journeys.segments`) fires when events leave a window.
        now_in = all_hold(trigger.tests, facts, None, at)
        was_in = membership.in_segment
        if was_in and now_in and any(t.kind == "event" and t.within for t in trigger.tests):
            # Events age out of a `within` window with no timer to notice when time alone
            # cannot enter the profile (`journeys.segments`): a profile out of the segment
            # just before this event (every other fact is this event's too) left it since,
            # and this event puts it back in.
            was_in = all_hold(trigger.tests, facts, None, at, without=event)
        return (now_in and not was_in), replace(membership, in_segment=now_in)
    assert_never(trigger)


def score_crosses(
    trigger: ScoreTrigger, membership: Membership, score: ScoreReading
) -> tuple[bool, Membership]:
    """A crossing: the test holds now, and did not at some instant since the profile's last
    evaluation. Between two evaluations only `half_life` fading (down) or a rescore moves the
    score, so the test failed in between iff it failed at the last evaluation, as the
    membership recorded it, or just before this event. Comparing only with just before the
    event missed the fade across `lt 5` (both totals read faded); comparing only with the
    record would miss the fade out of `gte 10` that an event then lifts over again.

    With no record (a new journey or profile), or one read against another test, the score
    just before the event decides alone: a crossing is the score moving across the line,
    not the line moved across the score by a new version of the journey, which enters
    nobody already past it (as a new journey does not)."""
    test = crossing_test(trigger)
    now = check(score.after, trigger.test)
    held = check(score.before, trigger.test)
    if membership.score_above is not None and membership.score_test in (None, test):
        held = held and membership.score_above
    return (now and not held), replace(membership, score_above=now, score_test=test)


def crossing_test(trigger: ScoreTrigger) -> str:
    """What a `score` entry's recorded result was read against: `lead gte 20`."""
    return f"{trigger.model} {trigger.test.op} {trigger.test.value!r}"


def own_update(journey: Journey, event: Event) -> bool:
    """Whether `event` is the `Journey Profile Updated` one of this journey's own steps."""
    return (
        event.type == "internal"
        and event.event == PROFILE_UPDATE_EVENT
        and event.properties.get("journey") == journey.id
    )


def may_enter(journey: Journey, membership: Membership, at: float) -> str | None:
    """Why the re-entry rule refuses a new entry (None: it may enter)."""
    if membership.active is not None:
        return "already in the journey"
    if membership.entries == 0:
        return None
    rule = journey.reentry
    if rule.mode == "once":
        return "re-entry: once"
    last = membership.last_entered_at
    if rule.mode == "every" and last is not None and at - last < rule.period:
        return f"re-entry: once per {rule.period:g}s"
    return None


def goal_at_entry(
    journey: Journey, event: Event, moves: Sequence[tuple[str, str, str]], facts: Facts
) -> str | None:
    """Why the journey's goal already holds when `event` would enter the profile (None: it
    does not). The entering event may itself be the goal event, and the stage moves it caused
    after the entry trigger's own move may reach the goal (one event can take a profile past
    `lead` and `MQL` at once); a stage goal also holds when the profile already stands on one
    of its stages (`to`, no `from`), whatever moved it there."""
    goal = journey.goal
    if goal is None:
        return None
    if goal.event is not None:
        if matches_filter(event, goal.event):
            return f"goal already reached by {event.event or event.type}"
        return None
    assert goal.stage is not None
    later = list(moves)
    trigger = journey.trigger
    if isinstance(trigger, StageTrigger):
        first = next((i for i, move in enumerate(moves) if stage_matches(trigger, [move])), -1)
        later = later[first + 1 :]
    for move in later:
        if stage_matches(goal.stage, [move]):
            return f"goal already reached: {move[0]} moved to {move[2]}"
    if goal.stage.to and not goal.stage.from_:
        stage = facts.stage(goal.stage.model)
        if stage is not None and stage.casefold() in {s.casefold() for s in goal.stage.to}:
            return f"goal already reached: {goal.stage.model} is {stage}"
    return None


def enter_journey(
    journey: Journey,
    membership: Membership,
    workspace: str,
    profile_id: str,
    entry_key: str,
    facts: Facts,
    policy_config: PolicyConfig,
    at: float,
    *,
    event: Event | None = None,
    moves: Sequence[tuple[str, str, str]] = (),
) -> tuple[Membership, Advance | None]:
    """Start an instance (or a holdout one) when the entry filter and re-entry rule allow and
    the goal does not already hold (`goal_at_entry`, checked when the entering `event` is
    given). A profile whose goal already holds does not enter, in either group: the skip is
    kept on its membership (`skipped`, `skip_reason`) and counts as no entry, so a later
    trigger may still enter it."""
    if may_enter(journey, membership, at) is not None:
        return membership, None
    if not all_hold(journey.only_if, facts, None, at):
        return membership, None
    reached = None if event is None else goal_at_entry(journey, event, moves, facts)
    if reached is not None:
        skipped = replace(
            membership, skipped=membership.skipped + 1, skipped_at=at, skip_reason=reached
        )
        return skipped, None
    new_id = instance_id(workspace, journey.id, profile_id, entry_key)
    holdout = in_holdout(journey, profile_id)
    instance = Instance(
        id=new_id,
        workspace_id=workspace,
        profile_id=profile_id,
        journey_id=journey.id,
        version=journey.version,
        step=None if holdout else journey.start,
        status="holdout" if holdout else "active",
        entered_at=at,
        updated_at=at,
        holdout=holdout,
        entry_message_id=entry_key,
    )
    membership = replace(
        membership, entries=membership.entries + 1, last_entered_at=at, active=new_id
    )
    if holdout:
        # Held out until its goal or the end of the conversion window, as a treated entrant
        # is measured (`runner.run_steps` keeps one waiting for the goal past its last step).
        due = at + journey.conversion_window
        instance = replace(instance, wake="window", due_at=due, token=1)
        line = PathLine(at, None, "holdout", "held out: gets nothing, counted for lift")
        return membership, Advance(instance, (ScheduleWake(due, 1),), (line,))
    instance = replace(instance, visits={journey.start: 1})
    path = [PathLine(at, journey.start, "entered", f"version {journey.version[:12]}")]
    effects: list[Effect] = []
    instance = run_steps(instance, journey, facts, policy_config, at, effects, path)
    return membership, Advance(instance, tuple(effects), tuple(path))


# --- advancing ---------------------------------------------------------------------------------


def goal_reached(goal: Goal | None, event: Event, moves: Sequence[tuple[str, str, str]]) -> bool:
    if goal is None:
        return False
    if goal.event is not None and matches_filter(event, goal.event):
        return True
    return goal.stage is not None and stage_matches(goal.stage, moves)


def record_engagement(instance: Instance, event: Event) -> Instance:
    kind = ENGAGEMENT_EVENTS.get(event.event or "")
    sent = event.properties.get("message_id")
    if kind is None or not isinstance(sent, str) or sent not in instance.messages.values():
        return instance
    implied = {"delivered": ["delivered"], "opened": ["delivered", "opened"]}.get(
        kind, ["delivered", "opened", "clicked"]
    )
    seen = list(instance.engagement.get(sent, []))
    added = [k for k in implied if k not in seen]
    if not added:
        return instance
    engagement = dict(instance.engagement)
    engagement[sent] = seen + added
    return replace(instance, engagement=engagement)


def on_event(
    instance: Instance,
    journey: Journey,
    event: Event,
    moves: Sequence[tuple[str, str, str]],
    facts: Facts,
    policy_config: PolicyConfig,
    at: float,
) -> Advance | None:
    """A non-timer event for the instance's profile: goal, engagement, or the awaited event."""
    if not instance.live:
        return None
    if instance.holdout and at >= instance.entered_at + journey.conversion_window:
        # Held out before holdouts had a window timer: it ends now, unconverted.
        return end_instance(instance, "ended", WINDOW_OVER, at)
    if goal_reached(journey.goal, event, moves):
        return end_instance(
            instance, "converted", f"goal reached by {event.event or event.type}", at
        )
    updated = record_engagement(instance, event)
    if instance.status != "waiting" or instance.wake != "timeout" or instance.step is None:
        return Advance(updated) if updated is not instance else None
    step = journey.step(instance.step)
    if not isinstance(step, WaitForStep) or not _awaited(step, updated, event):
        return Advance(updated) if updated is not instance else None
    path = [PathLine(at, step.id, "happened", event.event or event.type)]
    effects: list[Effect] = [CancelWake()]
    moved = goto_step(
        replace(updated, token=updated.token + 1, wake="", due_at=None), step.happened, at
    )
    moved = run_steps(moved, journey, facts, policy_config, at, effects, path)
    return Advance(moved, tuple(effects), tuple(path))


def _awaited(step: WaitForStep, instance: Instance, event: Event) -> bool:
    if not matches_filter(event, step.when):
        return False
    if step.message_of is None:
        return True
    sent = instance.messages.get(step.message_of)
    return sent is not None and event.properties.get("message_id") == sent


def on_timer(
    instance: Instance,
    journey: Journey,
    token: int,
    facts: Facts,
    policy_config: PolicyConfig,
    at: float,
) -> Advance | None:
    """The instance's timer fired; a stale token (the instance moved on) changes nothing."""
    if instance.wake == "window" and instance.live and token == instance.token:
        # The conversion window is over without the goal (`Journey.measured`).
        if instance.holdout:
            return end_instance(instance, "ended", WINDOW_OVER, at)
        return end_instance(instance, "completed", "reached the end", at)
    if instance.status != "waiting" or token != instance.token or instance.step is None:
        return None
    step = journey.step(instance.step)
    if step is None:
        return end_instance(instance, "exited", f"step {instance.step!r} is not in its version", at)
    path: list[PathLine] = []
    effects: list[Effect] = []
    waking = replace(instance, wake="", due_at=None, status="active")
    kind = instance.wake
    if kind == "defer" or not isinstance(step, WaitStep | WaitForStep):
        # A deferred send is decided again. A step that does not wait stands here only when
        # `migrate` mapped a waiting instance to it: the timer ends the wait, the step runs.
        path.append(
            PathLine(at, step.id, "resumed", "deferral over" if kind == "defer" else "wait over")
        )
        moved = waking
    elif isinstance(step, WaitForStep):
        path.append(
            PathLine(at, step.id, "timed_out", f"no {', '.join(step.when.names) or 'event'}")
        )
        moved = goto_step(waking, step.timed_out, at)
    else:
        path.append(PathLine(at, step.id, "waited", ""))
        moved = goto_step(waking, next_of(step), at)
    moved = run_steps(moved, journey, facts, policy_config, at, effects, path)
    return Advance(moved, tuple(effects), tuple(path))


def migrate_instance(instance: Instance, journey: Journey, at: float) -> Advance | None:
    """Move an instance pinned to an older version onto `journey` when its `migrate` map names
    the instance's step. A waiting instance keeps its timer: when it fires, the instance goes on
    from the mapped step."""
    if not instance.live or instance.version == journey.version or instance.holdout:
        return None
    if instance.step is None or instance.step not in journey.migrate:
        return None
    target = journey.migrate[instance.step]
    moved = replace(instance, version=journey.version, step=target, updated_at=at)
    detail = f"{instance.version[:12]}:{instance.step} → {journey.version[:12]}:{target}"
    return Advance(moved, (), (PathLine(at, target, "migrated", detail),))
