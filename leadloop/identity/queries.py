"""Read side of the CDP for the admin API: profiles, their identities, events, accounts."""

from __future__ import annotations

from typing import Any

import msgspec

from leadloop.identity.model import Profile
from leadloop.log.store import event_from_row
from leadloop.storage.db import PostgresConnection, SqliteConnection

Conn = SqliteConnection | PostgresConnection
_profile_decoder = msgspec.json.Decoder(Profile)
_dict_decoder = msgspec.json.Decoder(dict[str, Any])


def canonical_id(conn: Conn, workspace: str, profile_id: str) -> str | None:
    """Follow merges: an id that was merged away still finds the surviving profile."""
    for _ in range(50):
        rows = conn.execute(
            "SELECT merged_into FROM profiles WHERE workspace_id = ? AND id = ?",
            (workspace, profile_id),
        )
        if not rows:
            return None
        if rows[0][0] is None:
            return profile_id
        profile_id = str(rows[0][0])
    return None


def lookup(conn: Conn, workspace: str, kind: str, value: str) -> str | None:
    rows = conn.execute(
        "SELECT profile_id FROM identities WHERE workspace_id = ? AND type = ? AND value = ?",
        (workspace, kind, value),
    )
    return canonical_id(conn, workspace, str(rows[0][0])) if rows else None


def load_profile(conn: Conn, workspace: str, profile_id: str) -> Profile | None:
    rows = conn.execute(
        "SELECT state FROM profiles WHERE workspace_id = ? AND id = ?", (workspace, profile_id)
    )
    return _profile_decoder.decode(rows[0][0]) if rows else None


def profile_view(conn: Conn, workspace: str, profile_id: str) -> dict[str, Any] | None:
    pid = canonical_id(conn, workspace, profile_id)
    if pid is None:
        return None
    profile = load_profile(conn, workspace, pid)
    if profile is None:
        return None
    identities = conn.execute(
        "SELECT type, value FROM identities WHERE workspace_id = ? AND profile_id = ? "
        "ORDER BY type, value",
        (workspace, pid),
    )
    merged = conn.execute(
        "SELECT id FROM profiles WHERE workspace_id = ? AND merged_into = ? ORDER BY id",
        (workspace, pid),
    )
    audit = conn.execute(
        "SELECT kind, other_id, reason, event_seq, at FROM identity_audit "
        "WHERE workspace_id = ? AND (profile_id = ? OR other_id = ?) ORDER BY id",
        (workspace, pid, pid),
    )
    return {
        "id": pid,
        "workspace": workspace,
        "identities": [{"type": t, "value": v} for t, v in identities],
        "traits": profile.traits,
        "accounts": list(profile.account_ids),
        "first_seen": profile.first_seen,
        "last_seen": profile.last_seen,
        "last_activity": profile.last_activity,
        "event_counts": profile.event_counts,
        "merged_ids": [r[0] for r in merged],
        "identity_audit": [
            {"kind": k, "other": o, "reason": r, "event_seq": s, "at": a} for k, o, r, s, a in audit
        ],
        "scores": {},
    }


def profile_events(
    conn: Conn, workspace: str, profile_id: str, after: int, limit: int
) -> list[dict[str, Any]]:
    rows = conn.execute(
        "SELECT seq, workspace_id, message_id, type, event, user_id, anonymous_id, group_id, "
        "previous_id, ts, received_at, body FROM events "
        "WHERE workspace_id = ? AND profile_id = ? AND seq > ? ORDER BY seq LIMIT ?",
        (workspace, profile_id, after, limit),
    )
    out = []
    for row in rows:
        e = event_from_row(row)
        out.append(
            {
                "seq": e.seq,
                "messageId": e.message_id,
                "type": e.type,
                "event": e.event,
                "userId": e.user_id,
                "anonymousId": e.anonymous_id,
                "groupId": e.group_id,
                "previousId": e.previous_id,
                "timestamp": e.timestamp,
                "receivedAt": e.received_at,
                "properties": e.properties,
                "traits": e.traits,
                "context": e.context,
            }
        )
    return out


def account_view(conn: Conn, workspace: str, account_id: str) -> dict[str, Any] | None:
    rows = conn.execute(
        "SELECT traits, first_seen, last_seen FROM accounts WHERE workspace_id = ? AND id = ?",
        (workspace, account_id),
    )
    if not rows:
        return None
    members = conn.execute(
        "SELECT profile_id FROM account_members WHERE workspace_id = ? AND account_id = ? "
        "ORDER BY profile_id",
        (workspace, account_id),
    )
    return {
        "id": account_id,
        "traits": _dict_decoder.decode(rows[0][0]),
        "first_seen": rows[0][1],
        "last_seen": rows[0][2],
        "profiles": [r[0] for r in members],
    }
