"""Scoring decisions: pure functions of (state, event, traits, model, now).

Invariants the tests hold us to:

1. Decay never raises a score: step deductions take at most what lies above the floor, and only
   positive points fade by half-life (a penalty does not wear off by itself).
2. Stages move down only when an event sets them; decay never moves a stage.
3. Replaying a profile's events gives the state live processing gave, whenever the shell's
   decay timers fired: steps are applied at their due instants, never at the instant of the call.
4. A threshold fires when the total crosses it upwards and the stage is below it, so an MQL
   is announced once, not on every later event; an event that sets the stage crosses none.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from msgspec.structs import replace

from leadloop.identity.model import Profile
from leadloop.log.model import Event
from leadloop.scoring.ledger import ledger_line
from leadloop.scoring.match import fit_holds, page_path, where_test
from leadloop.scoring.model import (
    JOURNEY_UPDATE_EVENT,
    MAX_PARKED_SESSIONS,
    Award,
    Cap,
    EmitEvent,
    EngagementRule,
    Fading,
    ParkedSession,
    RuleUsage,
    ScoreChange,
    ScoreDecision,
    ScoreState,
    ScoringModel,
    SendWebhook,
    StageChange,
    engagement_at,
    initial_state,
    total_at,
)
from leadloop.scoring.stages import (
    move_to,
    stage_effects,
    stage_from_event,
    stage_from_journey,
)

DAY = 86400.0


def score_event(
    state: ScoreState,
    event: Event,
    profile: Profile,
    account_traits: Mapping[str, Any],
    model: ScoringModel,
    now: float,
    *,
    traits_changed: bool = True,
) -> ScoreDecision:
    """Apply one event: due decay first, then fit, engagement, stage rules and thresholds.

    `traits_changed=False` is the shell's promise that the profile's and account's traits are
    the ones fit was last computed from; fit is then kept as it is (recomputing it would give
    the same result, so replays that always recompute agree with live processing)."""
    at = _instant(state, event, now)
    state, changes = _apply_steps(state, model, at)
    # A profile's first event comes from below every threshold: one at or under the starting
    # score (`at: 0`, everyone who shows up) was otherwise never crossed, so never entered.
    before = total_at(state, at) if state.as_of is not None else -math.inf
    refit = traits_changed or state.model_version != model.version or state.as_of is None
    active = event.type in model.decay.activity_types
    if active:
        # A new window of inactivity starts now; steps count from here. Nothing below reads
        # `last_activity` or `decay_steps`, so they are set in the same copy as `as_of`.
        state = replace(
            state, model_version=model.version, as_of=at, last_activity=at, decay_steps=0
        )
    else:
        state = replace(state, model_version=model.version, as_of=at)

    if refit:
        state, fit_changes = _refit(state, model, profile, account_traits, at, event)
        changes.extend(fit_changes)

    if active and model.session is not None:
        state = _track_session(state, event, at, model.session.timeout)
    for rule, holds in _candidates(model, event):
        if holds(event):
            state, change = _award(state, rule, model, at, event)
            if change is not None:
                changes.append(change)

    moves: list[StageChange] = []
    if event.type == "internal" and event.event == JOURNEY_UPDATE_EVENT:
        state = stage_from_journey(state, model, event, at, moves, changes)
    if model.stage_rules:
        state = stage_from_event(state, model, event, at, moves, changes)
    if not moves:
        # A stage an event set (a CRM, a journey) has the last word on that event: the
        # thresholds its points cross took a lead the CRM moved down straight back up.
        state = _cross_thresholds(state, model, before, total_at(state, at), at, event, moves)

    effects = stage_effects(state, model, profile, moves, changes, at, event.message_id)
    return ScoreDecision(
        state=state,
        changes=tuple(changes),
        stage_changes=tuple(moves),
        effects=effects,
        decay_due_at=_decay_due_at(state, model, at),
    )


_Candidate = tuple[EngagementRule, Callable[[Event], bool]]
_Index = dict[tuple[str, str | None], tuple[_Candidate, ...]]
_INDEX: dict[int, tuple[ScoringModel, _Index]] = {}


def _candidates(model: ScoringModel, event: Event) -> tuple[_Candidate, ...]:
    """The engagement rules whose type and name filters match the event, in rule order, each
    with the test of its remaining conditions.

    A memo of a pure function of the (immutable) model object: every event otherwise tests
    every rule, which dominated the cost of scoring. The entry holds the model itself, so an
    `id()` reused by another model after garbage collection is never mistaken for it."""
    entry = _INDEX.get(id(model))
    if entry is None or entry[0] is not model:
        if len(_INDEX) > 256:
            _INDEX.clear()
        entry = (model, {})
        _INDEX[id(model)] = entry
    index = entry[1]
    key = (event.type, event.event)
    found = index.get(key)
    if found is None:
        found = tuple(
            (rule, where_test(rule.when.where))
            for rule in model.engagement
            if (event.type in rule.when.types if rule.when.types else event.type != "internal")
            and (not rule.when.names or event.event in rule.when.names)
        )
        if len(index) < 10_000:
            index[key] = found
    return found


def decay_scores(state: ScoreState, model: ScoringModel, now: float) -> ScoreDecision:
    """Apply every step deduction due up to `now`, each at its own instant."""
    state, changes = _apply_steps(state, model, now)
    reference = now if state.as_of is None else max(now, state.as_of)
    return ScoreDecision(
        state=state, changes=tuple(changes), decay_due_at=_decay_due_at(state, model, reference)
    )


def rescore(
    history: Iterable[tuple[Event, Profile, Mapping[str, Any]]],
    model: ScoringModel,
    now: float,
    state: ScoreState | None = None,
    *,
    final_decay: bool = True,
) -> ScoreDecision:
    """Replay events (each with the profile and account traits as they were then) from scratch.

    Returns the final state with every ledger line, stage change and effect of the replay; the
    caller decides whether replayed effects are sent (a backtest sends none). With
    `final_decay=False` the state is left as of the last event, for a caller that goes on
    with a live event (which applies the decay due by its own instant).
    """
    current = initial_state(model) if state is None else state
    changes: list[ScoreChange] = []
    moves: list[StageChange] = []
    effects: list[SendWebhook | EmitEvent] = []
    fitted_on: tuple[Mapping[str, Any], Mapping[str, Any]] | None = None
    for event, profile, account_traits in history:
        # Fit is recomputed only when the traits differ from those it was last computed
        # from, which gives what recomputing on every event would, at a fraction of the cost.
        traits = (profile.traits, account_traits)
        changed = fitted_on is None or not _same_traits(traits, fitted_on)
        fitted_on = traits
        decision = score_event(
            current, event, profile, account_traits, model, now, traits_changed=changed
        )
        current = decision.state
        changes.extend(decision.changes)
        moves.extend(decision.stage_changes)
        effects.extend(decision.effects)
    if not final_decay:
        return ScoreDecision(
            state=current,
            changes=tuple(changes),
            stage_changes=tuple(moves),
            effects=tuple(effects),
        )
    final = decay_scores(current, model, now)
    changes.extend(final.changes)
    return ScoreDecision(
        state=final.state,
        changes=tuple(changes),
        stage_changes=tuple(moves),
        effects=tuple(effects),
        decay_due_at=final.decay_due_at,
    )


def merge_scores(
    old: ScoreState,
    others: Mapping[str, ScoreState],
    merged: ScoreState,
    event: Event,
    profile: Profile,
    model: ScoringModel,
    now: float,
) -> ScoreDecision:
    """A profile that absorbed others while `event` was resolved: `old` is its state before,
    `others` those of the profiles merged into it (by id), `merged` the replay of their
    history together.

    The ledger line's points are what the merged replay gives beyond the sum of the scores
    (caps, sessions and decay windows now count the events together; often 0), since the
    merged profiles' own lines are read as part of the survivor's ledger. The stage is the
    highest any of them had (stages never move down), or the replay's when that is higher:
    the person's events together passed a threshold that neither profile's did, perhaps
    before a lost title or decay brought the score back under it. A rescore of the log gives
    that stage, so the merge moves there (cause `merge`), with the stage's actions: the
    person did qualify. Thresholds between the survivor's old score and the merged one are
    then crossed here too, with theirs."""
    stage = max([old.stage, *(o.stage for o in others.values())], key=model.rank)
    state = replace(merged, stage=stage)
    at = _instant(state, event, now)
    moves: list[StageChange] = []
    if model.rank(merged.stage) > model.rank(stage):
        moves.append(move_to(state, model, merged.stage, at, "merge", event.message_id, None))
        state = replace(state, stage=merged.stage)
    before, after = total_at(old, at), total_at(state, at)
    summed = before + sum(total_at(o, at) for o in others.values())
    reason = (
        f"merged with {', '.join(sorted(others))} (their lines count here); the merged "
        f"history rescored gives {after:g} against {summed:g} added up"
    )
    changes = [
        ledger_line(state, model, at, "merge", after - summed, reason, None, event.message_id)
    ]
    state = _cross_thresholds(state, model, before, after, at, event, moves)
    return ScoreDecision(
        state=state,
        changes=tuple(changes),
        stage_changes=tuple(moves),
        effects=stage_effects(state, model, profile, moves, changes, at, event.message_id),
        decay_due_at=_decay_due_at(state, model, at),
    )


def _cross_thresholds(
    state: ScoreState,
    model: ScoringModel,
    before: float,
    after: float,
    at: float,
    event: Event,
    moves: list[StageChange],
) -> ScoreState:
    """Move up to every stage whose threshold lies in (before, after]; moves are appended."""
    if after <= before:
        return state
    for stage in model.stages:
        if stage.at is None or not before < stage.at <= after:
            continue
        if model.rank(stage.name) > model.rank(state.stage):
            moves.append(move_to(state, model, stage.name, at, "threshold", event.message_id, None))
            state = replace(state, stage=stage.name)
    return state


def _same_traits(
    a: tuple[Mapping[str, Any], Mapping[str, Any]], b: tuple[Mapping[str, Any], Mapping[str, Any]]
) -> bool:
    return (a[0] is b[0] or a[0] == b[0]) and (a[1] is b[1] or a[1] == b[1])


# --- time ----------------------------------------------------------------------------------------


def _instant(state: ScoreState, event: Event, now: float) -> float:
    """The event's instant, clamped so a profile's state never moves back in time."""
    at = min(event.timestamp, now)
    return at if state.as_of is None else max(at, state.as_of)


def _apply_steps(
    state: ScoreState, model: ScoringModel, until: float
) -> tuple[ScoreState, list[ScoreChange]]:
    step = model.decay.step
    changes: list[ScoreChange] = []
    if step is None or state.last_activity is None:
        return state, changes
    start = state.last_activity
    while True:
        due = start + (state.decay_steps + 1) * step.every
        if due > until:
            return state, changes
        room = engagement_at(state, due) - model.decay.floor
        if room <= 0:
            # Engagement only grows through events, and each event applies the steps due before
            # it, so the idle steps up to `until` can be skipped in one go, with no ledger lines.
            count = _steps_until(start, step.every, until, state.decay_steps + 1)
            last = start + count * step.every
            as_of = last if state.as_of is None else max(state.as_of, last)
            return replace(state, decay_steps=count, as_of=as_of), changes
        amount = min(step.points, room)
        steady, fading = _deduct(state, amount, due)
        as_of = due if state.as_of is None else max(state.as_of, due)
        state = replace(
            state, steady=steady, fading=fading, decay_steps=state.decay_steps + 1, as_of=as_of
        )
        days = (due - start) / DAY
        changes.append(
            ledger_line(state, model, due, "decay", -amount, f"no activity for {days:g} days")
        )


def _steps_until(start: float, every: float, until: float, at_least: int) -> int:
    count = max(at_least, math.floor((until - start) / every))
    # Float division can be off by one at the boundary; settle it with the same arithmetic
    # the loop uses for `due`.
    while start + (count + 1) * every <= until:
        count += 1
    while count > at_least and start + count * every > until:
        count -= 1
    return count


def _deduct(state: ScoreState, amount: float, at: float) -> tuple[float, tuple[Fading, ...]]:
    """Take `amount` from the non-fading part first, then from the fading buckets at `at`;
    returns the new steady part and buckets. What neither holds (only a floor below zero
    leaves room for it) takes the non-fading part below zero."""
    steady = state.steady
    take = min(max(steady, 0.0), amount)
    steady -= take
    left = amount - take
    if not state.fading:
        return steady - left, state.fading
    buckets: list[Fading] = []
    for bucket in state.fading:
        if left > 0:
            value = bucket.value * 0.5 ** (max(0.0, at - bucket.as_of) / bucket.half_life)
            used = min(value, left)
            left -= used
            bucket = Fading(bucket.half_life, value - used, at)
        buckets.append(bucket)
    return steady - max(left, 0.0), tuple(buckets)


def decay_due_at(state: ScoreState, model: ScoringModel, at: float) -> float | None:
    """When the next step deduction falls due for this state (None: none can)."""
    return _decay_due_at(state, model, at)


def _decay_due_at(state: ScoreState, model: ScoringModel, at: float) -> float | None:
    step = model.decay.step
    if step is None or state.last_activity is None:
        return None
    if engagement_at(state, at) <= model.decay.floor:
        return None
    return state.last_activity + (state.decay_steps + 1) * step.every


# --- sub-scores ------------------------------------------------------------------------------------


def _refit(
    state: ScoreState,
    model: ScoringModel,
    profile: Profile,
    account_traits: Mapping[str, Any],
    at: float,
    event: Event,
) -> tuple[ScoreState, list[ScoreChange]]:
    """Recompute fit from the current traits; log each rule that started or stopped holding
    (naming the journey step whose update changed them, at its event)."""
    message_id = event.message_id
    cause = ""
    if event.type == "internal" and event.event == JOURNEY_UPDATE_EVENT:
        props = event.properties
        cause = f" (journey {props.get('journey')}/{props.get('step')})"
    before = set(state.fit_rules)
    matched: list[str] = []
    changes: list[ScoreChange] = []
    fit = 0.0
    for rule in model.fit:
        holds, seen = fit_holds(rule, profile.traits, account_traits)
        if holds:
            matched.append(rule.id)
            fit += rule.points
        if holds == (rule.id in before):
            continue
        points = rule.points if holds else -rule.points
        verb = "holds" if holds else "no longer holds"
        state = replace(state, fit=state.fit + points)
        reason = f"fit rule {rule.id} {verb} ({seen}){cause}"
        changes.append(ledger_line(state, model, at, "fit", points, reason, rule.id, message_id))
    residual = fit - state.fit
    if abs(residual) > 1e-9:
        # Only after a model change: a rule was removed or its points edited.
        state = replace(state, fit=fit)
        reason = "fit rules changed with the model version"
        changes.append(ledger_line(state, model, at, "fit", residual, reason, None, message_id))
    return replace(state, fit=fit, fit_rules=tuple(matched)), changes


def _used(recent: tuple[Award, ...], total: float, cap: Cap, at: float) -> float:
    if cap.per is None:
        return total
    return sum(award.points for award in recent if award.at > at - cap.per)


def _remember(
    recent: tuple[Award, ...], cap: Cap | None, at: float, points: float
) -> tuple[Award, ...]:
    """Keep only the awards a rolling cap still needs, so the state stays small."""
    if cap is None or cap.per is None:
        return ()
    kept = tuple(award for award in recent if award.at > at - cap.per)
    return (*kept, Award(at, points)) if points > 0 else kept


def _track_session(state: ScoreState, event: Event, at: float, timeout: float) -> ScoreState:
    named = event.context.get("sessionId")
    if isinstance(named, str | int) and not isinstance(named, bool):
        key = f"id:{named}"
    elif state.session_last is None or at - state.session_last >= timeout:
        key = f"auto:{at!r}"
    else:
        key = state.session_key or f"auto:{at!r}"
    if key == state.session_key:
        return replace(state, session_last=at)
    # Another session: the current one, if named and not idle past the timeout, is parked
    # with its points (it may resume: a second device), and a parked one resumes with its.
    live = [s for s in state.parked_sessions if at - s.last < timeout]
    points = next((s.points for s in live if s.key == key), 0.0)
    parked = [s for s in live if s.key != key]
    current, last = state.session_key, state.session_last
    if (
        current is not None
        and current.startswith("id:")
        and last is not None
        and at - last < timeout
    ):
        parked.append(ParkedSession(current, last, state.session_points))
    return replace(
        state,
        session_key=key,
        session_last=at,
        session_points=points,
        parked_sessions=tuple(parked[-MAX_PARKED_SESSIONS:]),
    )


def _award(
    state: ScoreState, rule: EngagementRule, model: ScoringModel, at: float, event: Event
) -> tuple[ScoreState, ScoreChange | None]:
    usage = state.usage.get(rule.id)
    count = 0 if usage is None else usage.count
    if rule.once and count:
        return state, None
    recent = () if usage is None else usage.recent
    total = 0.0 if usage is None else usage.total
    points = rule.points
    held: list[str] = []
    # Activity events have just joined (or started) the session; another event (identify,
    # group) belongs to it only while it is not over.
    in_session = (
        model.session is not None
        and state.session_key is not None
        and state.session_last is not None
        and at - state.session_last < model.session.timeout
    )
    if points > 0:
        if rule.cap is not None:
            room = rule.cap.points - _used(recent, total, rule.cap, at)
            points, held = _limit(points, room, held, f"rule cap {_cap_text(rule.cap)}")
        if model.cap is not None:
            room = model.cap.points - _used(state.model_recent, state.model_total, model.cap, at)
            points, held = _limit(points, room, held, f"model cap {_cap_text(model.cap)}")
        if model.session is not None and in_session:
            room = model.session.max_points - state.session_points
            points, held = _limit(points, room, held, f"session limit {model.session.max_points:g}")
    gained = max(points, 0.0)
    usage_now = RuleUsage(
        count=count + 1, total=total + gained, recent=_remember(recent, rule.cap, at, gained)
    )
    half_life = model.decay.half_life if rule.half_life is None else rule.half_life
    if points > 0 and half_life:
        steady, fading = state.steady, _add_fading(state.fading, half_life, points, at)
    else:
        steady, fading = state.steady + points, state.fading
    state = replace(
        state,
        usage={**state.usage, rule.id: usage_now},
        model_recent=_remember(state.model_recent, model.cap, at, gained),
        model_total=state.model_total + gained,
        session_points=state.session_points + gained if in_session else state.session_points,
        steady=steady,
        fading=fading,
    )
    reason = f"{rule.id}: {_describe(event)}"
    if held:
        reason += f" (held back by {', '.join(held)})"
    return state, ledger_line(
        state, model, at, "engagement", points, reason, rule.id, event.message_id
    )


def _limit(points: float, room: float, held: list[str], why: str) -> tuple[float, list[str]]:
    if points <= room:
        return points, held
    return max(room, 0.0), [*held, why]


def _cap_text(cap: Cap) -> str:
    if cap.per is None:
        return f"{cap.points:g}"
    return f"{cap.points:g} per {cap.per / DAY:g}d"


def _add_fading(
    fading: tuple[Fading, ...], half_life: float, points: float, at: float
) -> tuple[Fading, ...]:
    buckets: list[Fading] = []
    added = False
    for bucket in fading:
        if bucket.half_life == half_life:
            value = bucket.value * 0.5 ** (max(0.0, at - bucket.as_of) / half_life)
            bucket = Fading(half_life, value + points, at)
            added = True
        buckets.append(bucket)
    if not added:
        buckets.append(Fading(half_life, points, at))
    return tuple(buckets)


def _describe(event: Event) -> str:
    if event.type == "page":
        return f"page {page_path(event) or event.event or ''}".rstrip()
    if event.event:
        return f"{event.type} {event.event!r}"
    return event.type
