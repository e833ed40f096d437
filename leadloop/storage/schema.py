"""The declared schema: what replaying every migration into an empty database must give.

A migration that changes a table must change this too; the contract suite compares both
(tests/contract/test_migrations.py) on SQLite and PostgreSQL.
"""

from __future__ import annotations

TABLES: dict[str, tuple[str, ...]] = {
    "workspaces": ("id", "created_at"),
    "write_keys": ("key_hash", "workspace_id", "name", "created_at"),
    "admin_tokens": ("token_hash", "workspace_id", "name", "created_at"),
    "events": (
        "seq",
        "workspace_id",
        "message_id",
        "type",
        "event",
        "user_id",
        "anonymous_id",
        "group_id",
        "previous_id",
        "ts",
        "received_at",
        "body",
        "profile_id",
    ),
    "cursors": ("name", "position"),
    "profiles": ("workspace_id", "id", "state", "merged_into", "updated_at"),
    "identities": ("workspace_id", "type", "value", "profile_id", "created_at"),
    "identity_audit": (
        "id",
        "workspace_id",
        "kind",
        "profile_id",
        "other_id",
        "reason",
        "event_seq",
        "at",
    ),
    "accounts": ("workspace_id", "id", "traits", "first_seen", "last_seen"),
    "account_members": ("workspace_id", "account_id", "profile_id"),
    "timers": ("id", "workspace_id", "key", "profile_id", "due_at", "payload"),
    "outbox": (
        "id",
        "workspace_id",
        "kind",
        "destination",
        "idempotency_key",
        "payload",
        "status",
        "attempts",
        "next_attempt_at",
        "last_error",
        "profile_id",
        "created_at",
        "updated_at",
    ),
    "schema_migrations": ("version", "name", "applied_at"),
    "playbooks": ("id", "workspace_id", "digest", "source", "applied_at"),
    "scores": ("workspace_id", "profile_id", "model", "state", "updated_at"),
    "score_ledger": (
        "id",
        "workspace_id",
        "profile_id",
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
    ),
    "conversion_keys": ("workspace_id", "profile_id", "state", "updated_at"),
    "conversion_log": (
        "id",
        "workspace_id",
        "profile_id",
        "destination",
        "event_id",
        "event_name",
        "mapping",
        "status",
        "reason",
        "has_email",
        "has_phone",
        "has_click_id",
        "has_browser_id",
        "event_time",
        "at",
    ),
}
# Columns only one dialect has, and why.
DIALECT_COLUMNS: dict[str, dict[str, tuple[str, ...]]] = {
    # The PostgreSQL log is read in (txid, seq) order: see leadloop/log/store.py.
    "postgres": {"events": ("txid",)},
    "sqlite": {},
}


def declared(dialect: str) -> dict[str, set[str]]:
    out = {t: set(cols) for t, cols in TABLES.items()}
    for table, cols in DIALECT_COLUMNS[dialect].items():
        out[table] |= set(cols)
    return out
