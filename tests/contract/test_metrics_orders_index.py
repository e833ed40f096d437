"""Metrics read a window's orders through the partial index that holds only orders, on both
backends: without it, revenue and first orders read the whole log on every request."""

from __future__ import annotations

from leadloop.analytics import queries
from leadloop.storage.db import PostgresConnection, SqliteConnection


def _plan(conn: SqliteConnection | PostgresConnection, sql: str, *params: object) -> str:
    if conn.dialect == "postgres":
        # A small table is cheaper to scan whole: ask whether the index can be used at all.
        conn.execute("SET enable_seqscan = off")
        return "\n".join(str(row[0]) for row in conn.execute(f"EXPLAIN {sql}", params))
    return "\n".join(str(row[-1]) for row in conn.execute(f"EXPLAIN QUERY PLAN {sql}", params))


def test_revenue_and_first_orders_read_the_orders_index(
    conn: SqliteConnection | PostgresConnection,
) -> None:
    assert queries.ORDER_EVENT in queries.REVENUE_SQL  # the index's predicate, spelled alike
    revenue = _plan(conn, queries.REVENUE_SQL, "default", 0.0, 1.0)
    firsts = _plan(conn, queries.NEW_CUSTOMERS_SQL, "default", 0.0, 1.0)
    assert "events_orders" in revenue, revenue
    assert "events_orders" in firsts, firsts
