"""Message records, the suppression list, service windows and engine events, in SQL.

Every send has one `message_records` row holding its current state and one
`message_transitions` row per change, each with its reason:

    queued ─► sent ─► delivered ─► opened ─► clicked
      │        │          │
      │        └──────────┴─► bounced | complained | failed   (a late failure still lands)
      ├─► deferred (by the policy) ─► queued …
      └─► suppressed | failed | skipped            (never sent)

`advances` is the pure rule: a state never moves back (a late `delivered` after `opened` is
kept in the history but does not lower the current state).

Functions take a connection and run inside the caller's transaction (the writer's job).

Sends the journeys' policy deferred or suppressed never reach the sender: the journeys stage
writes them to its `sends` table, and `messages_page` merges them into the list on read.
"""

from __future__ import annotations

import secrets as _random
from dataclasses import dataclass
from typing import Any

import msgspec

from leadloop.storage.db import PostgresConnection, SqliteConnection

Conn = SqliteConnection | PostgresConnection
_encoder = msgspec.json.Encoder()

STATUSES = (
    "queued",
    "deferred",
    "sent",
    "delivered",
    "opened",
    "clicked",
    "bounced",
    "complained",
    "failed",
    "suppressed",
    "skipped",
)
_RANK = {
    "queued": 0,
    "deferred": 0,
    "sent": 1,
    "delivered": 2,
    "opened": 3,
    "clicked": 4,
    "bounced": 5,
    "complained": 5,
    "failed": 5,
    "suppressed": 5,
    "skipped": 5,
}
FINAL = frozenset({"bounced", "complained", "failed", "suppressed", "skipped"})
RESENDABLE = frozenset({"queued", "deferred", "failed", "suppressed", "skipped"})
"""States from which a (re-driven) outbox row sends again; `sent` and later never re-send."""


def advances(current: str | None, new: str) -> bool:
    """Whether `new` replaces `current` as the record's state."""
    if current is None:
        return True
    if new == "queued" and current in RESENDABLE:
        return current != "queued"
    if current in FINAL:
        return False
    return _RANK[new] > _RANK[current]


@dataclass(frozen=True)
class MessageRecord:
    workspace_id: str
    message_id: str
    profile_id: str | None
    channel: str
    template: str | None
    journey: str | None
    step: str | None
    address: str | None
    provider_id: str | None
    status: str
    reason: str
    sent_at: float | None
    created_at: float
    updated_at: float

    def properties(self) -> dict[str, Any]:
        """What every event about this message carries."""
        return {
            "message_id": self.message_id,
            "journey": self.journey,
            "step": self.step,
            "channel": self.channel,
            "template": self.template,
        }


_COLUMNS = (
    "workspace_id, message_id, profile_id, channel, template, journey, step, address, "
    "provider_id, status, reason, sent_at, created_at, updated_at"
)


def _record(row: Any) -> MessageRecord:
    return MessageRecord(
        str(row[0]),
        str(row[1]),
        row[2],
        str(row[3]),
        row[4],
        row[5],
        row[6],
        row[7],
        row[8],
        str(row[9]),
        str(row[10]),
        None if row[11] is None else float(row[11]),
        float(row[12]),
        float(row[13]),
    )


def create(conn: Conn, record: MessageRecord, at: float) -> MessageRecord:
    """Insert the record (first attempt) or return the existing one (a retry or a replay)."""
    inserted = conn.execute(
        f"INSERT INTO message_records ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
        "ON CONFLICT (workspace_id, message_id) DO NOTHING RETURNING message_id",
        (
            record.workspace_id,
            record.message_id,
            record.profile_id,
            record.channel,
            record.template,
            record.journey,
            record.step,
            record.address,
            record.provider_id,
            record.status,
            record.reason,
            record.sent_at,
            record.created_at,
            record.updated_at,
        ),
    )
    if inserted:
        _history(conn, record.workspace_id, record.message_id, record.status, record.reason, at)
        return record
    found = get(conn, record.workspace_id, record.message_id)
    assert found is not None
    return found


def get(conn: Conn, workspace: str, message_id: str) -> MessageRecord | None:
    rows = conn.execute(
        f"SELECT {_COLUMNS} FROM message_records WHERE workspace_id = ? AND message_id = ?",
        (workspace, message_id),
    )
    return _record(rows[0]) if rows else None


