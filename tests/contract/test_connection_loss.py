"""A PostgreSQL restart (or failover, or a proxy closing idle sessions) ends every session the
engine holds. The engine must come back by itself: before, the writer, the processor and the
readers kept their dead connections for ever, so the process stayed up, answered every
ingest with an error and processed nothing until someone restarted it."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from leadloop.errors import StorageError
from leadloop.ingest import parse
from leadloop.storage.db import PostgresConnection
from leadloop.testing import eventually
from tests.conftest import PG_URL, _with_db, drop_postgres_database, new_postgres_database
from tests.contract.conftest import Harness, make_harness

pytestmark = pytest.mark.postgres


@pytest.fixture
def pg_harness() -> Iterator[tuple[Harness, str]]:
    name = new_postgres_database()
    h = make_harness(_with_db(PG_URL, name))
    try:
        yield h, name
    finally:
        h.engine.stop()
        drop_postgres_database(name)


def _terminate_sessions(database: str) -> int:
    admin = PostgresConnection(PG_URL)
    try:
        rows = admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = ? AND pid <> pg_backend_pid()",
            (database,),
        )
    finally:
        admin.close()
    return len(rows)


def _track(h: Harness, user: str) -> bool:
    accepted = parse.parse_request(
        {"batch": [{"type": "identify", "userId": user, "messageId": f"m-{user}"}]},
        None,
        received_at=h.engine.clock.now(),
    )
    assert isinstance(accepted, list), accepted
    try:
        h.engine.writer.append("default", accepted).result(timeout=30)
    except StorageError:
        return False  # refused while the session was found dead: the client retries
    return True


def _lag(h: Harness) -> Any:
    try:
        return h.engine.read_sync(h.engine.status)["lag"]
    except StorageError:
        return None


def test_the_engine_reconnects_after_postgres_ends_its_sessions(
    pg_harness: tuple[Harness, str],
) -> None:
    h, database = pg_harness
    assert _track(h, "before")
    h.settle()
    assert _terminate_sessions(database) >= 3  # writer, processor, this thread's reader

    eventually(lambda: _track(h, "after"), timeout=20)
    eventually(lambda: _lag(h) == 0, timeout=20)
    assert h.profile("user_id", "after") is not None
    rows = h.sql("SELECT COUNT(*) FROM events WHERE message_id IN ('m-before', 'm-after')")
    assert rows[0][0] == 2
