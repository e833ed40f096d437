"""The writer's group commit: one request whose rows the database refuses fails alone."""

from __future__ import annotations

import threading
from typing import Any

import msgspec
import pytest

from leadloop.errors import StorageError
from leadloop.ingest import parse
from leadloop.ingest.model import Accepted
from leadloop.log.writer import Writer
from leadloop.storage.db import DatabaseUrl, PostgresConnection, SqliteConnection, connect


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
        holding, release = threading.Event(), threading.Event()

        def hold(_: Any) -> None:
            holding.set()
            release.wait(30)

        held = writer.submit(hold)
        assert holding.wait(30)
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
