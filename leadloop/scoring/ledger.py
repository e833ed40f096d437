"""Ledger lines: each carries the sub-scores after the change, so "why 62?" reads top to bottom."""

from __future__ import annotations

from leadloop.scoring.model import (
    ChangeKind,
    ScoreChange,
    ScoreState,
    ScoringModel,
    engagement_at,
)


def ledger_line(
    state: ScoreState,
    model: ScoringModel,
    at: float,
    kind: ChangeKind,
    points: float,
    reason: str,
    rule_id: str | None = None,
    message_id: str | None = None,
) -> ScoreChange:
    engagement = engagement_at(state, at)
    return ScoreChange(
        model_id=model.id,
        model_version=model.version,
        at=at,
        kind=kind,
        points=points,
        reason=reason,
        fit=state.fit,
        engagement=engagement,
        total=state.fit + engagement,
        rule_id=rule_id,
        message_id=message_id,
    )