def by_provider_id(
    conn: Conn, provider_id: str, channel: str | None = None
) -> MessageRecord | None:
    """A message by the provider's id for it (receipts do not say which workspace)."""
    rows = conn.execute(
        f"SELECT {_COLUMNS} FROM message_records WHERE provider_id = ? ORDER BY created_at DESC",
        (provider_id,),
    )
    for row in rows:
        record = _record(row)
        if channel is None or record.channel == channel:
            return record
    return None


# A record with no transition (none should be) sorts the same on both backends: PostgreSQL
# puts NULL first in a DESC order, SQLite last.
_NEWEST = (
    "created_at DESC, COALESCE((SELECT MIN(t.id) FROM message_transitions t "
    "WHERE t.workspace_id = r.workspace_id AND t.message_id = r.message_id), 0) DESC, "
    "message_id DESC"
)


def latest_to(
    conn: Conn, workspace: str | None, channel: str, address: str
) -> MessageRecord | None:
    """The newest message sent to an address (a bounce that does not name its message).

    Messages created at the same instant are told apart by the order they were stored in:
    records have no sequence of their own, but each one's first transition is written with
    it (`create`) and numbered. Without that, which of them a bounce lands on was up to the
    backend's plan."""
    if workspace is None:
        rows = conn.execute(
            f"SELECT {_COLUMNS} FROM message_records r WHERE channel = ? AND address = ? "
            f"ORDER BY {_NEWEST} LIMIT 1",
            (channel, address),
        )
    else:
        rows = conn.execute(
            f"SELECT {_COLUMNS} FROM message_records r WHERE workspace_id = ? AND channel = ? "
            f"AND address = ? ORDER BY {_NEWEST} LIMIT 1",
            (workspace, channel, address),
        )
    return _record(rows[0]) if rows else None


def _history(
    conn: Conn, workspace: str, message_id: str, status: str, reason: str, at: float
) -> None:
    conn.execute(
        "INSERT INTO message_transitions (workspace_id, message_id, status, reason, at) "
        "VALUES (?, ?, ?, ?, ?)",
        (workspace, message_id, status, reason, at),
    )


def in_history(conn: Conn, record: MessageRecord, status: str, reason: str) -> bool:
    """Whether the message's history has a line with this status and reason."""
    rows = conn.execute(
        "SELECT 1 FROM message_transitions WHERE workspace_id = ? AND message_id = ? "
        "AND status = ? AND reason = ? LIMIT 1",
        (record.workspace_id, record.message_id, status, reason),
    )
    return bool(rows)


def transition(
    conn: Conn,
    record: MessageRecord,
    status: str,
    reason: str,
    at: float,
    *,
    provider_id: str | None = None,
) -> MessageRecord:
    """Record a change; the history always gets it, the current state only if it advances."""
    _history(conn, record.workspace_id, record.message_id, status, reason, at)
    sent_at = at if status == "sent" and record.sent_at is None else record.sent_at
    if not advances(record.status, status):
        if provider_id is None or record.provider_id is not None:
            return record
        # Sent, though a receipt that overtook the provider's answer moved the state on: the
        # provider's id is still what later receipts find the message by.
        conn.execute(
            "UPDATE message_records SET provider_id = ?, sent_at = ? "
            "WHERE workspace_id = ? AND message_id = ?",
            (provider_id, sent_at, record.workspace_id, record.message_id),
        )
        return MessageRecord(**{**record.__dict__, "provider_id": provider_id, "sent_at": sent_at})
    conn.execute(
        "UPDATE message_records SET status = ?, reason = ?, provider_id = COALESCE(?, provider_id), "
        "sent_at = ?, updated_at = ? WHERE workspace_id = ? AND message_id = ?",
        (status, reason, provider_id, sent_at, at, record.workspace_id, record.message_id),
    )
    return MessageRecord(
        **{
            **record.__dict__,
            "status": status,
            "reason": reason,
            "provider_id": provider_id or record.provider_id,
            "sent_at": sent_at,
            "updated_at": at,
        }
    )


