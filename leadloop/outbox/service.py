"""The outbox's shell: enqueuing rows, claiming due rows, recording what happened to them,
re-driving dead letters. Rows are enqueued by the processor in the same transaction as the
state change that caused them (leadloop/log/batch.py).

A row's delivery state lives in `outbox`, its payload in `outbox_payloads` under the row's id
(migration 0009): the payload is written once, the state several times."""

from __future__ import annotations

from collections.abc import Sequence
from functools import cached_property
from typing import TYPE_CHECKING, Any, Literal, get_args

import msgspec

from leadloop.storage.db import PostgresConnection, SqliteConnection

if TYPE_CHECKING:
    from leadloop.log.batch import OutboxRow

Conn = SqliteConnection | PostgresConnection
_decoder = msgspec.json.Decoder(dict[str, Any])
_encoder = msgspec.json.Encoder()

Kind = Literal["message", "webhook", "conversion", "audience"]
KINDS: tuple[Kind, ...] = get_args(Kind)
"""What the stages queue: journey sends (`message`) and ad-audience changes (`audience`),
webhooks from scoring and journeys (`webhook`), and conversions (`conversion`)."""
_IDS_PER_STATEMENT = 500
"""Ids or keys per `IN (...)` list: well under SQLite's bound-parameter limit."""
LEASE_SECONDS = 60.0
"""A claimed row is invisible to other dispatchers this long. A crash between sending and
recording makes it due again after the lease, and it is re-sent with the same idempotency
key: at-least-once delivery that receivers deduplicate (webhook-id, event_id...)."""
_DATABASE_TIME = "SELECT CAST(EXTRACT(EPOCH FROM clock_timestamp()) AS DOUBLE PRECISION)"


class Claimed(msgspec.Struct, frozen=True, dict=True):
    """A leased outbox row. (A `msgspec` struct: a dispatcher builds one per row claimed, and a
    frozen dataclass took 1.3 µs each against 0.1; `dict=True` keeps `payload` cacheable.)"""

    id: int
    workspace_id: str
    kind: str
    destination: str
    idempotency_key: str
    raw_payload: str | bytes
    """The row's JSON as stored. Senders with a typed decoder read it directly (for conversions
    that is 3x cheaper than a dict and a conversion); the others use `payload`."""
    attempts: int
    profile_id: str | None
    created_at: float

    @cached_property
    def payload(self) -> dict[str, Any]:
        """The row's JSON decoded on first use."""
        decoded: dict[str, Any] = _decoder.decode(self.raw_payload)
        return decoded


class Outcome(msgspec.Struct, frozen=True):
    """What happened to one claimed row (one per row, hence a `msgspec` struct like `Claimed`)."""

    status: str
    """`delivered`, `pending` (retry at `next_attempt_at`) or `dead`."""
    next_attempt_at: float | None = None
    error: str | None = None
    attempted: bool = True
    """False when nothing was tried (e.g. held back by a rate limit): the attempt budget is
    not spent on waiting."""
    gone: str | None = None
    """The URL, when its receiver answered 410 Gone: `record` holds the row's kind and
    destination at that URL (`outbox_gone`) until a re-drive."""


def enqueue(conn: Conn, rows: Sequence[OutboxRow], now: float) -> None:
    """Insert pending rows, due at their `not_before`; a (workspace, kind, idempotency key)
    already enqueued keeps its first row and payload, so a replayed batch sends nothing twice."""
    if not rows:
        return
    written = conn.insert_returning(
        "INSERT INTO outbox (workspace_id, kind, destination, idempotency_key, "
        "status, attempts, next_attempt_at, profile_id, created_at, updated_at) "
        "VALUES (?, ?, ?, ?, 'pending', 0, ?, ?, ?, ?) "
        "ON CONFLICT (workspace_id, kind, idempotency_key) DO NOTHING "
        "RETURNING id, workspace_id, kind, idempotency_key",
        [
            (
                o.workspace_id,
                o.kind,
                o.destination,
                o.idempotency_key,
                o.not_before,
                o.profile_id,
                now,
                now,
            )
            for o in rows
        ],
    )
    # Only the rows written get a payload (a key named twice in `rows`: its first one's).
    payloads: dict[tuple[str, str, str], dict[str, Any]] = {}
    for o in rows:
        payloads.setdefault((o.workspace_id, o.kind, o.idempotency_key), o.payload)
    conn.executemany(
        "INSERT INTO outbox_payloads (id, payload) VALUES (?, ?)",
        [
            (int(row_id), _encoder.encode(payloads[(ws, kind, key)]).decode())
            for row_id, ws, kind, key in written
        ],
        bulk=True,
    )


