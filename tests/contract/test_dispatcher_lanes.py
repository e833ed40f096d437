"""The dispatcher's lanes: two claims in flight at once, and still every row sent once."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from leadloop.identity.service import IdentityBatch
from leadloop.log.batch import Batch, OutboxRow
from leadloop.outbox.dispatcher import Dispatcher
from leadloop.outbox.model import RetryPolicy
from leadloop.outbox.service import Claimed, Outcome
from leadloop.testing import eventually
from tests.contract.conftest import Harness
from tests.contract.conftest_helpers import HeldSender, hold

ROWS = 60


class Gate:
    """A batch sender whose first two batches wait for each other: the test passes only if two
    lanes really send at once. A lane alone would wait out the barrier and fail."""

    def __init__(self) -> None:
        self.barrier = threading.Barrier(2, timeout=20)
        self.lock = threading.Lock()
        self.calls = 0
        self.sent: list[int] = []

    def send_batch(self, items: list[Claimed], now: float) -> list[Outcome]:
        with self.lock:
            self.calls += 1
            first_two = self.calls <= 2
        if first_two:
            self.barrier.wait()
        with self.lock:
            self.sent.extend(item.id for item in items)
        return [Outcome("delivered") for _ in items]


def add_rows(h: Harness, n: int) -> None:
    """`n` due rows of a kind only the test's dispatcher sends, written as a batch writes them."""
    now = h.engine.clock.now()

    def write(c: Any) -> None:
        batch = Batch(identity=IdentityBatch(conn=c), now=now)
        batch.outbox.extend(
            OutboxRow("default", "probe", "here", f"probe-{i}", {}, None, now) for i in range(n)
        )
        batch.flush(c)

    h.engine.writer.submit(write).result()


def test_two_lanes_send_two_claims_at_once_and_every_row_once(harness: Harness) -> None:
    h = harness
    gate = Gate()
    dispatcher = Dispatcher(
        h.engine.writer, h.engine.clock, {"probe": gate}, claim_sizes={"probe": 10}, lanes=2
    )
    add_rows(h, ROWS)
    dispatcher.start()
    try:
        eventually(
            lambda: h.sql("SELECT COUNT(*) FROM outbox WHERE status = 'delivered'")[0][0] == ROWS
        )
    finally:
        dispatcher.stop()
    assert not gate.barrier.broken
    ids = [int(r[0]) for r in h.sql("SELECT id FROM outbox WHERE kind = 'probe'")]
    assert sorted(gate.sent) == sorted(ids)


class SlowLane:
    """A dispatcher whose first lane (a thread) holds `n` rows in its sender until `release`;
    `sent` is every row id its sender was handed."""

    def __init__(self, h: Harness, n: int) -> None:
        add_rows(h, n)
        self.started, self.release = threading.Event(), threading.Event()
        self.sent: list[int] = []
        slow = HeldSender(self.sent, self.started, self.release)
        self.dispatcher = Dispatcher(
            h.engine.writer, h.engine.clock, {"probe": slow}, claim_sizes={"probe": 10}, lanes=2
        )
        self.first = threading.Thread(target=self.dispatcher.run_once)
        self.first.start()
        assert self.started.wait(20)

    def finish(self) -> None:
        self.release.set()
        self.first.join(20)


class RecordsFirst:
    """The dispatcher's in-flight lock, as seen from one thread: its first use there waits for
    `before` (another lane recording its rows and letting them go) to happen first."""

    def __init__(self, before: threading.Thread, release: threading.Event) -> None:
        self._lock = threading.Lock()
        self._thread = threading.get_ident()
        self._before, self._release = before, release

    def __enter__(self) -> None:
        if threading.get_ident() == self._thread and not self._release.is_set():
            self._release.set()
            self._before.join(20)
        self._lock.acquire()

    def __exit__(self, *exc: object) -> None:
        self._lock.release()


@pytest.mark.parametrize("recorded_meanwhile", [False, True])
def test_a_row_another_lane_is_sending_is_not_sent_again(
    harness: Harness, recorded_meanwhile: bool
) -> None:
    # The lease ran out mid-send (here: the manual clock moved on by an hour), so the other
    # lane claims the same rows again; it must leave them to the lane that has them. Also when
    # that lane records them and lets them go right after the claim (`recorded_meanwhile`):
    # told after its claim what is in flight, the other lane found them free and sent them
    # again, under the same keys.
    h = harness
    clock = h.engine.manual_clock
    assert clock is not None
    lane = SlowLane(h, 5)
    try:
        clock.advance(3600)
        if recorded_meanwhile:
            gate = RecordsFirst(lane.first, lane.release)
            lane.dispatcher._in_flight_lock = gate  # type: ignore[assignment]
        assert lane.dispatcher.run_once() == 0  # claimed again, and dropped: lane one has them
    finally:
        lane.finish()
    assert len(lane.sent) == 5
    delivered = h.sql("SELECT COUNT(*) FROM outbox WHERE status = 'delivered'")[0][0]
    assert delivered == 5


