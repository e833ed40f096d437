"""Migrations replayed into an empty database give exactly the declared schema."""

from leadloop.storage import schema
from leadloop.storage.db import PostgresConnection, SqliteConnection
from leadloop.storage.migrate import list_migrations, migrate


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
