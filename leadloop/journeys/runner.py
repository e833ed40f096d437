"""The step runner, pure: executes an instance's steps from where it stands until it waits or
ends, asking the contact policy before every send. `journeys.decide` calls it on entry, on the
awaited event and when a timer fires; like it, it reads no clock and no database.
"""

from __future__ import annotations

import math
from datetime import UTC, date, datetime
from typing import Any, assert_never

from msgspec.structs import replace

from leadloop.digits import ascii_digits
from leadloop.journeys.evaluate import all_hold
from leadloop.journeys.hashing import (
    choose_variant,
    message_id,
    stable_fraction,
    weighted_choice,
)
from leadloop.journeys.model import (
    PROFILE_UPDATE_EVENT,
    Advance,
    AudienceStep,
    BranchStep,
    CallWebhook,
    CancelWake,
    ChangeAudience,
    Effect,
    EmitEvent,
    ExitStep,
    Facts,
    Instance,
    Journey,
    PathLine,
    QueueSend,
    RecordPolicy,
    ScheduleWake,
    SendStep,
    SplitStep,
    Status,
    UpdateProfileStep,
    WaitForStep,
    WaitStep,
    WakeKind,
    WebhookStep,
)
from leadloop.personalization import channel_choice, send_time
from leadloop.personalization.bandit import thompson
from leadloop.policy import decide as policy
from leadloop.policy.model import (
    Defer,
    PolicyConfig,
    QuietHours,
    Send,
    SendRequest,
    SentRecord,
    Suppress,
)
from leadloop.scoring.match import to_number

MAX_STEPS_PER_RUN = 200
"""A guard only: validation already rejects loops without a wait."""


def end_instance(instance: Instance, status: Status, reason: str, at: float) -> Advance:
    """End the instance; the token moves on, so a timer still pending for it changes nothing."""
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


def next_of(step: WaitStep | WaitForStep | Any) -> str | None:
    return getattr(step, "next", None)


def goto_step(instance: Instance, step: str | None, at: float) -> Instance:
    if step is None:
        return replace(instance, step=None, updated_at=at)
    visits = dict(instance.visits)
    visits[step] = visits.get(step, 0) + 1
    return replace(instance, step=step, visits=visits, updated_at=at, status="active")


def _wait(
    instance: Instance, at: float, due: float, kind: WakeKind, effects: list[Effect]
) -> Instance:
    # Strictly after `at`: a wake due when the timer being handled was (a timeout below a
    # float step, `at + 1e-9`) fires under that timer's event id and is dropped as a duplicate.
    due = max(due, math.nextafter(at, math.inf))
    token = instance.token + 1
    effects.append(ScheduleWake(due, token))
    return replace(instance, status="waiting", wake=kind, due_at=due, token=token)


def run_steps(
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
            window_ends = instance.entered_at + journey.conversion_window
            if journey.measured and at < window_ends:
                # Lift compares the groups over the same window: a treated profile that buys
                # after the last step but within it counts, as a held-out one would.
                path.append(PathLine(at, None, "window", "last step done: waiting for the goal"))
                return _wait(instance, at, window_ends, "window", effects)
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
                instance, journey, step, visit, facts, policy_config, at, effects, path, sent
            )
            if blocked:
                return instance
        elif isinstance(step, WaitStep):
            due, detail = _wait_until(step, facts, policy_config, at, key)
            if due is not None and due > at:
                path.append(PathLine(at, step.id, "wait", detail))
                return _wait(instance, at, due, "wait", effects)
            path.append(PathLine(at, step.id, "wait", f"{detail}: no wait"))
            instance = goto_step(instance, step.next, at)
        elif isinstance(step, WaitForStep):
            path.append(
                PathLine(
                    at, step.id, "wait_for", f"{', '.join(step.when.names)} for {step.timeout:g}s"
                )
            )
            return _wait(instance, at, at + step.timeout, "timeout", effects)
        elif isinstance(step, BranchStep):
            target, label = step.otherwise, "else"
            for index, case in enumerate(step.cases):
                if all_hold(case.tests, facts, instance, at):
                    target, label = case.then, f"case {index + 1}"
                    break
            path.append(PathLine(at, step.id, "branch", f"{label} → {target or 'end'}"))
            instance = goto_step(instance, target, at)
        elif isinstance(step, SplitStep):
            point = stable_fraction("split", journey.id, step.id, instance.profile_id)
            chosen = step.paths[weighted_choice(point, [p.weight for p in step.paths])]
            path.append(PathLine(at, step.id, "split", f"{chosen.name} → {chosen.next or 'end'}"))
            instance = goto_step(instance, chosen.next, at)
        elif isinstance(step, UpdateProfileStep):
            properties = update_properties(journey.id, step, instance.id)
            effects.append(EmitEvent("jpu:" + key, PROFILE_UPDATE_EVENT, properties))
            path.append(PathLine(at, step.id, "update_profile", _describe_update(step)))
            instance = goto_step(instance, step.next, at)
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
            instance = goto_step(instance, step.next, at)
        elif isinstance(step, AudienceStep):
            effects.append(ChangeAudience("ja:" + key, step.audience, step.action, step.id))
            path.append(PathLine(at, step.id, "audience", f"{step.action} {step.audience}"))
            instance = goto_step(instance, step.next, at)
        elif isinstance(step, ExitStep):
            ended = end_instance(instance, step.outcome, step.reason or f"exit at {step.id}", at)
            path.extend(ended.path)
            return ended.instance
        else:
            assert_never(step)
    ended = end_instance(instance, "exited", "too many steps without a wait", at)
    path.extend(ended.path)
    return ended.instance


