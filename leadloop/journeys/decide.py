"""Journey decisions, pure: entering, advancing on an event or a timer, goals, migrations.

Each function takes the instance, the journey version it is pinned to, the facts the shell can
answer, the contact policy and `at` (an instant taken from the log: the event's receive time, or
the due time of the timer that fired), and returns the new instance with the effects to carry
out. Nothing here reads a clock or a database, so replaying the log decides the same path.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import replace as dc_replace
from datetime import UTC, date, datetime
from typing import Any, assert_never

from msgspec.structs import replace

from leadloop.journeys.model import (
    ENGAGEMENT_EVENTS,
    PROFILE_UPDATE_EVENT,
    Advance,
    AudienceStep,
    BranchStep,
    CallWebhook,
    CancelWake,
    ChangeAudience,
    Effect,
    EmitEvent,
    EventTrigger,
    ExitStep,
    Facts,
    Goal,
    Instance,
    Journey,
    Membership,
    PathLine,
    QueueSend,
    RecordPolicy,
    ScheduleWake,
    ScoreTrigger,
    SegmentTrigger,
    SendStep,
    SplitStep,
    StageTrigger,
    Status,
    Test,
    UpdateProfileStep,
    WaitForStep,
    WaitStep,
    WakeKind,
    WebhookStep,
)
from leadloop.log.model import Event
from leadloop.policy import decide as policy
from leadloop.policy.model import Defer, PolicyConfig, Send, SendRequest, SentRecord, Suppress
from leadloop.scoring.match import check, matches_filter, to_number

MAX_STEPS_PER_RUN = 200
"""A guard only: validation already rejects loops without a wait."""


# --- stable hashing ----------------------------------------------------------------------------


def _digest(*parts: str) -> str:
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()


def stable_fraction(*parts: str) -> float:
    """A number in [0, 1) fixed by `parts`: the same profile always lands in the same bucket."""
    return int(_digest(*parts)[:13], 16) / float(1 << 52)


def in_holdout(journey: Journey, profile_id: str) -> bool:
    return (
        journey.holdout > 0 and stable_fraction("holdout", journey.id, profile_id) < journey.holdout
    )


def instance_id(workspace: str, journey_id: str, profile_id: str, entry_key: str) -> str:
    return "ji_" + _digest(workspace, journey_id, profile_id, entry_key)[:24]


def message_id(instance: str, step: str, visit: int) -> str:
    return "jm_" + _digest(instance, step, str(visit))[:24]


# --- conditions --------------------------------------------------------------------------------


def holds(test: Test, facts: Facts, instance: Instance | None, at: float) -> bool:
    return _holds(test, facts, instance, at) != test.negate


def _holds(test: Test, facts: Facts, instance: Instance | None, at: float) -> bool:
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
            return check(facts.event_count(test.subject, since, test.where), test.test)
        case "engaged":
            if instance is None:
                return False
            sent = instance.messages.get(test.subject)
            return sent is not None and test.engagement in instance.engagement.get(sent, [])
        case _:
            assert_never(test.kind)


def all_hold(tests: Sequence[Test], facts: Facts, instance: Instance | None, at: float) -> bool:
    return all(holds(test, facts, instance, at) for test in tests)


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
    score_change: tuple[float, float] | None,
    facts: Facts,
    at: float,
) -> tuple[bool, Membership]:
    """Whether this event enters the profile, and the membership with any segment or score
    position updated. `score_change` is the trigger model's (before, after) for this event."""
    trigger = journey.trigger
    if isinstance(trigger, EventTrigger):
        return matches_filter(event, trigger.when), membership
    if isinstance(trigger, StageTrigger):
        return stage_matches(trigger, moves), membership
    if isinstance(trigger, ScoreTrigger):
        if score_change is None:
            return False, membership
        before, after = (check(value, trigger.test) for value in score_change)
        return (after and not before), replace(membership, score_above=after)
    if isinstance(trigger, SegmentTrigger):
        if event.type == "internal" and event.event != PROFILE_UPDATE_EVENT:
            return False, membership  # timers and the engine's own events change no segment
        now_in = all_hold(trigger.tests, facts, None, at)
        return (now_in and not membership.in_segment), replace(membership, in_segment=now_in)
    assert_never(trigger)


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