def for_profile(
    conn: Conn, workspace: str, profile_id: str, after: float, limit: int
) -> list[dict[str, Any]]:
    rows = conn.execute(
        f"SELECT {_COLUMNS} FROM message_records WHERE workspace_id = ? AND profile_id = ? "
        "AND created_at > ? ORDER BY created_at, message_id LIMIT ?",
        (workspace, profile_id, after, limit),
    )
    records = [_record(r) for r in rows]
    out: list[dict[str, Any]] = []
    for record in records:
        history = conn.execute(
            "SELECT status, reason, at FROM message_transitions WHERE workspace_id = ? "
            "AND message_id = ? ORDER BY id",
            (workspace, record.message_id),
        )
        out.append(
            {
                "message_id": record.message_id,
                "channel": record.channel,
                "template": record.template,
                "journey": record.journey,
                "step": record.step,
                "status": record.status,
                "reason": record.reason,
                "provider_id": record.provider_id,
                "sent_at": record.sent_at,
                "created_at": record.created_at,
                "updated_at": record.updated_at,
                "history": [{"status": s, "reason": r, "at": float(a)} for s, r, a in history],
            }
        )
    return out


# --- the journeys' policy decisions, merged on read --------------------------------------------

POLICY_OUTCOMES = frozenset({"deferred", "suppressed"})
"""`sends.outcome` values written by the journeys stage when the policy held a send back."""
_SENDS_COLUMNS = (
    "message_id, journey_id, step, requested_channel, channel, template, at, outcome, reason, until"
)


def policy_rows(
    conn: Conn, workspace: str, profile_id: str, record_ids: list[str], after: float, limit: int
) -> list[tuple[Any, ...]]:
    """The journeys' `sends` rows to show: those of the records on the page (their deferrals
    before they were queued), and those of the first `limit` messages that have no record (the
    policy deferred or suppressed them, or the sender has not run yet), by first decision."""
    orphans = conn.execute(
        "SELECT message_id, MIN(at) FROM sends WHERE workspace_id = ? AND profile_id = ? "
        "AND NOT EXISTS (SELECT 1 FROM message_records m WHERE m.workspace_id = sends.workspace_id "
        "AND m.message_id = sends.message_id) GROUP BY message_id HAVING MIN(at) > ? "
        "ORDER BY MIN(at), message_id LIMIT ?",
        (workspace, profile_id, after, limit),
    )
    ids = [*record_ids, *(str(r[0]) for r in orphans)]
    rows: list[tuple[Any, ...]] = []
    for start in range(0, len(ids), 500):
        chunk = ids[start : start + 500]
        rows.extend(
            tuple(r)
            for r in conn.execute(
                f"SELECT {_SENDS_COLUMNS} FROM sends WHERE workspace_id = ? AND message_id IN "
                f"({', '.join('?' * len(chunk))}) ORDER BY at, id",
                (workspace, *chunk),
            )
        )
    return rows


def merge_policy(
    items: list[dict[str, Any]], sends: list[tuple[Any, ...]], limit: int
) -> list[dict[str, Any]]:
    """Pure: the channel records with the journeys' policy decisions folded in.

    A record gets its `deferred`/`suppressed` decisions in its history (in time order); a send
    with no record becomes an item of its own, whose status is the last decision (`deferred`,
    with `until`; `suppressed`; or `queued` when the sender has not picked it up yet) and whose
    reason is that decision's. Sorted by `created_at` (a send without a record: its first
    decision), then message id; the first `limit`."""
    by_id: dict[str, list[tuple[Any, ...]]] = {}
    for row in sends:
        by_id.setdefault(str(row[0]), []).append(row)
    out: list[dict[str, Any]] = []
    for item in items:
        decisions = [r for r in by_id.pop(item["message_id"], []) if r[7] in POLICY_OUTCOMES]
        extra = [{"status": r[7], "reason": str(r[8]), "at": float(r[6])} for r in decisions]
        history = sorted([*extra, *item["history"]], key=lambda h: float(h["at"]))
        out.append({**item, "until": None, "history": history})
    for message_id, rows in by_id.items():
        last = rows[-1]
        status = str(last[7]) if last[7] in POLICY_OUTCOMES else "queued"
        out.append(
            {
                "message_id": message_id,
                "channel": last[4] or last[3],
                "template": last[5],
                "journey": last[1],
                "step": last[2],
                "status": status,
                "reason": str(last[8]) or "queued for sending",
                "provider_id": None,
                "sent_at": None,
                "created_at": float(rows[0][6]),
                "updated_at": float(last[6]),
                "until": None if last[9] is None or status != "deferred" else float(last[9]),
                "history": [
                    {
                        "status": str(r[7]) if r[7] in POLICY_OUTCOMES else "queued",
                        "reason": str(r[8]) or "queued for sending",
                        "at": float(r[6]),
                    }
                    for r in rows
                ],
            }
        )
    out.sort(key=lambda m: (m["created_at"], m["message_id"]))
    return out[:limit]