def update_properties(journey_id: str, step: UpdateProfileStep, instance_id: str) -> dict[str, Any]:
    """The properties of the `Journey Profile Updated` event an `update_profile` step emits."""
    properties: dict[str, Any] = {
        "journey": journey_id,
        "step": step.id,
        "instance": instance_id,
        "traits": step.traits,
        "add_tags": list(step.add_tags),
        "remove_tags": list(step.remove_tags),
    }
    if step.stage is not None:
        properties["stage"] = step.stage
        properties["model"] = step.model
    return properties


def _describe_update(step: UpdateProfileStep) -> str:
    parts = [f"{k}={v!r}" for k, v in step.traits.items()]
    parts += [f"+tag {t}" for t in step.add_tags] + [f"-tag {t}" for t in step.remove_tags]
    if step.stage:
        parts.append(f"stage {step.stage}")
    return ", ".join(parts)


def _send(
    instance: Instance,
    journey: Journey,
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
        recipient = replace(recipient, sent=(*recipient.sent, *sent))
    channels = step.channels
    if step.channel_order == "preferred":
        channels = channel_choice.preferred_order(channels, facts.channel_history())
    request = SendRequest(channels, step.transactional)
    verdict = policy.decide_send(request, recipient, policy_config, at)
    mid = message_id(instance.id, step.id, visit)
    requested = channels[0]
    template, variant = step.template, ""
    if step.variants and step.selection == "thompson":
        # Drawn from the counts the log has shown up to this event, keyed by the instance
        # and visit: a replay folds the same counts in the same order and draws the same.
        templates = tuple(v.template for v in step.variants)
        arms = facts.variant_arms(journey.id, step.id, templates)
        index = thompson(arms, journey.id, step.id, instance.id, str(visit))
        template = templates[index]
        variant = f" (variant {index + 1} of {len(templates)}, thompson)"
    elif step.variants:
        index = choose_variant(step.variants, journey.id, step.id, instance.profile_id)
        template = step.variants[index].template
        variant = f" (variant {index + 1} of {len(step.variants)})"
    if isinstance(verdict, Send):
        effects.append(
            QueueSend(
                mid,
                step.id,
                verdict.channel,
                template,
                requested,
                step.transactional,
                verdict.notes,
                bool(step.variants),
            )
        )
        sent.append(SentRecord(at, verdict.channel, step.transactional))
        messages = dict(instance.messages)
        messages[step.id] = mid
        instance = replace(instance, messages=messages)
        detail = f"{verdict.channel} {template}{variant}"
        if channels != step.channels:
            detail += f" (preferred order: {', '.join(channels)})"
        if verdict.rerouted:
            detail += " (rerouted: " + "; ".join(verdict.notes) + ")"
        path.append(PathLine(at, step.id, "send", detail))
        return goto_step(instance, step.next, at), False
    if isinstance(verdict, Defer):
        effects.append(
            RecordPolicy(
                mid,
                step.id,
                requested,
                template,
                "deferred",
                verdict.reason,
                verdict.channel,
                verdict.until,
                step.transactional,
            )
        )
        path.append(PathLine(at, step.id, "deferred", verdict.reason))
        return _wait(instance, at, verdict.until, "defer", effects), True
    if isinstance(verdict, Suppress):
        effects.append(
            RecordPolicy(
                mid,
                step.id,
                requested,
                template,
                "suppressed",
                verdict.reason,
                None,
                None,
                step.transactional,
            )
        )
        target = step.otherwise if step.otherwise is not None else step.next
        path.append(PathLine(at, step.id, "suppressed", f"{verdict.reason} → {target or 'end'}"))
        return goto_step(instance, target, at), False
    assert_never(verdict)


def _wait_until(
    step: WaitStep, facts: Facts, policy_config: PolicyConfig, at: float, key: str
) -> tuple[float | None, str]:
    if step.duration is not None:
        return at + step.duration, f"{step.duration:g}s"
    tz = policy.zone(facts.traits.get("timezone"), policy_config.default_timezone)
    if step.best_time is not None:
        return _best_time(step.best_time, facts, tz, at, key, policy_config.quiet_hours)
    if step.until_time is not None:
        # Strictly after `at`: the timer of a loop through this wait (a daily digest) fires at
        # the time itself, and "no wait" there would send round the loop until the step limit.
        due = policy.next_local_time(at, tz, step.until_time, step.weekdays, strictly=True)
        hh, mm = divmod(step.until_time, 60)
        return due, f"until {hh:02d}:{mm:02d} {tz.key}"
    assert step.until_trait is not None
    when = trait_instant(facts.traits.get(step.until_trait), tz)
    if when is None:
        return None, f"trait {step.until_trait} missing or not a date"
    return when + step.offset, f"until {step.until_trait}{step.offset:+g}s"


def _best_time(
    window: float, facts: Facts, tz: Any, at: float, key: str, quiet: QuietHours | None
) -> tuple[float, str]:
    """The start of the hour within `window` when the profile most likely engages, from the
    local hours of its past opens and clicks (`personalization.send_time`); a stable share of
    waits (by `key`: instance, step, visit) explores another hour of the window. Not an hour in
    quiet hours of every channel: the send would only be deferred to their end, not the hour
    chosen (channel-specific ones are left to the policy: the wait does not know the channel)."""
    hours = [_local_hour(t, tz) for t in facts.engagement_times()]
    starts: dict[int, float] = {}
    for hour in range(24):
        due = policy.next_local_time(at, tz, hour * 60, strictly=True)
        if _local_hour(due, tz) != hour:
            # The clocks skip this hour today: `due` is the next hour's start, chosen under
            # its name. The hour comes the next day, within a window over a day.
            due = policy.next_local_time(due, tz, hour * 60, strictly=True)
        if due - at <= window and _local_hour(due, tz) == hour:
            starts[hour] = due
    if not starts:  # a window shorter than the time to the next full hour cannot be met
        return at + window, f"best time: no full hour within {window:g}s"
    if quiet is not None and not quiet.channels:
        awake = {
            h: due for h, due in starts.items() if policy.quiet_until(quiet, "", tz, due) is None
        }
        starts = awake or starts  # a window wholly inside quiet hours: the policy defers
    ordered = sorted(starts, key=starts.__getitem__)
    hour = send_time.choose_hour(
        send_time.hour_scores(hours), ordered, stable_fraction("best_time", key)
    )
    return starts[hour], f"best time {hour:02d}:00 {tz.key} ({len(hours)} past engagements)"


def _local_hour(at: float, tz: Any) -> int:
    return datetime.fromtimestamp(at, UTC).astimezone(tz).hour


def trait_instant(value: object, tz: Any) -> float | None:
    """A date trait as epoch seconds: a number, an ISO date (local midnight) or datetime."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value) / 1000.0 if value > 1e11 else float(value)
    if not isinstance(value, str) or not value.strip():
        return None
    typed = ascii_digits(value.strip())  # a date typed in one script's digits, as `to_number`
    if typed is None:
        return None
    text = typed.replace("Z", "+00:00")
    try:
        if len(text) == 10:
            day = date.fromisoformat(text)
            return datetime(day.year, day.month, day.day, tzinfo=tz).timestamp()
        moment = datetime.fromisoformat(text)
    except ValueError:
        # A number in a string (HubSpot sends dates as epoch milliseconds in strings) reads as
        # the number would: milliseconds are not taken for seconds tens of thousands of years on.
        number = to_number(text)
        return None if number is None else trait_instant(number, tz)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=tz)
    try:
        return moment.astimezone(UTC).timestamp()
    except OverflowError:  # e.g. 9999-12-31T23:00-14:00 is in the year 10000 in UTC
        return None
