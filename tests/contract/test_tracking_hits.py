"""Opens and clicks are answered at once (the pixel, the redirect) and written with the next
group of hits. A group whose write failed was dropped without a word in the log: hits already
answered were lost. It now waits for the next write."""

from __future__ import annotations

import contextlib

from leadloop.channels import records
from leadloop.channels.records import MessageRecord
from leadloop.channels.service import Hit, services
from leadloop.errors import StorageError
from tests.contract.conftest import Harness

REFUSE = {
    "sqlite": (
        "CREATE TRIGGER refuse BEFORE INSERT ON events BEGIN SELECT RAISE(ABORT, 'refused'); END",
        "DROP TRIGGER refuse",
    ),
    "postgres": (
        "ALTER TABLE events ADD CONSTRAINT refuse CHECK (event <> 'Email Opened') NOT VALID",
        "ALTER TABLE events DROP CONSTRAINT refuse",
    ),
}
"""How the test makes the database refuse the hits' events, then take them again."""


def _opens(h: Harness) -> int:
    return int(h.sql("SELECT COUNT(*) FROM events WHERE event = 'Email Opened'")[0][0])


def test_hits_whose_write_failed_are_written_by_the_next_one(harness: Harness) -> None:
    h = harness
    now = h.engine.clock.now()
    record = MessageRecord(
        "default", "msg-1", None, "email", "welcome", None, None, "ada@example.com", None,
        "sent", "sent", now, now, now,
    )  # fmt: skip
    writer = h.engine.writer
    writer.submit(lambda c: records.create(c, record, now)).result(timeout=30)
    refuse, accept = REFUSE[h.engine.url.dialect]
    # The database refuses the group's write (a disk full, a lost session would too).
    writer.submit(lambda c: c.execute(refuse)).result(timeout=30)
    hits = services(h.engine).hits
    assert hits.add(Hit("open", "default", "msg-1", now + 5, user_agent="Mozilla/5.0"))
    with contextlib.suppress(StorageError):  # the group scheduled by `add` failed before
        hits.drain().result(timeout=30)
    writer.submit(lambda c: c.execute(accept)).result(timeout=30)
    assert _opens(h) == 0
    hits.drain().result(timeout=30)
    assert _opens(h) == 1