def database_time(conn: PostgresConnection) -> float:
    """The database server's clock: the one every worker process reckons leases by, whatever
    its own host's clock says (docs/decisions/0001-concurrency.md)."""
    return float(conn.execute(_DATABASE_TIME)[0][0])


def claim_due(
    conn: Conn,
    now: float,
    limit: int = 100,
    kinds: tuple[str, ...] = (),
    *,
    lease: float = LEASE_SECONDS,
) -> list[Claimed]:
    """Up to `limit` due rows, leased for `lease` seconds from `now`, in id order.

    One statement selects and leases them (`UPDATE ... RETURNING`): a claim of 2,000
    conversions used to add 2,000 single-row updates, about half of a claim's cost."""
    lock = " FOR UPDATE SKIP LOCKED" if conn.dialect == "postgres" else ""
    kind_filter = f" AND kind IN ({','.join('?' * len(kinds))})" if kinds else ""
    rows = conn.execute(
        "UPDATE outbox SET next_attempt_at = ? WHERE id IN (SELECT id FROM outbox "
        "WHERE status = 'pending' AND next_attempt_at <= ?"
        f"{kind_filter} ORDER BY next_attempt_at, id LIMIT ?{lock}) "
        "RETURNING id, workspace_id, kind, destination, idempotency_key, attempts, "
        "profile_id, created_at",
        (now + lease, now, *kinds, limit),
    )
    payloads = _payloads(conn, [int(r[0]) for r in rows])
    claimed = [
        Claimed(
            id=int(r[0]),
            workspace_id=r[1],
            kind=r[2],
            destination=r[3],
            idempotency_key=r[4],
            raw_payload=payloads.get(int(r[0]), "{}"),
            attempts=int(r[5]),
            profile_id=r[6],
            created_at=float(r[7]),
        )
        for r in rows
    ]
    claimed.sort(key=lambda c: c.id)  # RETURNING promises no order
    return claimed


def renew_leases(conn: Conn, leases: dict[int, float], until: float) -> list[int]:
    """Extend the leases of rows still being sent to `until`; `leases` maps each id to the
    lease it was claimed or last renewed with. A row whose outcome is already recorded no
    longer holds that value (delivered, or due at its backoff) and is left as it is."""
    renewed: list[int] = []
    for row_id, lease in leases.items():
        rows = conn.execute(
            "UPDATE outbox SET next_attempt_at = ? WHERE id = ? AND status = 'pending' "
            "AND next_attempt_at = ? RETURNING id",
            (until, row_id, lease),
        )
        renewed.extend(int(r[0]) for r in rows)
    return renewed


def _payloads(conn: Conn, ids: list[int]) -> dict[int, str | bytes]:
    """The stored payloads of these rows (migration 0009 keeps them apart from the row's state,
    which a claim rewrites)."""
    found: dict[int, str | bytes] = {}
    for first in range(0, len(ids), _IDS_PER_STATEMENT):
        chunk = ids[first : first + _IDS_PER_STATEMENT]
        rows = conn.execute(
            f"SELECT id, payload FROM outbox_payloads WHERE id IN ({','.join('?' * len(chunk))})",
            tuple(chunk),
        )
        found.update((int(i), p) for i, p in rows)
    return found


