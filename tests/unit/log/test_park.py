"""Which failures may get an event parked, and how a failure is recorded."""

from __future__ import annotations

import sqlite3

import psycopg
import pytest

from leadloop.errors import Overloaded, StorageError
from leadloop.log.park import CursorMoved, describe, transient


def wrapped(cause: BaseException) -> StorageError:
    """As `storage.db` raises a driver's error."""
    try:
        raise StorageError(f"{cause}: INSERT ...") from cause
    except StorageError as exc:
        return exc


@pytest.mark.parametrize(
    "exc",
    [
        StorageError("the writer is stopped"),
        wrapped(sqlite3.OperationalError("database is locked")),
        wrapped(sqlite3.DatabaseError("database disk image is malformed")),
        wrapped(psycopg.OperationalError("server closed the connection unexpectedly")),
        wrapped(psycopg.errors.AdminShutdown("terminating connection")),
        wrapped(psycopg.errors.UndefinedTable('relation "x" does not exist')),
        CursorMoved("another consumer"),
        Overloaded(),
    ],
)
def test_the_databases_own_state_is_transient(exc: BaseException) -> None:
    assert transient(exc)


@pytest.mark.parametrize(
    "exc",
    [
        ValueError("no rule for this event"),
        KeyError("currency"),
        OverflowError("Python int too large to convert to SQLite INTEGER"),
        wrapped(sqlite3.IntegrityError("NOT NULL constraint failed")),
        wrapped(psycopg.errors.NotNullViolation("null value")),
        wrapped(psycopg.errors.UniqueViolation("duplicate key")),
        wrapped(psycopg.DataError("PostgreSQL text fields cannot contain NUL (0x00) bytes")),
    ],
)
def test_what_the_events_may_cause_is_not(exc: BaseException) -> None:
    assert not transient(exc)


def test_describe_names_the_class_the_driver_class_and_keeps_rows_short() -> None:
    assert describe(KeyError("currency"))[:2] == ("KeyError", "'currency'")
    error, message, _ = describe(wrapped(sqlite3.IntegrityError("NOT NULL constraint failed")))
    assert error == "leadloop.errors.StorageError (sqlite3.IntegrityError)"
    assert message == "NOT NULL constraint failed: INSERT ..."
    try:
        raise ValueError("x" * 10_000)
    except ValueError as exc:
        error, message, trace = describe(exc)
    assert len(message) == 2000 and len(trace) == 4000 and trace.endswith("x\n")
