"""Read side of scoring for the admin API and `leadloop explain`."""

from __future__ import annotations

from dataclasses import dataclass
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
    return {model: _score_view(_decoder.decode(raw), now) for model, raw in rows}


def _score_view(state: ScoreState, now: float) -> dict[str, Any]:
    """A score as of `now` (half-life decay is worked out at reading, never stored)."""
    at = max(now, state.as_of or now)
    engagement = engagement_at(state, at)
    return {
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


SCAN = 5000
"""Score rows one page of `scored_profiles` reads at most, matching or not."""
LISTED_IDENTITIES = ("email", "phone", "user_id", "external_id")
"""What a listed profile is shown with: the identities a person is reached or matched by
(anonymous ids, one per browser or device, are left to the profile's own view)."""


@dataclass(frozen=True)
class ScoreFilter:
    """Which profiles `scored_profiles` lists: stages (casefolded; empty: any) and a closed
    range of the score as of the time read."""

    stages: frozenset[str] = frozenset()
    min_score: float | None = None
    max_score: float | None = None

    def holds(self, view: dict[str, Any]) -> bool:
        if self.stages and str(view["stage"]).casefold() not in self.stages:
            return False
        if self.min_score is not None and view["score"] < self.min_score:
            return False
        return self.max_score is None or view["score"] <= self.max_score


def scored_profiles(
    conn: Conn,
    workspace: str,
    model: str,
    where: ScoreFilter,
    after: str,
    limit: int,
    now: float,
    scan: int = SCAN,
) -> tuple[list[dict[str, Any]], str | None]:
    """The live profiles scored by `model` that pass `where`, in profile id order after
    `after`, with the cursor of the next page (None at the end).

    The score is read as of `now`, so a filter on it cannot be an index lookup (half-life
    decay moves it without a write): each page reads at most `scan` score rows (and one to
    tell whether more follow), so a page can come back short, or empty, with a cursor to go
    on from; only `None` says the end."""
    # A merge deletes the scores of the profiles merged away in its own transaction
    # (`ScoringStage.flush`), so every row here is a live profile's.
    rows = conn.execute(
        "SELECT profile_id, state FROM scores WHERE workspace_id = ? AND model = ? "
        "AND profile_id > ? ORDER BY profile_id LIMIT ?",
        (workspace, model, after, scan + 1),  # one more: is there anything after this page?
    )
    more = len(rows) > scan
    rows = rows[:scan]
    items: list[dict[str, Any]] = []
    nxt = str(rows[-1][0]) if more else None
    for i, (pid, raw) in enumerate(rows):
        view = _score_view(_decoder.decode(raw), now)
        if where.holds(view):
            items.append({"id": str(pid), **view})
            if len(items) == limit:
                nxt = str(pid) if more or i < len(rows) - 1 else None
                break
    if items:
        _add_identities(conn, workspace, items)
    return items, nxt


def _add_identities(conn: Conn, workspace: str, items: list[dict[str, Any]]) -> None:
    by_id: dict[str, list[dict[str, str]]] = {item["id"]: [] for item in items}
    ids = list(by_id)
    kinds = ",".join("?" * len(LISTED_IDENTITIES))
    for i in range(0, len(ids), 500):
        chunk = ids[i : i + 500]
        rows = conn.execute(
            "SELECT profile_id, type, value FROM identities WHERE workspace_id = ? "
            f"AND profile_id IN ({','.join('?' * len(chunk))}) AND type IN ({kinds}) "
            "ORDER BY profile_id, type, value",
            (workspace, *chunk, *LISTED_IDENTITIES),
        )
        for pid, kind, value in rows:
            by_id[str(pid)].append({"type": str(kind), "value": str(value)})
    for item in items:
        item["identities"] = by_id[item["id"]]


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
