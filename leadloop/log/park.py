"""Parked events: the ones the processor set aside so that the log behind them moves on.

An event whose decision raises (a bug, or data no rule anticipated) failed its batch, and the
batch was tried again for ever: nothing behind it in the log was processed. Now, once a batch
has failed the same way a few times at one cursor position, the processor finds the event
that fails alone and parks it: a row here, written in the transaction that moves the cursor
past it. The event stays in the log; a re-drive processes it again and deletes the row when
that succeeds (docs/decisions/0006-parked-events.md).

Only failures that the batch's content may cause count: a database that is away, a lost
connection, a full disk or another consumer are retried as before, and park nothing.
"""

from __future__ import annotations

import json
import traceback
from dataclasses import dataclass, replace
from typing import Any, Literal

from leadloop.errors import Overloaded, StorageError
from leadloop.log import breaker, store
from leadloop.log.model import Event
from leadloop.storage.db import PostgresConnection, SqliteConnection

Conn = SqliteConnection | PostgresConnection

STRIKES = 3
"""Deterministic failures in a row at one position before the batch is taken apart, and
failures of one event processed alone before it is parked."""

MESSAGE_LIMIT = 2000
TRACEBACK_LIMIT = 4000

_CONTENT_ERRORS = frozenset({"IntegrityError", "DataError"})
"""DB-API classes (sqlite3's and psycopg's alike) of errors a row's values cause: a duplicate
key, a value the column cannot hold. Any other database error is the database's own state."""


class CursorMoved(RuntimeError):
    """Another consumer moved the processor's cursor: nothing of the batch was written."""


def transient(exc: BaseException) -> bool:
    """Whether `exc` says nothing about the events being processed: retried as it is, it may
    succeed, and it must never get an event parked."""
    if isinstance(exc, CursorMoved | Overloaded):
        return True
    if isinstance(exc, StorageError):
        cause = exc.__cause__
        if cause is None:  # leadloop's own: no connection, the writer stopped
            return True
        return not _CONTENT_ERRORS.intersection(c.__name__ for c in type(cause).__mro__)
    return False


@dataclass(frozen=True)
class ParkedEvent:
    id: int
    workspace_id: str
    seq: int
    message_id: str
    type: str
    event: str | None
    error: str
    message: str
    traceback: str
    attempts: int
    parked_at: float
    redrive_requested_at: float | None

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


_COLUMNS = (
    "id, workspace_id, seq, message_id, type, event, error, message, traceback, attempts, "
    "parked_at, redrive_requested_at"
)


def _row(row: tuple[Any, ...]) -> ParkedEvent:
    # Both drivers give ints for the integer columns and floats for the real ones.
    return ParkedEvent(*row)


def describe(exc: BaseException) -> tuple[str, str, str]:
    """The error's class, message and the end of its traceback, cut to fit a row. A database
    error names the driver's class too (`IntegrityError`, `DataError`): it says what to fix."""
    lines = traceback.format_exception(exc)
    return error_name(exc), str(exc)[:MESSAGE_LIMIT], "".join(lines)[-TRACEBACK_LIMIT:]


def error_name(exc: BaseException) -> str:
    name = _class_name(exc)
    if isinstance(exc, StorageError) and exc.__cause__ is not None:
        name = f"{name} ({_class_name(exc.__cause__)})"
    return name


def _class_name(exc: BaseException) -> str:
    module = type(exc).__module__
    name = type(exc).__qualname__
    return name if module in ("builtins", "__main__") else f"{module}.{name}"


def park(conn: Conn, event: Event, exc: BaseException, attempts: int, now: float) -> int:
    """Record `event` as parked (again: a replay meets it anew); returns the row's id."""
    error, message, trace = describe(exc)
    conn.execute(
        "INSERT INTO parked_events (workspace_id, seq, message_id, type, event, error, message, "
        "traceback, attempts, parked_at, redrive_requested_at) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, NULL) ON CONFLICT (seq) DO UPDATE SET "
        "error = excluded.error, message = excluded.message, traceback = excluded.traceback, "
        "attempts = parked_events.attempts + excluded.attempts, parked_at = excluded.parked_at, "
        "redrive_requested_at = NULL",
        (
            event.workspace_id,
            event.seq,
            event.message_id,
            event.type,
            event.event,
            error,
            message,
            trace,
            attempts,
            now,
        ),
    )
    return int(conn.execute("SELECT id FROM parked_events WHERE seq = ?", (event.seq,))[0][0])


def failed_again(conn: Conn, parked_id: int, exc: BaseException, now: float) -> None:
    """A re-drive failed: the row stays, with one attempt more and the new reason."""
    error, message, trace = describe(exc)
    conn.execute(
        "UPDATE parked_events SET error = ?, message = ?, traceback = ?, "
        "attempts = attempts + 1, parked_at = ?, redrive_requested_at = NULL WHERE id = ?",
        (error, message, trace, now, parked_id),
    )


def remove(conn: Conn, parked_id: int) -> None:
    conn.execute("DELETE FROM parked_events WHERE id = ?", (parked_id,))