def messages_page(
    conn: Conn, workspace: str, profile_id: str, after: float, limit: int
) -> list[dict[str, Any]]:
    """`GET /api/v1/profiles/{id}/messages`: the channel records and the policy's decisions."""
    items = for_profile(conn, workspace, profile_id, after, limit)
    sends = policy_rows(conn, workspace, profile_id, [m["message_id"] for m in items], after, limit)
    return merge_policy(items, sends, limit)


# --- suppression list ---------------------------------------------------------------------------


def suppress(
    conn: Conn, workspace: str, channel: str, address: str, reason: str, source: str, at: float
) -> bool:
    """Add an address; True when it was not suppressed before (the first reason is kept)."""
    rows = conn.execute(
        "INSERT INTO channel_suppressions (workspace_id, channel, address, reason, source, "
        "created_at) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (workspace_id, channel, address) "
        "DO NOTHING RETURNING address",
        (workspace, channel, address, reason, source, at),
    )
    return bool(rows)


def suppression(conn: Conn, workspace: str, channel: str, *addresses: str) -> str | None:
    """The reason the first of `addresses` (one address's keys, the current one first) is
    suppressed, or None."""
    for address in dict.fromkeys(addresses):
        rows = conn.execute(
            "SELECT reason, source FROM channel_suppressions WHERE workspace_id = ? "
            "AND channel = ? AND address = ?",
            (workspace, channel, address),
        )
        if rows:
            return f"{rows[0][0]} ({rows[0][1]})"
    return None


# --- service windows ------------------------------------------------------------------------------


def touch_window(conn: Conn, workspace: str, channel: str, address: str, at: float) -> None:
    conn.execute(
        "INSERT INTO channel_windows (workspace_id, channel, address, last_inbound_at) "
        "VALUES (?, ?, ?, ?) ON CONFLICT (workspace_id, channel, address) DO UPDATE SET "
        "last_inbound_at = excluded.last_inbound_at "
        "WHERE excluded.last_inbound_at > channel_windows.last_inbound_at",
        (workspace, channel, address, at),
    )


def last_inbound(conn: Conn, workspace: str, channel: str, address: str) -> float | None:
    rows = conn.execute(
        "SELECT last_inbound_at FROM channel_windows WHERE workspace_id = ? AND channel = ? "
        "AND address = ?",
        (workspace, channel, address),
    )
    return float(rows[0][0]) if rows else None


# --- engine events ------------------------------------------------------------------------------


def emit(
    conn: Conn,
    workspace: str,
    message_id: str,
    name: str,
    profile_id: str | None,
    properties: dict[str, Any],
    at: float,
    received_at: float,
) -> bool:
    """Append an internal event to the log (same shape as `log.batch.Batch.flush`); a repeat
    with the same `message_id` is dropped by the log's unique key. False for such a repeat."""
    body = {"type": "internal", "event": name, "profileId": profile_id, "properties": properties}
    inserted = conn.execute(
        "INSERT INTO events (workspace_id, message_id, type, event, ts, received_at, body) "
        "VALUES (?, ?, 'internal', ?, ?, ?, ?) ON CONFLICT (workspace_id, message_id) DO NOTHING "
        "RETURNING message_id",
        (workspace, message_id, name, at, received_at, _encoder.encode(body).decode()),
    )
    return bool(inserted)


# --- the tracking key ---------------------------------------------------------------------------


def secret(conn: Conn, name: str, at: float) -> str:
    """A random secret generated once per database and kept (the tracking-link key when
    `LEADLOOP_SECRET_KEY` is not set)."""
    conn.execute(
        "INSERT INTO channel_secrets (name, value, created_at) VALUES (?, ?, ?) "
        "ON CONFLICT (name) DO NOTHING",
        (name, _random.token_urlsafe(32), at),
    )
    return str(conn.execute("SELECT value FROM channel_secrets WHERE name = ?", (name,))[0][0])
