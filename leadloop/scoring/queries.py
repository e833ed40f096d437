"""Read side of scoring for the admin API and `leadloop explain`."""

from __future__ import annotations

from typing import Any

import msgspec

from leadloop.scoring.model import ScoreState, engagement_at
from leadloop.storage.db import PostgresConnection, SqliteConnection

Conn = SqliteConnection | PostgresConnection
_decoder = msgspec.json.Decoder(ScoreState)


def scores_view(conn: Conn, workspace: str, profile_id: str, now: float) -> dict[str, Any]:
    rows = conn.execute(
        "SELECT model, state FROM scores WHERE workspace_id = ? AND profile_id = ? ORDER BY model",
        (workspace, profile_id),
    )
    out: dict[str, Any] = {}
    for model, raw in rows:
        state = _decoder.decode(raw)
        at = max(now, state.as_of or now)
        engagement = engagement_at(state, at)
        out[model] = {
            "score": round(state.fit + engagement, 4),
            "fit": round(state.fit, 4),
            "engagement": round(engagement, 4),
            "stage": state.stage,
            "model_version": state.model_version,
            "fit_rules": list(state.fit_rules),
            "last_activity": state.last_activity,
            "decay_steps": state.decay_steps,
            "as_of": state.as_of,
        }
    return out


def ledger(
    conn: Conn, workspace: str, profile_id: str, model: str | None, after: int, limit: int
) -> list[dict[str, Any]]:
    clauses = ["workspace_id = ?", "profile_id = ?", "id > ?"]
    params: list[Any] = [workspace, profile_id, after]
    if model:
        clauses.append("model = ?")
        params.append(model)
    rows = conn.execute(
        "SELECT id, model, model_version, at, kind, rule, points, fit, engagement, total, stage, "
        f"reason, message_id FROM score_ledger WHERE {' AND '.join(clauses)} ORDER BY id LIMIT ?",
        (*params, limit),
    )
    keys = (
        "id",
        "model",
        "model_version",
        "at",
        "kind",
        "rule",
        "points",
        "fit",
        "engagement",
        "total",
        "stage",
        "reason",
        "message_id",
    )
    return [dict(zip(keys, r, strict=True)) for r in rows]
