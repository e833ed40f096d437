"""Reading the event log in order, and the consumers' cursors.

SQLite has one writer, so `seq` order is commit order. On PostgreSQL, identity values are
handed out before commit, so a lower `seq` can become visible after a higher one; there the
log is read in `(txid, seq)` order and only below the oldest running transaction
(`pg_snapshot_xmin`), which makes the order stable: no row can appear behind the cursor.
"""

from __future__ import annotations

from typing import Any

import msgspec

from leadloop.log.model import Event
from leadloop.storage.db import PostgresConnection, SqliteConnection

Conn = SqliteConnection | PostgresConnection
_decoder = msgspec.json.Decoder(dict[str, Any])

_COLUMNS = (
    "seq, workspace_id, message_id, type, event, user_id, anonymous_id, group_id, "
    "previous_id, ts, received_at, body, profile_id"
)
# The erasure epoch (identity/erase.py) comes with the events, read in the same snapshot: the
# processor checks it again when it writes the batch. One uncorrelated subquery, evaluated once.
_EPOCH = "(SELECT n FROM erasure_epoch WHERE id = 1)"
_READ_SQLITE = f"SELECT {_COLUMNS}, {_EPOCH} FROM events WHERE seq > ? ORDER BY seq LIMIT ?"
_READ_POSTGRES = (
    f"SELECT {_COLUMNS}, txid::text, {_EPOCH} FROM events "
    "WHERE (txid, seq) > (?::xid8, ?) AND txid < pg_snapshot_xmin(pg_current_snapshot()) "
    "ORDER BY txid, seq LIMIT ?"
)


def event_from_row(row: tuple[Any, ...]) -> Event:
    return Event(
        seq=int(row[0]),
        workspace_id=row[1],
        message_id=row[2],
        type=row[3],
        event=row[4],
        user_id=row[5],
        anonymous_id=row[6],
        group_id=row[7],
        previous_id=row[8],
        timestamp=float(row[9]),
        received_at=float(row[10]),
        body=_decoder.decode(row[11]),
        profile_id=row[12] if len(row) > 12 else None,
    )


def get_cursor(conn: Conn, name: str) -> str:
    rows = conn.execute("SELECT position FROM cursors WHERE name = ?", (name,))
    if rows:
        return str(rows[0][0])
    return _start(conn)


def _start(conn: Conn) -> str:
    """The position before the first event, for a consumer with no cursor yet."""
    return "0" if conn.dialect == "sqlite" else "0:0"


def processed_seq(conn: Conn, name: str) -> int:
    """The `seq` of the last event the consumer `name` has processed, 0 before the first: the
    cursor's log sequence number without PostgreSQL's `txid:` prefix. There the log is read in
    `(txid, seq)` order, so an event of lower `seq` may still be ahead: `lag` counts those."""
    return int(get_cursor(conn, name).rpartition(":")[2])


def cursor_and_epoch(conn: Conn, name: str) -> tuple[str, int]:
    """`get_cursor` and the erasure epoch in one statement, for the processor's write; on
    PostgreSQL the epoch row is then held shared until commit (identity/erase.py)."""
    lock = " FOR SHARE OF e" if conn.dialect == "postgres" else ""
    rows = conn.execute(
        "SELECT c.position, e.n FROM erasure_epoch e LEFT JOIN cursors c ON c.name = ? "
        f"WHERE e.id = 1{lock}",
        (name,),
    )
    position, epoch = rows[0]
    return (_start(conn) if position is None else str(position)), int(epoch)


def set_cursor(conn: Conn, name: str, position: str) -> None:
    conn.execute(
        "INSERT INTO cursors (name, position) VALUES (?, ?) "
        "ON CONFLICT (name) DO UPDATE SET position = excluded.position",
        (name, position),
    )


def read_after(conn: Conn, position: str, limit: int) -> tuple[list[Event], str, int]:
    """The next events after `position`, the position after the last of them, and the erasure
    epoch as of that read (0 when there are no events)."""
    if conn.dialect == "sqlite":
        rows = conn.execute(_READ_SQLITE, (int(position), limit))
        if not rows:
            return [], position, 0
        last = rows[-1]
        return [event_from_row(r[:13]) for r in rows], str(last[0]), int(last[13])
    txid, _, seq = position.partition(":")
    rows = conn.execute(_READ_POSTGRES, (txid, int(seq), limit))
    if not rows:
        return [], position, 0
    last = rows[-1]
    return [event_from_row(r[:13]) for r in rows], f"{last[13]}:{last[0]}", int(last[14])


def read_seq(conn: Conn, seq: int) -> tuple[Event | None, int]:
    """The event of log sequence number `seq` (None once erased) and the erasure epoch, read
    in one snapshot, for processing that one event again (a parked event's re-drive)."""
    rows = conn.execute(
        f"SELECT {_COLUMNS}, {_EPOCH} FROM events WHERE seq = ?", (seq,)
    ) or conn.execute(f"SELECT {_EPOCH}")
    if len(rows[0]) == 1:
        return None, int(rows[0][0])
    return event_from_row(rows[0][:13]), int(rows[0][13])


def log_now(conn: Conn, workspace: str, wall: float) -> float:
    """The instant a command replaying a workspace's log from outside the engine takes as now.

    The newest time the engine received an event, when later than the wall clock: a
    manual-clock sandbox's log runs ahead of the wall, and read as of the wall its events would
    move back in time. Received, not client-dated: one event a device dated the year 9000 would
    carry the replay (its decay, its clamping of event times) there, unlike anything served.
    """
    newest = conn.execute(
        "SELECT MAX(received_at) FROM events WHERE workspace_id = ?", (workspace,)
    )[0][0]
    return max(wall, float(newest or 0.0))


def log_length(conn: Conn) -> int:
    rows = conn.execute("SELECT COUNT(*) FROM events")
    return int(rows[0][0])


def lag(conn: Conn, name: str) -> int:
    """Events in the log that the consumer `name` has not processed yet."""
    position = get_cursor(conn, name)
    if conn.dialect == "sqlite":
        rows = conn.execute("SELECT COUNT(*) FROM events WHERE seq > ?", (int(position),))
    else:
        txid, _, seq = position.partition(":")
        rows = conn.execute(
            "SELECT COUNT(*) FROM events WHERE (txid, seq) > (?::xid8, ?)", (txid, int(seq))
        )
    return int(rows[0][0])
