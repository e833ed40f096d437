"""Worker processes on hosts whose clocks disagree: on PostgreSQL a lease is reckoned by the
database server's clock, so a host whose clock runs ahead never takes a row another host is
still sending, and a host whose clock lags does not write leases already over."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from leadloop.clock import SystemClock
from leadloop.identity.service import IdentityBatch
from leadloop.log.batch import Batch, OutboxRow
from leadloop.outbox.dispatcher import Dispatcher
from leadloop.outbox.service import Claimed, Outcome
from leadloop.testing import eventually
from tests.contract.conftest import Harness
from tests.contract.conftest_helpers import HeldSender

ROWS = 5
SKEW = 600.0
"""Ten minutes: far beyond a lease."""


class SkewedClock(SystemClock):
    """A host's system clock that is `offset` seconds off the database server's."""

    def __init__(self, offset: float) -> None:
        self.offset = offset

    def now(self) -> float:
        return super().now() + self.offset


class Host:
    """One worker process's dispatcher on a host whose clock is `offset` off; `held` keeps its
    sends waiting (a slow receiver, or a process that hung mid-send) until `release`."""

    def __init__(self, h: Harness, offset: float, *, held: bool = False, **options: Any) -> None:
        self.sent: list[int] = []
        self.started, self.release = threading.Event(), threading.Event()
        if not held:
            self.release.set()
        self.dispatcher = Dispatcher(
            h.engine.writer,
            SkewedClock(offset),
            {"probe": HeldSender(self.sent, self.started, self.release)},
            claim_sizes={"probe": 10},
            **options,
        )
        self._thread: threading.Thread | None = None

    def sending(self) -> None:
        """Claim in the background and wait until the sender holds the rows."""
        self._thread = threading.Thread(target=self.dispatcher.run_once)
        self._thread.start()
        assert self.started.wait(30)

    def finish(self) -> None:
        self.release.set()
        if self._thread is not None:
            self._thread.join(30)
        self.dispatcher.stop()


def add_due_rows(h: Harness) -> None:
    """Rows due now by the wall clock (the harness's manual clock runs years ahead of it)."""
    now = SystemClock().now()

    def write(c: Any) -> None:
        batch = Batch(identity=IdentityBatch(conn=c), now=now)
        batch.outbox.extend(
            OutboxRow("default", "probe", "here", f"probe-{i}", {}, None, now - 1)
            for i in range(ROWS)
        )
        batch.flush(c)

    h.engine.writer.submit(write).result()


def postgres_only(h: Harness) -> None:
    if h.engine.url.dialect != "postgres":
        pytest.skip("SQLite runs one process: its engine's clock is the only one")


@pytest.mark.parametrize(
    ("first", "second"),
    [(0.0, SKEW), (-SKEW, 0.0)],
    ids=["second-ahead", "first-behind"],
)
def test_a_live_lease_holds_whatever_the_hosts_clocks_say(
    harness: Harness, first: float, second: float
) -> None:
    # By its own clock the second host saw the first's lease over (it runs ahead, or the
    # first wrote its lease from a clock that lags) and sent the rows again mid-send.
    h = harness
    postgres_only(h)
    add_due_rows(h)
    sending, other = Host(h, first, held=True), Host(h, second)
    try:
        sending.sending()
        assert other.dispatcher.run_once() == 0
        assert sending.dispatcher.renew_leases() == ROWS
        assert other.dispatcher.run_once() == 0
    finally:
        sending.finish()
        other.finish()
    assert other.sent == []
    assert sorted(sending.sent) == sorted(int(r[0]) for r in h.sql("SELECT id FROM outbox"))
    assert h.sql("SELECT COUNT(*) FROM outbox WHERE status = 'delivered'")[0][0] == ROWS


@pytest.mark.parametrize("second", [SKEW, -SKEW], ids=["ahead", "behind"])
def test_a_lease_over_by_the_database_clock_is_claimed_whatever_the_host_clock(
    harness: Harness, second: float
) -> None:
    # The first host hung mid-send and renews nothing: once its (short) lease is over by the
    # database's clock, another host takes the rows, even one whose clock lags by ten minutes.
    h = harness
    postgres_only(h)
    add_due_rows(h)
    hung, other = Host(h, 0.0, held=True, lease=0.5), Host(h, second)
    try:
        hung.sending()
        eventually(lambda: other.dispatcher.run_once() == ROWS)
    finally:
        hung.finish()
        other.finish()
    assert sorted(other.sent) == sorted(hung.sent)


@pytest.mark.parametrize("offset", [SKEW, -SKEW], ids=["ahead", "behind"])
def test_a_retry_waits_its_delay_by_the_database_clock(harness: Harness, offset: float) -> None:
    # A sender asks for another try in five minutes, read on its host's clock. Compared with
    # the database's clock as written, a host ten minutes behind made it due at once (a row's
    # whole backoff spent in seconds), one ahead made it wait fifteen minutes.
    h = harness
    postgres_only(h)
    add_due_rows(h)

    class Later:
        def send_batch(self, items: list[Claimed], now: float) -> list[Outcome]:
            return [Outcome("pending", now + 300, "try later") for _ in items]

    skewed = Dispatcher(
        h.engine.writer, SkewedClock(offset), {"probe": Later()}, claim_sizes={"probe": 10}
    )
    assert skewed.run_once() == ROWS
    waits = h.sql(
        "SELECT next_attempt_at - EXTRACT(EPOCH FROM clock_timestamp()) FROM outbox "
        "WHERE status = 'pending'"
    )
    assert len(waits) == ROWS
    assert all(0 < float(wait) <= 300 for (wait,) in waits), waits
    assert Host(h, 0.0).dispatcher.run_once() == 0
