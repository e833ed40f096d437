"""An erasure never races the processor.

A batch reads a profile, decides, and writes the profile's row back with the batch. An erasure
committed in between would be undone by that write, traits and all. Here a stage holds the
processor inside a batch that has read the person, the erasure is asked for meanwhile, and
the batch is let go: the person must be gone at the end.

On SQLite the erasure runs between two batches (a processor job). On PostgreSQL it is a plain
write, possibly from another process: the batch sees that an erasure committed since it began
to read (`erasure_epoch`) and is decided again; an erasure that starts while a batch is being
written waits for that write, then erases what it wrote.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from leadloop.identity.erase import erase_profile
from leadloop.identity.model import Profile
from leadloop.ingest import parse
from leadloop.ingest.erased import commit_delivery
from leadloop.log.batch import Batch, Conn
from leadloop.log.model import Event
from leadloop.storage.db import DatabaseUrl, connect
from tests.conftest import PG_URL, _with_db, drop_postgres_database, new_postgres_database
from tests.contract.conftest import Harness, make_harness


class Gate:
    """Holds the processor in `handle` on a `Hold` event until released."""

    name = "gate"

    def __init__(self) -> None:
        self.inside = threading.Event()
        self.release = threading.Event()

    def handle(self, batch: Batch, event: Event, profile: Profile) -> Profile:
        if event.event == "Hold":
            self.inside.set()
            assert self.release.wait(30)
        return profile

    def flush(self, batch: Batch, conn: Conn) -> None:
        pass


class WriteGate(Gate):
    """Holds the processor inside the write of a batch with a `Hold` event, before it writes
    anything: after it has checked the erasure epoch, where a row lock is all that keeps an
    erasure from slipping in before the batch's own rows."""

    def handle(self, batch: Batch, event: Event, profile: Profile) -> Profile:
        if event.event == "Hold":
            identity = batch.identity
            write_profiles = identity.flush

            def held(conn: Conn, now: float) -> None:
                self.inside.set()
                assert self.release.wait(30)
                write_profiles(conn, now)

            identity.flush = held  # type: ignore[method-assign]
        return profile


@pytest.fixture
def pg() -> Iterator[Harness]:
    name = new_postgres_database()
    h = make_harness(_with_db(PG_URL, name))
    try:
        yield h
    finally:
        h.engine.stop()
        drop_postgres_database(name)


def _person_held(h: Harness, gate: Gate) -> str:
    """The person `gone` with an email, and the processor held by `gate` on their next event."""
    h.send({"type": "identify", "userId": "gone", "traits": {"email": "gone@acme.test"}})
    h.settle()
    profile = h.profile("user_id", "gone")
    assert profile is not None
    h.engine.processor.set_stages([*h.engine.processor.stages, gate])
    h.send({"type": "track", "userId": "gone", "event": "Hold"})
    assert gate.inside.wait(30)
    return str(profile["id"])


def _erased(h: Harness, pid: str) -> None:
    assert h.sql("SELECT COUNT(*) FROM profiles WHERE id = ?", pid) == [(0,)]
    assert h.sql("SELECT COUNT(*) FROM identities WHERE value = 'gone@acme.test'") == [(0,)]
    assert h.sql("SELECT COUNT(*) FROM events WHERE body LIKE ?", "%gone@acme.test%") == [(0,)]
    assert h.sql("SELECT COUNT(*) FROM profiles WHERE state LIKE ?", "%gone@acme.test%") == [(0,)]


@pytest.mark.postgres
def test_postgres_a_batch_decided_across_an_erasure_is_decided_again(pg: Harness) -> None:
    gate = Gate()
    pid = _person_held(pg, gate)
    redecided = pg.engine.processor.redecided
    # A plain write on PostgreSQL: it commits while the batch that read the person is held.
    assert pg.engine.erase("default", pid).result(timeout=30) == 1
    gate.release.set()
    pg.settle()  # the lag is 0 already (the batch's only event went): settling waits for the drop
    _erased(pg, pid)
    assert pg.engine.processor.redecided == redecided + 1
    # The `Hold` event was still waiting to be processed, so it went with the person.
    assert pg.sql("SELECT COUNT(*) FROM events WHERE event = 'Hold'") == [(0,)]
    assert pg.profile("user_id", "gone") is None