def enter_journey(
    journey: Journey,
    membership: Membership,
    workspace: str,
    profile_id: str,
    entry_key: str,
    facts: Facts,
    policy_config: PolicyConfig,
    at: float,
) -> tuple[Membership, Advance | None]:
    """Start an instance (or a holdout one) when the entry filter and re-entry rule allow."""
    if may_enter(journey, membership, at) is not None:
        return membership, None
    if not all_hold(journey.only_if, facts, None, at):
        return membership, None
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
        line = PathLine(at, None, "holdout", "held out: gets nothing, counted for lift")
        return membership, Advance(instance, (), (line,))
    instance = replace(instance, visits={journey.start: 1})
    path = [PathLine(at, journey.start, "entered", f"version {journey.version[:12]}")]
    effects: list[Effect] = []
    instance = _run(instance, journey, facts, policy_config, at, effects, path)
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
    moved = _goto(
        replace(updated, token=updated.token + 1, wake="", due_at=None), step.happened, at
    )
    moved = _run(moved, journey, facts, policy_config, at, effects, path)
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
    if instance.status != "waiting" or token != instance.token or instance.step is None:
        return None
    step = journey.step(instance.step)
    if step is None:
        return end_instance(instance, "exited", f"step {instance.step!r} is not in its version", at)
    path: list[PathLine] = []
    effects: list[Effect] = []
    waking = replace(instance, wake="", due_at=None, status="active")
    kind = instance.wake
    if kind == "defer" or isinstance(step, SendStep):
        path.append(PathLine(at, step.id, "resumed", "deferral over"))
        moved = waking  # run the same step (visit) again: the send is re-decided
    elif isinstance(step, WaitForStep):
        path.append(
            PathLine(at, step.id, "timed_out", f"no {', '.join(step.when.names) or 'event'}")
        )
        moved = _goto(waking, step.timed_out, at)
    else:
        path.append(PathLine(at, step.id, "waited", ""))
        moved = _goto(waking, _next_of(step), at)
    moved = _run(moved, journey, facts, policy_config, at, effects, path)
    return Advance(moved, tuple(effects), tuple(path))


def end_instance(instance: Instance, status: Status, reason: str, at: float) -> Advance:
    effects: tuple[Effect, ...] = (CancelWake(),) if instance.due_at is not None else ()
    ended = replace(
        instance,
        status=status,
        reason=reason,
        ended_at=at,
        updated_at=at,
        wake="",
        due_at=None,
        token=instance.token + 1,
    )
    return Advance(ended, effects, (PathLine(at, instance.step, status, reason),))


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


# --- running steps -----------------------------------------------------------------------------


def _next_of(step: WaitStep | WaitForStep | Any) -> str | None:
    return getattr(step, "next", None)


def _goto(instance: Instance, step: str | None, at: float) -> Instance:
    if step is None:
        return replace(instance, step=None, updated_at=at)
    visits = dict(instance.visits)
    visits[step] = visits.get(step, 0) + 1
    return replace(instance, step=step, visits=visits, updated_at=at, status="active")


def _wait(instance: Instance, due: float, kind: WakeKind, effects: list[Effect]) -> Instance:
    token = instance.token + 1
    effects.append(ScheduleWake(due, token))
    return replace(instance, status="waiting", wake=kind, due_at=due, token=token)


