"""Workspaces, write keys and admin tokens. Keys and tokens are stored as SHA-256 hashes:
they are 32 random bytes, so a fast hash is enough and lookups stay one index probe."""

from __future__ import annotations

import hashlib
import secrets

from leadloop.storage.db import PostgresConnection, SqliteConnection

Conn = SqliteConnection | PostgresConnection
DEFAULT_WORKSPACE = "default"


def hash_secret(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def ensure_workspace(conn: Conn, workspace_id: str, now: float) -> None:
    conn.execute(
        "INSERT INTO workspaces (id, created_at) VALUES (?, ?) ON CONFLICT (id) DO NOTHING",
        (workspace_id, now),
    )


def workspace_exists(conn: Conn, workspace_id: str) -> bool:
    return bool(conn.execute("SELECT 1 FROM workspaces WHERE id = ?", (workspace_id,)))


def create_write_key(conn: Conn, workspace_id: str, name: str, now: float) -> str:
    key = "wk_" + secrets.token_urlsafe(24)
    conn.execute(
        "INSERT INTO write_keys (key_hash, workspace_id, name, created_at) VALUES (?, ?, ?, ?)",
        (hash_secret(key), workspace_id, name, now),
    )
    return key


def create_admin_token(conn: Conn, workspace_id: str, name: str, now: float) -> str:
    token = "lla_" + secrets.token_urlsafe(32)
    conn.execute(
        "INSERT INTO admin_tokens (token_hash, workspace_id, name, created_at) VALUES (?, ?, ?, ?)",
        (hash_secret(token), workspace_id, name, now),
    )
    return token


def workspace_for_write_key(conn: Conn, key: str) -> str | None:
    rows = conn.execute(
        "SELECT workspace_id FROM write_keys WHERE key_hash = ?", (hash_secret(key),)
    )
    return str(rows[0][0]) if rows else None


def workspace_for_token(conn: Conn, token: str) -> str | None:
    rows = conn.execute(
        "SELECT workspace_id FROM admin_tokens WHERE token_hash = ?", (hash_secret(token),)
    )
    return str(rows[0][0]) if rows else None