@pytest.mark.postgres
def test_postgres_an_erasure_waits_for_a_batch_being_written(pg: Harness) -> None:
    gate = WriteGate()
    pid = _person_held(pg, gate)
    done = threading.Event()

    def erase_elsewhere() -> None:  # as another process would: its own connection
        conn = connect(DatabaseUrl.parse(pg.engine.url.url))
        try:
            with conn.transaction():
                erase_profile(conn, "default", pid)
        finally:
            conn.close()
        done.set()

    eraser = threading.Thread(target=erase_elsewhere)
    eraser.start()
    assert not done.wait(1.0)  # the batch holds the epoch: the erasure waits for its commit
    gate.release.set()
    eraser.join(30)
    assert done.is_set()
    pg.settle()
    _erased(pg, pid)
    # It erased what the batch wrote: the `Hold` event had become the person's.
    assert pg.sql("SELECT COUNT(*) FROM events WHERE event = 'Hold'") == [(0,)]
    assert pg.profile("user_id", "gone") is None


def test_an_erasure_asked_for_mid_batch_runs_after_it(tmp_path: Path) -> None:
    h = make_harness(f"sqlite:///{tmp_path}/leadloop.db")
    try:
        h.send({"type": "identify", "userId": "gone", "traits": {"email": "gone@acme.test"}})
        h.settle()
        profile = h.profile("user_id", "gone")
        assert profile is not None
        gate = Gate()
        h.engine.processor.set_stages([*h.engine.processor.stages, gate])
        h.send({"type": "track", "userId": "gone", "event": "Hold"})
        assert gate.inside.wait(30)

        erased = h.engine.erase("default", profile["id"])
        time.sleep(0.5)  # room for an erasure that does not wait for the batch to run now
        assert not erased.done()  # it waits for the batch that has read the person
        gate.release.set()
        assert erased.result(timeout=30) == 1
        h.settle()
        assert h.profile("user_id", "gone") is None
        assert h.sql("SELECT COUNT(*) FROM profiles WHERE id = ?", profile["id"]) == [(0,)]
        assert h.sql("SELECT COUNT(*) FROM events WHERE body LIKE '%gone@acme.test%'") == [(0,)]
    finally:
        h.engine.stop()


@pytest.mark.postgres
def test_postgres_a_privacy_deletion_waits_for_a_delivery_being_committed(pg: Harness) -> None:
    """A HubSpot delivery checks the erased ids and stores its events in one transaction that
    holds the epoch shared; a deletion of the same contact committing meanwhile waits for it,
    then deletes the events it stored (they wait in the log, unprocessed)."""
    contact = "hubspot:62515:contact:5"
    message = {"type": "track", "anonymousId": contact, "event": "Contact Property Changed"}
    accepted = parse.parse_request({"batch": [message]}, None, received_at=1_800_000_000.0)
    assert isinstance(accepted, list)
    url = DatabaseUrl.parse(pg.engine.url.url)
    stored, release, done = threading.Event(), threading.Event(), threading.Event()

    def deliver() -> None:  # the delivery's transaction, held open after its insert
        conn = connect(url)
        try:
            with conn.transaction():
                assert commit_delivery(conn, "default", accepted, [], 1.0).stored == 1
                stored.set()
                assert release.wait(30)
        finally:
            conn.close()

    def delete() -> None:
        conn = connect(url)
        try:
            with conn.transaction():
                commit_delivery(conn, "default", [], [contact], 2.0)
        finally:
            conn.close()
        done.set()

    delivery, deletion = threading.Thread(target=deliver), threading.Thread(target=delete)
    delivery.start()
    assert stored.wait(30)
    deletion.start()
    assert not done.wait(1.0)  # the delivery holds the epoch: the deletion waits for its commit
    release.set()
    delivery.join(30)
    deletion.join(30)
    assert done.is_set()
    assert pg.sql("SELECT COUNT(*) FROM events WHERE anonymous_id = ?", contact) == [(0,)]
    # And a retry of that delivery, now, is dropped.
    conn = connect(url)
    try:
        with conn.transaction():
            again = commit_delivery(conn, "default", accepted, [], 3.0)
    finally:
        conn.close()
    assert (again.stored, again.dropped) == (0, 1)