def _run(
    instance: Instance,
    journey: Journey,
    facts: Facts,
    policy_config: PolicyConfig,
    at: float,
    effects: list[Effect],
    path: list[PathLine],
) -> Instance:
    """Execute steps from the instance's current step until it waits or ends."""
    sent: list[SentRecord] = []
    for _ in range(MAX_STEPS_PER_RUN):
        if instance.step is None:
            ended = end_instance(instance, "completed", "reached the end", at)
            path.extend(ended.path)
            return ended.instance
        step = journey.step(instance.step)
        if step is None:
            ended = end_instance(instance, "exited", f"no step {instance.step!r}", at)
            path.extend(ended.path)
            return ended.instance
        visit = instance.visits.get(step.id, 1)
        key = f"{instance.id}:{step.id}:{visit}"
        if isinstance(step, SendStep):
            instance, blocked = _send(
                instance, step, visit, facts, policy_config, at, effects, path, sent
            )
            if blocked:
                return instance
        elif isinstance(step, WaitStep):
            due, detail = _wait_until(step, facts, policy_config, at)
            if due is not None and due > at:
                path.append(PathLine(at, step.id, "wait", detail))
                return _wait(instance, due, "wait", effects)
            path.append(PathLine(at, step.id, "wait", f"{detail}: no wait"))
            instance = _goto(instance, step.next, at)
        elif isinstance(step, WaitForStep):
            path.append(
                PathLine(
                    at, step.id, "wait_for", f"{', '.join(step.when.names)} for {step.timeout:g}s"
                )
            )
            return _wait(instance, at + step.timeout, "timeout", effects)
        elif isinstance(step, BranchStep):
            target, label = step.otherwise, "else"
            for index, case in enumerate(step.cases):
                if all_hold(case.tests, facts, instance, at):
                    target, label = case.then, f"case {index + 1}"
                    break
            path.append(PathLine(at, step.id, "branch", f"{label} → {target or 'end'}"))
            instance = _goto(instance, target, at)
        elif isinstance(step, SplitStep):
            point = stable_fraction("split", journey.id, step.id, instance.profile_id)
            total = sum(p.weight for p in step.paths)
            chosen = step.paths[-1]
            running = 0.0
            for candidate in step.paths:
                running += candidate.weight / total
                if point < running:
                    chosen = candidate
                    break
            path.append(PathLine(at, step.id, "split", f"{chosen.name} → {chosen.next or 'end'}"))
            instance = _goto(instance, chosen.next, at)
        elif isinstance(step, UpdateProfileStep):
            properties: dict[str, Any] = {
                "journey": journey.id,
                "step": step.id,
                "instance": instance.id,
                "traits": step.traits,
                "add_tags": list(step.add_tags),
                "remove_tags": list(step.remove_tags),
            }
            if step.stage is not None:
                properties["stage"] = step.stage
                properties["model"] = step.model
            effects.append(EmitEvent("jpu:" + key, PROFILE_UPDATE_EVENT, properties))
            path.append(PathLine(at, step.id, "update_profile", _describe_update(step)))
            instance = _goto(instance, step.next, at)
        elif isinstance(step, WebhookStep):
            body = {
                "type": "journey.webhook",
                "journey": journey.id,
                "version": journey.version,
                "step": step.id,
                "instance": instance.id,
                "profile_id": instance.profile_id,
                "traits": facts.traits,
            }
            effects.append(CallWebhook("jw:" + key, step.webhook, body))
            path.append(PathLine(at, step.id, "webhook", step.webhook))
            instance = _goto(instance, step.next, at)
        elif isinstance(step, AudienceStep):
            effects.append(ChangeAudience("ja:" + key, step.audience, step.action, step.id))
            path.append(PathLine(at, step.id, "audience", f"{step.action} {step.audience}"))
            instance = _goto(instance, step.next, at)
        elif isinstance(step, ExitStep):
            ended = end_instance(instance, step.outcome, step.reason or f"exit at {step.id}", at)
            path.extend(ended.path)
            return ended.instance
        else:
            assert_never(step)
    ended = end_instance(instance, "exited", "too many steps without a wait", at)
    path.extend(ended.path)
    return ended.instance


