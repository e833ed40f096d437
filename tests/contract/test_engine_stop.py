"""Stopping the engine stops its writer, whatever failed before it."""

from __future__ import annotations

import pytest

from leadloop.channels.service import Hit
from leadloop.errors import StorageError
from tests.contract.conftest import Harness


def test_the_writer_stops_when_the_last_tracking_hits_cannot_be_written(
    harness: Harness,
) -> None:
    # Hits of a failed write wait for the next; at stop that was the last drain, which raised
    # here, and `stop` returned before stopping the writer: its thread and connection stayed.
    h = harness
    h.engine.writer.submit(lambda c: c.execute("DROP TABLE message_records")).result()
    h.engine.messages.services.hits.add(Hit("open", "default", "m1", h.engine.clock.now()))
    with pytest.raises(StorageError, match="message_records"):
        h.engine.stop()
    with pytest.raises(StorageError, match="stopped"):
        h.engine.writer.submit(lambda c: c.execute("SELECT 1"))
    h.engine.stop()  # again, as the fixture does: nothing left to stop