def test_a_row_its_sender_fails_on_every_time_ends_as_a_dead_letter(harness: Harness) -> None:
    # A sender that raises on a row (a bug, or a poison row) used to put it back for another
    # try a minute later, for ever: it never reached the dead letters an operator looks at.
    h = harness
    add_rows(h, 1)
    clock = h.engine.manual_clock
    assert clock is not None

    class Broken:
        def send(self, item: Claimed, now: float) -> Outcome:
            raise RuntimeError("boom")

    policy = RetryPolicy(max_attempts=4)
    dispatcher = Dispatcher(h.engine.writer, h.engine.clock, {"probe": Broken()}, policy=policy)
    try:
        for _ in range(10):
            dispatcher.run_once()
            clock.advance(policy.max_delay)
    finally:
        dispatcher.stop()
    rows = h.sql("SELECT status, attempts, last_error FROM outbox WHERE kind = 'probe'")
    assert len(rows) == 1
    status, attempts, error = rows[0]
    assert (status, attempts) == ("dead", 4)
    assert "internal error: RuntimeError('boom')" in error and "gave up after 4 attempts" in error


class SlowWorkers:
    """Two worker processes' dispatchers whose sends of `probe` rows wait for `release`; each
    records the ids it was handed under its name."""

    def __init__(self, h: Harness) -> None:
        self.started, self.release = threading.Event(), threading.Event()
        self.sent: dict[str, list[int]] = {"first": [], "second": []}
        self.asked = threading.Event()
        """Set once the first worker read its clock."""
        self.first, self.second = self._worker(h, "first"), self._worker(h, "second")

    def now(self) -> float:
        """The first worker's clock: the engine's, watched."""
        self.asked.set()
        return self._clock.now()

    def _worker(self, h: Harness, name: str) -> Dispatcher:
        self._clock = h.engine.clock
        slow = HeldSender(self.sent[name], self.started, self.release)
        clock = self if name == "first" else h.engine.clock
        return Dispatcher(h.engine.writer, clock, {"probe": slow}, claim_sizes={"probe": 10})

    @contextmanager
    def first_sending(self) -> Iterator[None]:
        """While the first worker is inside its slow send of a claim; it finishes on exit."""
        sending = threading.Thread(target=self.first.run_once)
        sending.start()
        try:
            assert self.started.wait(20)
            yield
        finally:
            self.release.set()
            sending.join(20)

    def sent_by_first_only(self, n: int) -> bool:
        """Each of the `n` rows sent once, all by the first worker."""
        first = self.sent["first"]
        return self.sent["second"] == [] and len(set(first)) == len(first) == n


def test_a_slow_claim_keeps_its_lease_from_another_worker(harness: Harness) -> None:
    """Two worker processes (two dispatchers): while the first sends a claim slowly, it
    renews the claim's lease, so the second, once the first lease is over, finds nothing to
    claim; without renewal it would send the same five rows again."""
    h = harness
    add_rows(h, 5)
    w = SlowWorkers(h)
    clock = h.engine.manual_clock
    assert clock is not None
    with w.first_sending():
        clock.advance(40)
        assert w.first.renew_leases() == 5
        clock.advance(40)  # past the claim's first lease (60 s), within the renewed one
        assert w.second.run_once() == 0
    assert w.sent_by_first_only(5)
    assert h.sql("SELECT COUNT(*) FROM outbox WHERE status = 'delivered'")[0][0] == 5
    assert w.first.renew_leases() == 0  # nothing in flight: the recorded rows are left alone


def test_a_row_claimed_again_by_the_other_lane_keeps_its_lease_renewed(harness: Harness) -> None:
    """The lease of a row being sent ran out (the clock moved on), and this process's other
    lane claimed it again and left it to the lane sending it. That claim wrote a new lease,
    which renewal did not know: it kept asking for the old one, renewed nothing, and once the
    new lease ran out another worker process sent the rows a second time."""
    h = harness
    add_rows(h, 5)
    w = SlowWorkers(h)
    clock = h.engine.manual_clock
    assert clock is not None
    with w.first_sending():
        clock.advance(3600)
        assert w.first.run_once() == 0  # the other lane: claimed again, and left to lane one
        clock.advance(40)
        assert w.first.renew_leases() == 5
        clock.advance(40)  # past the second claim's lease, within the renewed one
        assert w.second.run_once() == 0
    assert w.sent_by_first_only(5)


def test_a_claim_that_waited_for_the_writer_is_leased_from_when_it_was_made(
    harness: Harness,
) -> None:
    """A claim waits its turn on the writer (behind a backlog of events, a long job). Its
    lease was counted from when it was asked for, so a claim that waited a lease's length
    handed out rows already free to other workers, which sent them a second time."""
    h = harness
    add_rows(h, 5)
    w = SlowWorkers(h)
    clock = h.engine.manual_clock
    assert clock is not None
    release_writer, held = hold(h.engine.writer)
    sending = threading.Thread(target=w.first.run_once)
    sending.start()
    try:
        w.asked.wait(1)  # a claim that reads the clock before its turn has read it by now
        clock.advance(3600)  # while the claim waits in the writer's queue
        release_writer.set()
        held.result(timeout=20)
        assert w.started.wait(20)
        assert w.second.run_once() == 0
    finally:
        release_writer.set()
        w.release.set()
        sending.join(20)
    assert w.sent_by_first_only(5)
