"""Migrations replayed into an empty database give exactly the declared schema, and carry a
database's rows along."""

import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from leadloop.outbox.service import claim_due
from leadloop.storage import schema
from leadloop.storage.db import DatabaseUrl, PostgresConnection, SqliteConnection, connect
from leadloop.storage.migrate import applied_versions, list_migrations, migrate
from tests.conftest import PG_URL, _with_db, drop_postgres_database


def actual_schema(conn: SqliteConnection | PostgresConnection) -> dict[str, set[str]]:
    if conn.dialect == "sqlite":
        tables = [
            r[0]
            for r in conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
            )
        ]
        return {t: {r[1] for r in conn.execute(f"PRAGMA table_info({t})")} for t in tables}
    rows = conn.execute(
        "SELECT table_name, column_name FROM information_schema.columns WHERE table_schema = 'public'"
    )
    out: dict[str, set[str]] = {}
    for table, column in rows:
        out.setdefault(table, set()).add(column)
    return out


def test_replayed_migrations_match_the_declared_schema(
    conn: SqliteConnection | PostgresConnection,
) -> None:
    assert actual_schema(conn) == schema.declared(conn.dialect)


def test_migrating_twice_changes_nothing(conn: SqliteConnection | PostgresConnection) -> None:
    before = actual_schema(conn)
    assert migrate(conn) == []
    assert actual_schema(conn) == before
    versions = [
        r[0] for r in conn.execute("SELECT version FROM schema_migrations ORDER BY version")
    ]
    assert versions == [m.version for m in list_migrations(conn.dialect)]


def test_both_dialects_have_the_same_migrations() -> None:
    assert [m.name for m in list_migrations("sqlite")] == [
        m.name for m in list_migrations("postgres")
    ]


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def empty(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[SqliteConnection | PostgresConnection]:
    """A connection to a database no migration has touched."""
    if request.param == "sqlite":
        c = connect(DatabaseUrl.parse(f"sqlite:///{tmp_path}/empty.db"))
        yield c
        c.close()
        return
    name = f"leadloop_t_{uuid.uuid4().hex[:12]}"
    admin = PostgresConnection(PG_URL)
    try:
        admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        admin.close()
    c = connect(DatabaseUrl.parse(_with_db(PG_URL, name)))
    try:
        yield c
    finally:
        c.close()
        drop_postgres_database(name)


def migrate_up_to(conn: SqliteConnection | PostgresConnection, count: int) -> None:
    """Apply the first `count` migrations only, as a database made before the next one was."""
    applied_versions(conn)
    for migration in list_migrations(conn.dialect)[:count]:
        with conn.transaction():
            conn.executescript(migration.sql)
            conn.execute(
                "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, 0)",
                (migration.version, migration.name),
            )


def test_outbox_payloads_move_out_of_their_rows(
    empty: SqliteConnection | PostgresConnection,
) -> None:
    """Migration 0009 on a database holding an undelivered row: its payload moves to
    `outbox_payloads` and the row is claimed with it, as it was before."""
    conn = empty
    migrate_up_to(conn, 8)
    with conn.transaction():
        conn.execute(
            "INSERT INTO outbox (workspace_id, kind, destination, idempotency_key, payload, "
            "status, attempts, next_attempt_at, profile_id, created_at, updated_at) VALUES "
            "('default', 'webhook', 'sales', 'msg_1', '{\"a\": 1}', 'pending', 0, 5, 'p1', 5, 5)"
        )
    assert [m.version for m in migrate(conn)] == [
        m.version for m in list_migrations(conn.dialect)[8:]
    ]
    with conn.transaction():
        claimed = claim_due(conn, now=10.0)
    assert [(c.idempotency_key, c.payload) for c in claimed] == [("msg_1", {"a": 1})]


def test_counted_variant_sends_are_marked_as_such(
    empty: SqliteConnection | PostgresConnection,
) -> None:
    """Migration 0014 on a database with variant counts: the queued sends of a template counted
    for its step are marked, a deferral of it and a send of another step are not."""
    conn = empty
    migrate_up_to(conn, 12)
    with conn.transaction():
        conn.execute(
            "INSERT INTO variant_stats (workspace_id, journey_id, step_id, template, sends, "
            "clicks) VALUES ('default', 'promo', 'offer', 'bold', 1, 0)"
        )
        rows = [("m1", "offer", "queued"), ("m2", "offer", "deferred"), ("m3", "other", "queued")]
        for mid, step, outcome in rows:
            conn.execute(
                "INSERT INTO sends (workspace_id, message_id, profile_id, instance_id, "
                "journey_id, step, requested_channel, channel, template, transactional, at, "
                "outcome, reason) VALUES ('default', ?, 'p1', 'i1', 'promo', ?, 'email', "
                "'email', 'bold', 0, 5, ?, '')",
                (mid, step, outcome),
            )
    migrate(conn)
    rows = conn.execute("SELECT message_id, variant FROM sends ORDER BY message_id")
    assert [(str(m), int(v)) for m, v in rows] == [("m1", 1), ("m2", 0), ("m3", 0)]


def test_two_processes_migrating_at_once_apply_each_migration_once(tmp_path: Path) -> None:
    """SQLite: the second connection read what was applied, then the first migrated and
    committed before the second took the write lock. The second applied the same migrations
    again from what it had read: "table exists"."""
    url = DatabaseUrl.parse(f"sqlite:///{tmp_path}/shared.db")
    first, second = connect(url), connect(url)
    assert isinstance(second, SqliteConnection)
    applied_versions(first)  # both processes find the bookkeeping table
    asked, go = threading.Event(), threading.Event()

    def trace(sql: str) -> None:
        if sql == "BEGIN IMMEDIATE":  # before it takes the lock
            asked.set()
            go.wait(20)

    second._conn.set_trace_callback(trace)
    outcome: list[object] = []

    def migrate_second() -> None:
        try:
            outcome.append(migrate(second))
        except Exception as exc:
            outcome.append(exc)

    other = threading.Thread(target=migrate_second)
    other.start()
    try:
        assert asked.wait(20)
        assert len(migrate(first)) == len(list_migrations("sqlite"))
    finally:
        go.set()
        other.join(20)
    assert outcome == [[]]
    assert actual_schema(second) == schema.declared("sqlite")
    first.close()
    second.close()
