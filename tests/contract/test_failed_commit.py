"""A transaction whose COMMIT fails (on SQLite: a disk full or an I/O error while the WAL is
written; here a deferred constraint, the one way to make COMMIT itself fail on demand).

On SQLite the failed transaction stayed open: every later BEGIN on the writer's connection
failed with "cannot start a transaction within a transaction", so one failed commit refused
every later request and batch until the process was restarted."""

from __future__ import annotations

from typing import Any

import pytest

from leadloop.errors import StorageError
from leadloop.ingest import parse
from leadloop.log.writer import Writer
from leadloop.storage.db import DatabaseUrl, PostgresConnection, SqliteConnection, connect
from leadloop.storage.migrate import migrate

Conn = SqliteConnection | PostgresConnection


def _connect(url: str) -> Conn:
    conn = connect(DatabaseUrl.parse(url))
    if conn.dialect == "sqlite":
        conn.execute("PRAGMA foreign_keys=ON")  # per connection, and never inside a transaction
    return conn


def _prepare(url: str) -> None:
    conn = _connect(url)
    migrate(conn)
    conn.execute("CREATE TABLE probe_parent (id INTEGER PRIMARY KEY)")
    conn.execute(
        "CREATE TABLE probe_child (id INTEGER PRIMARY KEY, parent INTEGER "
        "REFERENCES probe_parent (id) DEFERRABLE INITIALLY DEFERRED)"
    )
    conn.close()


def _orphan(conn: Conn) -> None:
    """Checked only at COMMIT: the statement itself succeeds."""
    conn.execute("INSERT INTO probe_child (id, parent) VALUES (1, 42)")


def test_a_failed_commit_fails_its_caller_alone(backend_url: str) -> None:
    _prepare(backend_url)
    writer = Writer(lambda: _connect(backend_url))
    writer.start()
    try:
        with pytest.raises(StorageError):
            writer.submit(_orphan).result(timeout=30)
        accepted = parse.parse_request(
            {"batch": [{"type": "track", "event": "After", "userId": "u", "messageId": "m1"}]},
            None,
            received_at=1_800_000_000.0,
        )
        assert isinstance(accepted, list), accepted
        writer.append("default", accepted).result(timeout=30)

        def counts(c: Any) -> tuple[int, int]:
            events = c.execute("SELECT COUNT(*) FROM events WHERE message_id = 'm1'")[0][0]
            orphans = c.execute("SELECT COUNT(*) FROM probe_child")[0][0]
            return int(events), int(orphans)

        assert writer.submit(counts).result(timeout=30) == (1, 0)
    finally:
        writer.stop()
    reader = _connect(backend_url)
    try:
        assert reader.execute("SELECT COUNT(*) FROM probe_child")[0][0] == 0
    finally:
        reader.close()