def _describe_update(step: UpdateProfileStep) -> str:
    parts = [f"{k}={v!r}" for k, v in step.traits.items()]
    parts += [f"+tag {t}" for t in step.add_tags] + [f"-tag {t}" for t in step.remove_tags]
    if step.stage:
        parts.append(f"stage {step.stage}")
    return ", ".join(parts)


def _send(
    instance: Instance,
    step: SendStep,
    visit: int,
    facts: Facts,
    policy_config: PolicyConfig,
    at: float,
    effects: list[Effect],
    path: list[PathLine],
    sent: list[SentRecord],
) -> tuple[Instance, bool]:
    """Ask the policy; returns the instance and whether it is now blocked (deferred)."""
    recipient = facts.recipient()
    if sent:
        recipient = dc_replace(recipient, sent=(*recipient.sent, *sent))
    request = SendRequest(step.channels, step.transactional)
    verdict = policy.decide_send(request, recipient, policy_config, at)
    mid = message_id(instance.id, step.id, visit)
    requested = step.channels[0]
    if isinstance(verdict, Send):
        effects.append(
            QueueSend(
                mid,
                step.id,
                verdict.channel,
                step.template,
                requested,
                step.transactional,
                verdict.notes,
            )
        )
        sent.append(SentRecord(at, verdict.channel, step.transactional))
        messages = dict(instance.messages)
        messages[step.id] = mid
        instance = replace(instance, messages=messages)
        detail = f"{verdict.channel} {step.template}"
        if verdict.rerouted:
            detail += " (rerouted: " + "; ".join(verdict.notes) + ")"
        path.append(PathLine(at, step.id, "send", detail))
        return _goto(instance, step.next, at), False
    if isinstance(verdict, Defer):
        effects.append(
            RecordPolicy(
                mid,
                step.id,
                requested,
                step.template,
                "deferred",
                verdict.reason,
                verdict.channel,
                verdict.until,
                step.transactional,
            )
        )
        path.append(PathLine(at, step.id, "deferred", verdict.reason))
        return _wait(instance, verdict.until, "defer", effects), True
    if isinstance(verdict, Suppress):
        effects.append(
            RecordPolicy(
                mid,
                step.id,
                requested,
                step.template,
                "suppressed",
                verdict.reason,
                None,
                None,
                step.transactional,
            )
        )
        target = step.otherwise if step.otherwise is not None else step.next
        path.append(PathLine(at, step.id, "suppressed", f"{verdict.reason} → {target or 'end'}"))
        return _goto(instance, target, at), False
    assert_never(verdict)


def _wait_until(
    step: WaitStep, facts: Facts, policy_config: PolicyConfig, at: float
) -> tuple[float | None, str]:
    if step.duration is not None:
        return at + step.duration, f"{step.duration:g}s"
    tz = policy.zone(facts.traits.get("timezone"), policy_config.default_timezone)
    if step.until_time is not None:
        due = policy.next_local_time(at, tz, step.until_time, step.weekdays)
        hh, mm = divmod(step.until_time, 60)
        return due, f"until {hh:02d}:{mm:02d} {tz.key}"
    assert step.until_trait is not None
    when = trait_instant(facts.traits.get(step.until_trait), tz)
    if when is None:
        return None, f"trait {step.until_trait} missing or not a date"
    return when + step.offset, f"until {step.until_trait}{step.offset:+g}s"


def trait_instant(value: object, tz: Any) -> float | None:
    """A date trait as epoch seconds: a number, an ISO date (local midnight) or datetime."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value) / 1000.0 if value > 1e11 else float(value)
    if not isinstance(value, str) or not value.strip():
        return None
    text = value.strip().replace("Z", "+00:00")
    try:
        if len(text) == 10:
            day = date.fromisoformat(text)
            return datetime(day.year, day.month, day.day, tzinfo=tz).timestamp()
        moment = datetime.fromisoformat(text)
    except ValueError:
        number = to_number(text)
        return number
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=tz)
    return moment.astimezone(UTC).timestamp()
