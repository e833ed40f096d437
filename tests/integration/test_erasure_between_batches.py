"""An erasure never races the processor: it runs between two batches (SQLite).

A batch reads a profile, decides, and writes the profile's row back with the batch. An erasure
committed in between would be undone by that write, traits and all. Here a stage holds the
processor inside a batch that has read the person, the erasure is asked for meanwhile, and
the batch is let go: the person must be gone at the end, and the erasure must not have run
while the batch was held.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

from leadloop.identity.model import Profile
from leadloop.log.batch import Batch, Conn
from leadloop.log.model import Event
from tests.contract.conftest import make_harness


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