def record(conn: Conn, results: list[tuple[Claimed, Outcome]], now: float) -> None:
    """Store outcomes. Plain deliveries (nearly all rows) are updated by lists of ids, the rest
    one by one with their own times and errors; on PostgreSQL that is one round trip per 500
    rows instead of one per row."""
    delivered = [item.id for item, outcome in results if _plain_delivery(outcome)]
    for first in range(0, len(delivered), _IDS_PER_STATEMENT):
        ids = delivered[first : first + _IDS_PER_STATEMENT]
        conn.execute(
            "UPDATE outbox SET status = 'delivered', attempts = attempts + 1, "
            f"next_attempt_at = ?, last_error = NULL, updated_at = ? WHERE id IN "
            f"({','.join('?' * len(ids))}) AND status = 'pending'",
            (now, now, *ids),
        )
    conn.executemany(
        "UPDATE outbox SET status = ?, attempts = attempts + ?, next_attempt_at = ?, "
        "last_error = ?, updated_at = ? WHERE id = ? AND status = 'pending'",
        [
            (
                outcome.status,
                1 if outcome.attempted else 0,
                outcome.next_attempt_at if outcome.next_attempt_at is not None else now,
                outcome.error,
                now,
                item.id,
            )
            for item, outcome in results
            if not _plain_delivery(outcome)
        ],
    )

    held = {(i.workspace_id, i.kind, i.destination): o.gone for i, o in results if o.gone}
    for (workspace, kind, destination), url in held.items():
        conn.execute(
            "INSERT INTO outbox_gone (workspace_id, kind, destination, url, since) "
            "VALUES (?, ?, ?, ?, ?) ON CONFLICT (workspace_id, kind, destination) "
            "DO UPDATE SET url = excluded.url, since = excluded.since",
            (workspace, kind, destination, url, now),
        )


def _plain_delivery(outcome: Outcome) -> bool:
    return outcome.status == "delivered" and outcome.attempted and outcome.error is None


def gone_url(conn: Conn, workspace: str, kind: str, destination: str) -> str | None:
    """The URL at which this destination answered 410 Gone, while not re-driven since."""
    rows = conn.execute(
        "SELECT url FROM outbox_gone WHERE workspace_id = ? AND kind = ? AND destination = ?",
        (workspace, kind, destination),
    )
    return str(rows[0][0]) if rows else None


def next_due(conn: Conn) -> float | None:
    rows = conn.execute("SELECT MIN(next_attempt_at) FROM outbox WHERE status = 'pending'")
    return float(rows[0][0]) if rows and rows[0][0] is not None else None


def list_items(
    conn: Conn,
    workspace: str,
    status: str | None,
    kind: str | None,
    after: int,
    limit: int,
) -> list[dict[str, Any]]:
    clauses = ["workspace_id = ?", "id > ?"]
    params: list[Any] = [workspace, after]
    if status:
        clauses.append("status = ?")
        params.append(status)
    if kind:
        clauses.append("kind = ?")
        params.append(kind)
    rows = conn.execute(
        "SELECT id, kind, destination, idempotency_key, status, attempts, next_attempt_at, "
        f"last_error, profile_id, created_at, updated_at FROM outbox WHERE {' AND '.join(clauses)} "
        "ORDER BY id LIMIT ?",
        (*params, limit),
    )
    keys = (
        "id",
        "kind",
        "destination",
        "idempotency_key",
        "status",
        "attempts",
        "next_attempt_at",
        "last_error",
        "profile_id",
        "created_at",
        "updated_at",
    )
    return [dict(zip(keys, r, strict=True)) for r in rows]


def redrive(
    conn: Conn,
    workspace: str,
    now: float,
    *,
    item_id: int | None = None,
    kind: str | None = None,
    destination: str | None = None,
) -> int:
    """Dead letters back to pending, with a fresh attempt budget; returns how many. Their
    idempotency keys are unchanged, so a receiver that did take one drops the re-send. Their
    destinations are no longer held as gone (410)."""
    clauses = ["workspace_id = ?", "status = 'dead'"]
    params: list[Any] = [workspace]
    if destination is not None:
        clauses.append("destination = ?")
        params.append(destination)
    if item_id is not None:
        clauses.append("id = ?")
        params.append(item_id)
    if kind:
        clauses.append("kind = ?")
        params.append(kind)
    where = " AND ".join(clauses)
    count = int(conn.execute(f"SELECT COUNT(*) FROM outbox WHERE {where}", params)[0][0])
    # Re-driving a row to an endpoint that answered 410 Gone is the operator's word that it
    # takes deliveries again: the hold on it goes.
    for row_kind, row_destination in conn.execute(
        f"SELECT DISTINCT kind, destination FROM outbox WHERE {where}", params
    ):
        conn.execute(
            "DELETE FROM outbox_gone WHERE workspace_id = ? AND kind = ? AND destination = ?",
            (workspace, row_kind, row_destination),
        )
    conn.execute(
        "UPDATE outbox SET status = 'pending', attempts = 0, next_attempt_at = ?, "
        f"updated_at = ? WHERE {where}",
        (now, now, *params),
    )
    return count
