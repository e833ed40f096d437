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


def merged_ids(conn: Conn, workspace: str, profile_id: str) -> list[str]:
    """The profile and every profile merged into it (`merged_into` names the final survivor)."""
    rows = conn.execute(
        "SELECT id FROM profiles WHERE workspace_id = ? AND merged_into = ? ORDER BY id",
        (workspace, profile_id),
    )
    return [profile_id, *(str(r[0]) for r in rows)]


def ledger(
    conn: Conn, workspace: str, profile_id: str, model: str | None, after: int, limit: int
) -> list[dict[str, Any]]:
    """The profile's ledger lines with those of the profiles merged into it, each naming the
    profile it was written for: the points a merged profile earned are part of the person's
    score (see the `merge` line), so they belong in its explanation."""
    ids = merged_ids(conn, workspace, profile_id)
    clauses = ["workspace_id = ?", f"profile_id IN ({','.join('?' * len(ids))})", "id > ?"]
    params: list[Any] = [workspace, *ids, after]
    if model:
        clauses.append("model = ?")
        params.append(model)
    rows = conn.execute(
        "SELECT id, model, model_version, at, kind, rule, points, fit, engagement, total, stage, "
        f"reason, message_id, profile_id FROM score_ledger WHERE {' AND '.join(clauses)} "
        "ORDER BY id LIMIT ?",
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
        "profile_id",
    )
    return [dict(zip(keys, r, strict=True)) for r in rows]
