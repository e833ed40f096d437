"""Background storage upkeep: WAL checkpoints off the writer's commits (SQLite) and planner
statistics kept fresh for the processor's bulk lookups (PostgreSQL)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from leadloop.storage.analyze import analyze_stale
from leadloop.storage.checkpoint import checkpointer, hand_off_checkpoints
from leadloop.storage.db import DatabaseUrl, PostgresConnection, SqliteConnection, connect
from leadloop.testing import eventually
from tests.conftest import PG_URL, _with_db, drop_postgres_database, new_postgres_database


def test_checkpoints_happen_on_their_own_thread_not_in_the_writers_commits(
    sqlite_url: str,
) -> None:
    path = DatabaseUrl.parse(sqlite_url).path
    assert path is not None
    writer = SqliteConnection(path)
    hand_off_checkpoints(writer)
    writer.execute("CREATE TABLE filler (id INTEGER PRIMARY KEY, body TEXT NOT NULL)")
    with writer.transaction():
        writer.executemany("INSERT INTO filler (body) VALUES (?)", [("x" * 200,)] * 25_000)
    before = os.path.getsize(path)
    # About 6 MB went to the WAL: past SQLite's default automatic checkpoint (1,000 pages), below
    # the writer's backstop, so the commit itself copied nothing into the database file.
    assert Path(path + "-wal").stat().st_size > 5_000_000
    assert before < 100_000

    upkeep = checkpointer(lambda: SqliteConnection(path), interval=0.05)
    upkeep.start()
    try:
        eventually(lambda: os.path.getsize(path) > 5_000_000, timeout=10)
    finally:
        upkeep.stop()
    rows = writer.execute("SELECT COUNT(*) FROM filler")
    assert rows[0][0] == 25_000
    writer.close()


@pytest.fixture
def postgres_url() -> Iterator[str]:
    name = new_postgres_database()
    try:
        yield _with_db(PG_URL, name)
    finally:
        drop_postgres_database(name)


@pytest.mark.postgres
def test_tables_changed_since_their_last_analysis_are_analysed_once(postgres_url: str) -> None:
    conn = connect(DatabaseUrl.parse(postgres_url))
    assert isinstance(conn, PostgresConnection)
    # Where autovacuum runs (not on CI, on most servers), its analyse could get there first
    # and leave nothing stale for the test to see: it is off for this table of this database.
    conn.execute("ALTER TABLE identities SET (autovacuum_enabled = false)")
    conn.executemany(
        "INSERT INTO identities (workspace_id, type, value, profile_id, created_at) "
        "VALUES (?, ?, ?, ?, ?)",
        [("default", "user_id", f"u{i}", f"p{i}", 0.0) for i in range(20_000)],
    )
    # Bulk lookups before: planned for a tiny table, `value` is only a filter.
    marks = ",".join("?" * 50)
    explain = (
        "EXPLAIN SELECT value, profile_id FROM identities WHERE workspace_id = ? AND type = ? "
        f"AND value IN ({marks})"
    )
    params = ("default", "user_id", *[f"u{i}" for i in range(50)])

    def stale() -> list[str]:
        found = analyze_stale(conn)
        return found if "identities" in found else []

    # Cumulative statistics reach pg_stat_user_tables within about a second.
    analysed = eventually(stale, timeout=15)
    assert "identities" in analysed
    plan = "\n".join(str(r[0]) for r in conn.execute(explain, params))
    assert "value = ANY" in plan and "Index Cond" in plan
    index_line = next(line for line in plan.splitlines() if "Index Cond" in line)
    assert "value" in index_line, plan
    # Nothing changed since: nothing to analyse.
    assert "identities" not in analyze_stale(conn)
    conn.close()
