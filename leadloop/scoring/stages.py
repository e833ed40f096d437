"""Stage moves (by threshold or by event) and the actions they run."""

from __future__ import annotations

from typing import Any, Literal

from msgspec.structs import replace

from leadloop.identity.model import Profile
from leadloop.log.model import Event
from leadloop.scoring.ledger import ledger_line
from leadloop.scoring.match import event_field, matches_filter
from leadloop.scoring.model import (
    JOURNEY_UPDATE_EVENT,
    EmitAction,
    EmitEvent,
    ScoreChange,
    ScoreState,
    ScoringModel,
    SendWebhook,
    StageChange,
    WebhookAction,
    engagement_at,
    total_at,
)


def stage_from_event(
    state: ScoreState,
    model: ScoringModel,
    event: Event,
    at: float,
    moves: list[StageChange],
    changes: list[ScoreChange],
) -> ScoreState:
    for rule in model.stage_rules:
        if not matches_filter(event, rule.when):
            continue
        wanted = rule.stage
        if wanted is None and rule.stage_field is not None:
            value = event_field(event, rule.stage_field)
            wanted = str(value) if isinstance(value, str | int) else None
        if model.stage(wanted or "") is None:
            _unknown(state, model, event, at, wanted, rule.id, changes)
            continue
        return _set_stage(state, model, event, at, str(wanted), "event", rule.id, moves)
    return state


def stage_from_journey(
    state: ScoreState,
    model: ScoringModel,
    event: Event,
    at: float,
    moves: list[StageChange],
    changes: list[ScoreChange],
) -> ScoreState:
    """A journey's `update_profile` step set this model's stage (`JOURNEY_UPDATE_EVENT`, whose
    `properties` name the model, the stage, the journey and the step). Validation checked the
    stage when the journey was applied; a stage the model no longer has (the playbook changed
    since the step ran) is ignored, with a ledger line saying so."""
    props = event.properties
    if event.event != JOURNEY_UPDATE_EVENT or props.get("model") != model.id:
        return state
    wanted = props.get("stage")
    if not isinstance(wanted, str):
        return state
    rule_id = f"journey:{props.get('journey')}/{props.get('step')}"
    if model.stage(wanted) is None:
        _unknown(state, model, event, at, wanted, rule_id, changes)
        return state
    return _set_stage(state, model, event, at, wanted, "journey", rule_id, moves)


IGNORED = " ignored"
"""How the reason of a `stage` ledger line that moved nobody ends (a stage name the model does
not have); a move's reason ends with its cause in brackets."""


def _unknown(
    state: ScoreState,
    model: ScoringModel,
    event: Event,
    at: float,
    wanted: str | None,
    rule_id: str,
    changes: list[ScoreChange],
) -> None:
    reason = f"{rule_id}: unknown stage {wanted!r}{IGNORED}"
    changes.append(ledger_line(state, model, at, "stage", 0.0, reason, rule_id, event.message_id))


def _set_stage(
    state: ScoreState,
    model: ScoringModel,
    event: Event,
    at: float,
    wanted: str,
    cause: Literal["event", "journey"],
    rule_id: str,
    moves: list[StageChange],
) -> ScoreState:
    """Move to the stage named `wanted` (one of the model's), unless the profile is on it."""
    stage = model.stage(wanted)
    assert stage is not None
    if stage.name == state.stage:
        return state
    moves.append(move_to(state, model, stage.name, at, cause, event.message_id, rule_id))
    return replace(state, stage=stage.name)


def move_reason(move: StageChange) -> str:
    """The ledger's reason for a stage move; a journey's names the journey and step."""
    cause = (
        f"journey {move.rule_id.removeprefix('journey:')}"
        if move.cause == "journey" and move.rule_id
        else move.cause
    )
    return f"{move.from_stage} → {move.to_stage} ({cause})"


def move_to(
    state: ScoreState,
    model: ScoringModel,
    to: str,
    at: float,
    cause: Literal["threshold", "event", "journey", "merge"],
    message_id: str,
    rule_id: str | None,
) -> StageChange:
    return StageChange(
        model_id=model.id,
        at=at,
        from_stage=state.stage,
        to_stage=to,
        cause=cause,
        total=total_at(state, at),
        message_id=message_id,
        rule_id=rule_id,
    )


def stage_effects(
    state: ScoreState,
    model: ScoringModel,
    profile: Profile,
    moves: list[StageChange],
    changes: list[ScoreChange],
    at: float,
    message_id: str,
) -> tuple[EmitEvent | SendWebhook, ...]:
    """Actions of each stage entered upwards; a CRM moving a lead down announces nothing."""
    if not moves:
        return ()
    effects: list[EmitEvent | SendWebhook] = []
    engagement = engagement_at(state, at)
    score = {"total": state.fit + engagement, "fit": state.fit, "engagement": engagement}
    for move in moves:
        if model.rank(move.to_stage) <= model.rank(move.from_stage):
            continue
        stage = model.stage(move.to_stage)
        assert stage is not None
        for action in stage.actions:
            if isinstance(action, EmitAction):
                properties = {
                    "model": model.id,
                    "model_version": model.version,
                    "stage": move.to_stage,
                    "previous_stage": move.from_stage,
                    "score": score["total"],
                    "fit": score["fit"],
                    "engagement": score["engagement"],
                }
                key = f"scoring:{model.id}:{move.to_stage}:{message_id}"
                effects.append(EmitEvent(key=key, name=action.event, properties=properties))
            elif isinstance(action, WebhookAction) and action.enabled:
                payload = {
                    "type": "lead.stage_changed",
                    "profile_id": profile.id,
                    "workspace_id": profile.workspace_id,
                    "model": model.id,
                    "model_version": model.version,
                    "stage": move.to_stage,
                    "previous_stage": move.from_stage,
                    "cause": move.cause,
                    "at": at,
                    "message_id": message_id,
                    "score": score,
                    "fit_rules": list(state.fit_rules),
                    "reasons": [_reason(change) for change in changes],
                }
                key = f"{model.id}:{profile.id}:{move.to_stage}:{message_id}"
                effects.append(
                    SendWebhook(key=key, webhook_id=action.webhook, url=action.url, payload=payload)
                )
    return tuple(effects)


def _reason(change: ScoreChange) -> dict[str, Any]:
    return {
        "kind": change.kind,
        "rule": change.rule_id,
        "points": change.points,
        "reason": change.reason,
        "message_id": change.message_id,
        "at": change.at,
    }
