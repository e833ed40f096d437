"""Numbered, append-only migrations (`NNNN_description.sql`), one folder per dialect."""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources

from leadloop.clock import SystemClock
from leadloop.storage.db import PostgresConnection, SqliteConnection


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str


def list_migrations(dialect: str) -> list[Migration]:
    folder = resources.files("leadloop.storage").joinpath("migrations", dialect)
    found = []
    for entry in folder.iterdir():
        if entry.name.endswith(".sql"):
            number, _, rest = entry.name.partition("_")
            found.append(Migration(int(number), rest.removesuffix(".sql"), entry.read_text()))
    found.sort(key=lambda m: m.version)
    versions = [m.version for m in found]
    if versions != list(range(1, len(found) + 1)):
        raise RuntimeError(f"migrations must be numbered 1..n without gaps, got {versions}")
    return found


def applied_versions(conn: SqliteConnection | PostgresConnection) -> set[int]:
    conn.execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations "
        "(version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at DOUBLE PRECISION NOT NULL)"
    )
    return {int(r[0]) for r in conn.execute("SELECT version FROM schema_migrations")}


def _has_migrations_table(conn: SqliteConnection | PostgresConnection) -> bool:
    if conn.dialect == "postgres":
        rows = conn.execute("SELECT to_regclass('schema_migrations') IS NOT NULL")
    else:
        rows = conn.execute(
            "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'schema_migrations'"
        )
    return bool(rows[0][0])


def pending(conn: SqliteConnection | PostgresConnection) -> list[Migration] | None:
    """The migrations this version would apply, read without writing anything; None when the
    database holds no leadloop schema at all."""
    if not _has_migrations_table(conn):
        return None
    done = {int(r[0]) for r in conn.execute("SELECT version FROM schema_migrations")}
    return [m for m in list_migrations(conn.dialect) if m.version not in done]


def migrate(conn: SqliteConnection | PostgresConnection) -> list[Migration]:
    """Apply every pending migration, each in its own transaction; return those applied.
    Processes migrating at once apply each migration once: serialised by an advisory lock on
    PostgreSQL, by each migration's write transaction on SQLite."""
    if conn.dialect == "postgres":
        # Several processes may start at once: serialise them on an advisory lock.
        conn.execute("SELECT pg_advisory_lock(724137)")
    try:
        done = applied_versions(conn)
        applied = []
        for migration in list_migrations(conn.dialect):
            if migration.version in done:
                continue
            with conn.transaction():
                # Asked again under the write lock (BEGIN IMMEDIATE on SQLite): another process
                # may have applied it since `done` was read, and its tables exist now.
                if migration.version in applied_versions(conn):
                    continue
                conn.executescript(migration.sql)
                conn.execute(
                    "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)",
                    (migration.version, migration.name, SystemClock().now()),
                )
            applied.append(migration)
        return applied
    finally:
        if conn.dialect == "postgres":
            conn.execute("SELECT pg_advisory_unlock(724137)")
