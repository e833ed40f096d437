"""scoring stage: fit and engagement scores, decay, lifecycle stages and the score ledger.

The shell keeps one `ScoreState` per profile per model, calls `score_event` for each event in
log order (the decay timer it sets for `decay_due_at` is one of them: `score_event` applies the
steps due by its instant, as `decay_scores` does), and persists the new state, the
`ScoreChange` ledger lines and the effects in one transaction.
"""

from leadloop.scoring.decide import decay_scores, rescore, score_event
from leadloop.scoring.model import (
    EmitEvent,
    ScoreChange,
    ScoreDecision,
    Scores,
    ScoreState,
    ScoringModel,
    SendWebhook,
    StageChange,
    engagement_at,
    initial_state,
    scores_at,
    total_at,
)

__all__ = [
    "EmitEvent",
    "ScoreChange",
    "ScoreDecision",
    "ScoreState",
    "Scores",
    "ScoringModel",
    "SendWebhook",
    "StageChange",
    "decay_scores",
    "engagement_at",
    "initial_state",
    "rescore",
    "score_event",
    "scores_at",
    "total_at",
]
