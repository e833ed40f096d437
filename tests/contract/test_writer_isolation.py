"""The writer's group commit: one request whose rows the database refuses fails alone."""

from __future__ import annotations

import asyncio

import msgspec
import pytest

from leadloop.errors import StorageError
from leadloop.ingest import parse
from leadloop.ingest.model import Accepted
from leadloop.log.writer import Writer
from leadloop.storage.db import DatabaseUrl, PostgresConnection, SqliteConnection, connect
from tests.contract.conftest_helpers import hold


def message(message_id: str) -> Accepted:
    accepted = parse.parse_request(
        {"userId": "u1", "event": "Signed Up", "messageId": message_id}, "track", received_at=1.0
    )
    assert isinstance(accepted, list)
    return accepted[0]


def test_a_request_the_database_refuses_fails_alone(
    backend_url: str, conn: SqliteConnection | PostgresConnection
) -> None:
    writer = Writer(lambda: connect(DatabaseUrl.parse(backend_url)))
    writer.start()
    try:
        # Hold the writer on a job so the three requests queue up and share one group commit.
        release, held = hold(writer)
        first = writer.append("default", [message("m1")])
        # A row no database holds (`events.message_id` is NOT NULL): what a value validation
        # missed would look like to the writer.
        refused = writer.append(
            "default", [message("m2"), msgspec.structs.replace(message("m3"), message_id=None)]
        )
        last = writer.append("default", [message("m4")])
        release.set()
        held.result(timeout=30)
        first.result(timeout=30)
        last.result(timeout=30)
        with pytest.raises(StorageError):
            refused.result(timeout=30)
        assert writer.pending == 0
    finally:
        writer.stop()
    stored = conn.execute("SELECT message_id FROM events ORDER BY message_id")
    # The refused request stored nothing, not even its good message; the others are durable.
    assert [r[0] for r in stored] == ["m1", "m4"]


def test_a_request_cancelled_while_queued_does_not_stop_the_writer(
    backend_url: str, conn: SqliteConnection | PostgresConnection
) -> None:
    """`asyncio.wrap_future` cancels the writer's future when the task awaiting it is cancelled
    (a server shutting down, a timeout around the request). Completing a cancelled future
    raises; raised on the writer thread, it ended the thread, and every later request, batch
    and job waited for ever while the process stayed up."""
    writer = Writer(lambda: connect(DatabaseUrl.parse(backend_url)))
    writer.start()
    try:
        release, held = hold(writer)

        async def request_cancelled_while_waiting() -> None:
            waiting = asyncio.ensure_future(
                asyncio.wrap_future(writer.append("default", [message("m1")]))
            )
            await asyncio.sleep(0)
            waiting.cancel()
            with pytest.raises(asyncio.CancelledError):
                await waiting

        asyncio.run(request_cancelled_while_waiting())
        job = writer.submit(lambda c: c.execute("SELECT 1")[0][0])
        release.set()
        held.result(timeout=30)
        assert job.result(timeout=30) == 1
        writer.append("default", [message("m2")]).result(timeout=30)
        assert writer.pending == 0
    finally:
        writer.stop()
    stored = {r[0] for r in conn.execute("SELECT message_id FROM events")}
    assert "m2" in stored  # m1 may be stored or not: it was never acknowledged


def test_a_job_submitted_after_stop_fails_at_once(backend_url: str) -> None:
    # No thread takes it any more: its caller waited for ever.
    writer = Writer(lambda: connect(DatabaseUrl.parse(backend_url)))
    writer.start()
    writer.stop()
    with pytest.raises(StorageError, match="stopped"):
        writer.submit(lambda c: c.execute("SELECT 1"))
