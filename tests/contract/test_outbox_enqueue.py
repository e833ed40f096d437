"""`outbox.service.enqueue` on both backends: one row and one payload per key, the first."""

from __future__ import annotations

from leadloop.log.batch import OutboxRow
from leadloop.outbox.service import claim_due, enqueue
from leadloop.storage.db import PostgresConnection, SqliteConnection


def row(key: str, payload: dict[str, int]) -> OutboxRow:
    return OutboxRow("default", "webhook", "sales", key, payload, "p1", 5.0)


def test_a_key_enqueued_again_keeps_its_first_row_and_payload(
    conn: SqliteConnection | PostgresConnection,
) -> None:
    with conn.transaction():
        enqueue(conn, [row("a", {"n": 1}), row("b", {"n": 2}), row("a", {"n": 3})], 5.0)
    with conn.transaction():  # a replayed batch
        enqueue(conn, [row("a", {"n": 4}), row("c", {"n": 5})], 6.0)
    with conn.transaction():
        claimed = claim_due(conn, now=10.0)
    assert [(c.idempotency_key, c.payload) for c in claimed] == [
        ("a", {"n": 1}),
        ("b", {"n": 2}),
        ("c", {"n": 5}),
    ]
    # Every payload belongs to a row, and no row has two.
    assert conn.execute(
        "SELECT COUNT(*), COUNT(DISTINCT p.id) FROM outbox_payloads p JOIN outbox o USING (id)"
    ) == [(3, 3)]
    assert conn.execute("SELECT COUNT(*) FROM outbox_payloads") == [(3,)]


def test_many_rows_in_one_call_each_get_their_own_payload(
    conn: SqliteConnection | PostgresConnection,
) -> None:
    # More rows than one multi-row statement holds (`storage.bulk.MAX_ROWS`).
    rows = [row(f"k{i}", {"n": i}) for i in range(700)]
    with conn.transaction():
        enqueue(conn, rows, 5.0)
    with conn.transaction():
        claimed = claim_due(conn, now=10.0, limit=1000)
    assert {c.idempotency_key: c.payload["n"] for c in claimed} == {f"k{i}": i for i in range(700)}
