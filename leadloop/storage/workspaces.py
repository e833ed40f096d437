"""Workspaces, write keys and admin tokens. Keys and tokens are stored as SHA-256 hashes:
they are 32 random bytes, so a fast hash is enough and lookups stay one index probe."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from typing import Any

from leadloop.errors import LeadloopError
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


# Credentials are listed and revoked by a fingerprint: the first characters of the stored
# hash. It names a key without revealing it (the hash of 32 random bytes gives nothing back),
# so it can go in a ticket or a chat when a key leaks.
FINGERPRINT = 12
_MIN_PREFIX = 8
_TABLES = {"write_key": ("write_keys", "key_hash"), "admin_token": ("admin_tokens", "token_hash")}
_HEX = frozenset("0123456789abcdef")


@dataclass(frozen=True)
class Credential:
    fingerprint: str
    workspace_id: str
    name: str
    created_at: float


def list_credentials(conn: Conn, kind: str, workspace_id: str | None = None) -> list[Credential]:
    """The write keys (`kind="write_key"`) or admin tokens (`"admin_token"`), oldest first."""
    table, column = _TABLES[kind]
    where, params = ("WHERE workspace_id = ? ", (workspace_id,)) if workspace_id else ("", ())
    rows = conn.execute(
        f"SELECT {column}, workspace_id, name, created_at FROM {table} {where}"
        f"ORDER BY created_at, {column}",
        params,
    )
    return [_credential(row) for row in rows]


def revoke_credential(conn: Conn, kind: str, ref: str) -> Credential:
    """Delete the one credential `ref` names: the secret itself, or a fingerprint (at least
    8 of its characters). Anything else, or a fingerprint that several share, is an error
    and deletes nothing."""
    table, column = _TABLES[kind]
    what = kind.replace("_", " ")
    ref = ref.strip()
    prefix = ref.lower()
    if len(prefix) >= _MIN_PREFIX and set(prefix) <= _HEX and len(prefix) <= 64:
        clause, params = f"substr({column}, 1, {len(prefix)}) = ?", (prefix,)
    elif ref.startswith(("wk_", "lla_")):
        clause, params = f"{column} = ?", (hash_secret(ref),)
    else:
        raise LeadloopError(
            f"name the {what} by its id (at least {_MIN_PREFIX} characters of what "
            f"`leadloop {_NOUN[kind]} list` shows) or by the {what} itself"
        )
    rows = conn.execute(
        f"SELECT {column}, workspace_id, name, created_at FROM {table} WHERE {clause} LIMIT 2",
        params,
    )
    if not rows:
        raise LeadloopError(f"no {what} matches {_shown(ref)}")
    if len(rows) > 1:
        raise LeadloopError(f"several {what}s match {_shown(ref)}: give more characters of its id")
    conn.execute(f"DELETE FROM {table} WHERE {column} = ?", (rows[0][0],))
    return _credential(rows[0])


_NOUN = {"write_key": "keys", "admin_token": "tokens"}


def _credential(row: Any) -> Credential:
    return Credential(str(row[0])[:FINGERPRINT], str(row[1]), str(row[2]), float(row[3]))


def _shown(ref: str) -> str:
    """A secret given by mistake is not echoed back whole into logs and terminals."""
    return repr(ref) if not ref.startswith(("wk_", "lla_")) else f"'{ref[:6]}…'"