def removed(conn: Conn, seq: int) -> Literal["processed", "gone"]:
    """What became of the event of a parked row that is no longer there: processed, or gone
    from the log (erased since: the re-drive found nothing to process, or the erasure removed
    the row itself). Taken for processed, an erased event was reported as handled."""
    return "gone" if store.read_seq(conn, seq)[0] is None else "processed"


def get(conn: Conn, parked_id: int) -> ParkedEvent | None:
    rows = conn.execute(f"SELECT {_COLUMNS} FROM parked_events WHERE id = ?", (parked_id,))
    return _row(rows[0]) if rows else None


def list_parked(conn: Conn, workspace: str | None = None) -> list[ParkedEvent]:
    """Oldest first (log order)."""
    if workspace is None:
        rows = conn.execute(f"SELECT {_COLUMNS} FROM parked_events ORDER BY seq")
    else:
        rows = conn.execute(
            f"SELECT {_COLUMNS} FROM parked_events WHERE workspace_id = ? ORDER BY seq",
            (workspace,),
        )
    return [_row(r) for r in rows]


def page(conn: Conn, workspace: str, after: int, limit: int) -> list[ParkedEvent]:
    """A workspace's parked events by id (the order they were parked in), after `after`."""
    rows = conn.execute(
        f"SELECT {_COLUMNS} FROM parked_events WHERE workspace_id = ? AND id > ? "
        "ORDER BY id LIMIT ?",
        (workspace, after, limit),
    )
    return [_row(r) for r in rows]


def count(conn: Conn, workspace: str | None = None) -> int:
    if workspace is None:
        return int(conn.execute("SELECT COUNT(*) FROM parked_events")[0][0])
    rows = conn.execute("SELECT COUNT(*) FROM parked_events WHERE workspace_id = ?", (workspace,))
    return int(rows[0][0])


def parked_within(conn: Conn, seq: int, window: int) -> list[breaker.Sender]:
    """The sender of each event parked within the `window` events of the log before `seq`, as
    the log row says (an event erased meanwhile is a sender of its own)."""
    rows = conn.execute(
        "SELECT p.workspace_id, e.type, e.user_id, e.anonymous_id, e.profile_id, p.seq "
        "FROM parked_events p LEFT JOIN events e ON e.seq = p.seq "
        "WHERE p.seq >= ? AND p.seq < ?",
        (seq - window, seq),
    )
    return [breaker.sender(r[0], r[1], r[2], r[3], r[4], int(r[5])) for r in rows]


def request_redrive(conn: Conn, ids: list[int] | None, now: float) -> list[int]:
    """Mark parked events (all of them for None) for the engine to process again; returns the
    ids marked. The engine that leads picks them up within a second or two."""
    if ids is None:
        rows = conn.execute("SELECT id FROM parked_events ORDER BY seq")
        ids = [int(r[0]) for r in rows]
    conn.executemany(
        "UPDATE parked_events SET redrive_requested_at = ? WHERE id = ?",
        [(now, i) for i in ids],
    )
    return ids


def requested(conn: Conn, limit: int = 100) -> list[int]:
    """Parked events a re-drive was asked for, in log order."""
    rows = conn.execute(
        "SELECT id FROM parked_events WHERE redrive_requested_at IS NOT NULL ORDER BY seq LIMIT ?",
        (limit,),
    )
    return [int(r[0]) for r in rows]


HOLD = "processor.hold"
"""The `cursors` row that records the event the processor holds at (`log.breaker`): one JSON
value, which the CLI (another process) reads and marks; a table of its own would hold one row."""


@dataclass(frozen=True)
class Hold:
    """The processor holds at the event after cursor position `at` instead of parking it."""

    at: str
    seq: int
    workspace_id: str
    message_id: str
    reason: str
    error: str
    message: str
    parked_recently: int
    since: float
    park_requested_at: float | None = None

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def hold(conn: Conn, held: Hold) -> None:
    store.set_cursor(conn, HOLD, json.dumps(held.as_dict()))


def release(conn: Conn) -> None:
    conn.execute("DELETE FROM cursors WHERE name = ?", (HOLD,))


def held(conn: Conn, cursor: str) -> Hold | None:
    """The hold of the processor whose cursor is named `cursor`; None once that cursor has
    moved past the held event (a row left by a processor that stopped is no hold)."""
    raw = _hold_row(conn)
    if raw is None:
        return None
    found = Hold(**json.loads(raw))
    return found if store.get_cursor(conn, cursor) == found.at else None


def _hold_row(conn: Conn) -> str | None:
    rows = conn.execute("SELECT position FROM cursors WHERE name = ?", (HOLD,))
    return str(rows[0][0]) if rows else None


def request_park(conn: Conn, cursor: str, now: float) -> Hold | None:
    """Ask the processor to park the event it holds at (an operator's decision that this one
    event is at fault); None when it holds at none. Marks the hold it read, only if unchanged:
    a hold that ended meanwhile is not brought back, and a later one is not marked."""
    found = held(conn, cursor)
    if found is None:
        return None
    before = _hold_row(conn)
    marked = replace(found, park_requested_at=now)
    conn.execute(
        "UPDATE cursors SET position = ? WHERE name = ? AND position = ?",
        (json.dumps(marked.as_dict()), HOLD, before),
    )
    return marked if held(conn, cursor) == marked else None
