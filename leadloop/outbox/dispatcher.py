"""The dispatcher: threads ("lanes") that claim due outbox rows, hand each to the sender for
its kind, and record the outcomes (one write transaction per claimed group).

Why more than one lane: a lane waits for a claim's requests to be answered before it records
them and claims again. With one lane the senders' own work (building a 1,000-event body) and
the platforms' answer time add up; with two, one lane builds while the other waits. A claim
takes its rows exclusively (`service.claim_due`), as separate worker processes on PostgreSQL
already rely on, and a row whose lease ran out mid-send is left to the lane sending it
(`_in_flight`), so no row is sent by two lanes at once. Rows were never delivered in order (the
single sends already run in a pool).

Leases are renewed while their rows are sent (`renew_leases`, every third of a lease): a claim
of a hundred emails to a slow SMTP server, or of webhooks to receivers that use their whole
deadline, outlasts one lease, and another worker process would claim and send them again.

On PostgreSQL, worker processes on several hosts claim from one outbox, and their clocks
differ: a host whose clock ran a minute ahead saw another's live lease as over and sent its
rows again. There the dispatcher of a system clock reckons claims and leases by the database
server's clock (`service.database_time`), one clock for every host; due times share the lease's
column, so retries' delays are counted from that clock too (`_anchored`). A manual clock (tests,
`--clock manual` sandboxes) stays the only time of its engine, as on SQLite, where one process
dispatches."""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol

from msgspec.structs import replace

from leadloop.clock import Clock, SystemClock
from leadloop.log.writer import Writer
from leadloop.outbox import service
from leadloop.outbox.decide import next_attempt
from leadloop.outbox.model import RetryPolicy
from leadloop.outbox.service import Claimed, Outcome

log = logging.getLogger("leadloop.outbox")
LANES = 2
"""Dispatcher threads; see the module docstring."""
INTERNAL_ERROR_DELAY = 60.0
"""The least wait before a row whose sender raised is tried again."""


class Sender(Protocol):
    """Delivers one outbox row. Never raises for an expected failure: returns the outcome
    (`pending` with the next attempt time, or `dead` with the reason)."""

    def send(self, item: Claimed, now: float) -> Outcome: ...


class BatchSender(Protocol):
    """Delivers many rows of its kind at once (e.g. conversions: one request per destination
    and up to the platform's batch size); returns one outcome per row, in order."""

    def send_batch(self, items: list[Claimed], now: float) -> list[Outcome]: ...


class Dispatcher:
    def __init__(
        self,
        writer: Writer,
        clock: Clock,
        senders: Mapping[str, Sender | BatchSender],
        *,
        poll: float = 0.25,
        parallel: int = 8,
        batch: int = 100,
        claim_sizes: Mapping[str, int] | None = None,
        lanes: int = LANES,
        policy: RetryPolicy | None = None,
        lease: float = service.LEASE_SECONDS,
        database_time: bool | None = None,
    ) -> None:
        self._writer = writer
        self._lease = lease
        """How long a claim or a renewal holds its rows (shorter in tests of expiry)."""
        self._database_time = (
            isinstance(clock, SystemClock) if database_time is None else database_time
        )
        """On PostgreSQL, read the time of claims and renewals from the database server (see
        the module docstring); by default, for the system clock only."""
        self._policy = policy or RetryPolicy()
        """The attempt budget of rows whose sender raised (`_internal_error`)."""
        self._clock = clock
        self.senders = dict(senders)
        self._poll = poll
        self._batch = batch
        self._claim_sizes = dict(claim_sizes or {})
        """Kinds claimed on their own, this many rows at a time (conversions fill platform
        batches of 1,000-2,000 events)."""
        self._pool = ThreadPoolExecutor(max_workers=parallel, thread_name_prefix="leadloop-send")
        self._lanes = max(1, lanes)
        self._in_flight: set[int] = set()
        self._leases: dict[int, float] = {}
        """Each in-flight row's lease: what its `next_attempt_at` holds while it is sent."""
        """Rows a lane is sending or recording. A lease can run out while its row is still being
        sent (a slow receiver, or a manual clock moved on); the other lane may then claim the
        row again, and must leave it to the lane that has it."""
        self._in_flight_lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def wake(self) -> None:
        self._wake.set()

    def start(self) -> None:
        self._threads = [
            threading.Thread(target=self._run, name=f"leadloop-outbox-{lane}", daemon=True)
            for lane in range(self._lanes)
        ]
        self._threads.append(
            threading.Thread(target=self._keep_leases, name="leadloop-outbox-leases", daemon=True)
        )
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        for thread in self._threads:
            thread.join(timeout=30)
        self._threads = []
        self._pool.shutdown(wait=True, cancel_futures=True)

    def run_once(self) -> int:
        own = tuple(k for k in self.senders if k in self._claim_sizes)
        rest = tuple(k for k in self.senders if k not in self._claim_sizes)

        taken: list[Claimed] = []
        replaced: dict[int, float] = {}

        def claim(c: Any) -> list[Claimed]:
            # The time is read when the claim runs, not when it was queued: a claim that
            # waited its turn on the writer (a backlog, a long job) as long as a lease handed
            # out rows whose lease had run out, free to other workers while this one sent them.
            now = self._claim_time(c)
            found = service.claim_due(c, now, self._batch, rest, lease=self._lease) if rest else []
            for kind in own:
                size = self._claim_sizes[kind]
                found += service.claim_due(c, now, size, (kind,), lease=self._lease)
            # Rows another lane sends are left to it here, on the writer thread: that lane
            # records them on this thread too, so it has not yet, and lets them go only after.
            # Told once this claim returned, a lane that recorded them meanwhile had let them
            # go, and they were sent again.
            self._take(found, now + self._lease, taken, replaced)
            return taken

        try:
            claimed = self._writer.submit(claim).result()
        except Exception:
            self._untake(taken, replaced)  # rolled back: nothing was leased
            raise
        if not claimed:
            return 0
        try:
            self._deliver(claimed)
        finally:
            self._untake(claimed, {})
        return len(claimed)

    def _take(
        self, found: list[Claimed], lease: float, taken: list[Claimed], replaced: dict[int, float]
    ) -> None:
        """Mark the claimed rows no other lane sends as in flight (into `taken`). Every row the
        claim leased holds the new lease now, those another lane is sending too: renewal must
        ask for that value, or it renews nothing and the row is free to other workers once
        this lease runs out (their former lease goes into `replaced`)."""
        with self._in_flight_lock:
            for item in found:
                if item.id in self._in_flight:
                    replaced[item.id] = self._leases.get(item.id, lease)
                else:
                    taken.append(item)
                    self._in_flight.add(item.id)
                self._leases[item.id] = lease

    def _untake(self, taken: list[Claimed], replaced: dict[int, float]) -> None:
        with self._in_flight_lock:
            self._in_flight.difference_update(item.id for item in taken)
            for item in taken:
                self._leases.pop(item.id, None)
            for row_id, lease in replaced.items():
                if row_id in self._leases:  # still sent by its lane
                    self._leases[row_id] = lease

    def renew_leases(self) -> int:
        """Extend the lease of every row a lane is still sending; the number renewed."""
        with self._in_flight_lock:
            held = dict(self._leases)
        if not held:
            return 0

        def renew(c: Any) -> tuple[float, list[int]]:
            until = self._claim_time(c) + self._lease  # as the claim: when it runs
            return until, service.renew_leases(c, held, until)

        until, renewed = self._writer.submit(renew).result()
        with self._in_flight_lock:
            for row_id in renewed:
                if row_id in self._leases:  # not recorded meanwhile
                    self._leases[row_id] = until
        return len(renewed)

    def _on_database_clock(self, c: Any) -> bool:
        return self._database_time and c.dialect == "postgres"

    def _claim_time(self, c: Any) -> float:
        """The time due rows and leases are reckoned by (see the module docstring)."""
        return service.database_time(c) if self._on_database_clock(c) else self._clock.now()

    def _anchored(
        self, c: Any, outcomes: list[tuple[Claimed, Outcome]], now: float
    ) -> list[tuple[Claimed, Outcome]]:
        """Retries due after the delay their sender chose, counted from the claims' clock
        (`_claim_time`) rather than this host's (read at `now`). Compared as written with the
        database's clock, a host whose clock lagged by more than the longest backoff made its
        retries due at once and spent a row's attempts in seconds."""
        if not self._on_database_clock(c):
            return outcomes
        shift = service.database_time(c) - now
        return [
            (item, replace(outcome, next_attempt_at=outcome.next_attempt_at + shift))
            if outcome.status == "pending" and outcome.next_attempt_at is not None
            else (item, outcome)
            for item, outcome in outcomes
        ]

    def _keep_leases(self) -> None:
        while not self._stop.wait(self._lease / 3):
            try:
                self.renew_leases()
            except Exception:
                log.exception("renewing outbox leases failed; retrying")

    def _deliver(self, claimed: list[Claimed]) -> None:
        """Send the claimed rows and record their outcomes."""
        if not claimed:
            return
        batched: dict[str, list[Claimed]] = {}
        singles: list[Claimed] = []
        for item in claimed:
            if hasattr(self.senders[item.kind], "send_batch"):
                batched.setdefault(item.kind, []).append(item)
            else:
                singles.append(item)
        outcomes = list(self._pool.map(lambda item: (item, self._send(item)), singles))
        for kind, items in batched.items():
            outcomes.extend(zip(items, self._send_batch(kind, items), strict=True))
        done_at = self._clock.now()
        self._writer.submit(
            lambda c: service.record(c, self._anchored(c, outcomes, done_at), done_at)
        ).result()
        _log_outcomes(outcomes, batched={i.id for items in batched.values() for i in items})

    def _send_batch(self, kind: str, items: list[Claimed]) -> list[Outcome]:
        sender = self.senders[kind]
        assert hasattr(sender, "send_batch")
        try:
            outcomes = sender.send_batch(items, self._clock.now())
        except Exception as exc:
            log.exception("batch sender for %s failed", kind)
            return [self._internal_error(item, exc) for item in items]
        assert len(outcomes) == len(items), "a batch sender returns one outcome per row"
        return outcomes

    def _send(self, item: Claimed) -> Outcome:
        sender = self.senders[item.kind]
        assert hasattr(sender, "send")
        try:
            return sender.send(item, self._clock.now())
        except Exception as exc:  # a bug in a sender must not kill the dispatcher
            log.exception("sender for %s failed on #%d", item.kind, item.id)
            return self._internal_error(item, exc)

    def _internal_error(self, item: Claimed, exc: Exception) -> Outcome:
        """A row whose sender raised: tried again on the outbox's backoff (a minute at least),
        and a dead letter once the budget is spent. A row that makes its sender fail every
        time (a bug, or a poison row) was otherwise put back for ever, and never showed among
        the dead letters an operator re-drives once the cause is fixed."""
        now = self._clock.now()
        attempt = item.attempts + 1
        reason = f"internal error: {exc!r}"
        due = next_attempt(attempt, now, None, item.idempotency_key, self._policy)
        if due is None:
            return Outcome("dead", None, f"{reason}; gave up after {attempt} attempts")
        return Outcome("pending", max(due, now + INTERNAL_ERROR_DELAY), reason)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                n = self.run_once()
            except Exception:
                log.exception("dispatching failed; retrying")
                n = 0
            if n == 0:
                self._wake.wait(self._poll)
                self._wake.clear()


def _log_outcomes(outcomes: list[tuple[Claimed, Outcome]], batched: set[int]) -> None:
    """One line per row, except rows of batch senders that were delivered: those are counted per
    destination (a claim of conversions is 2,000 rows; a line each would cost more than sending).
    Retries and dead letters are always logged one by one, with their reasons."""
    delivered: dict[tuple[str, str], int] = {}
    for item, outcome in outcomes:
        if item.id in batched and outcome.status == "delivered":
            key = (item.kind, item.destination)
            delivered[key] = delivered.get(key, 0) + 1
            continue
        log.info(
            "outbox %s %s #%d → %s%s",
            item.kind,
            item.destination,
            item.id,
            outcome.status,
            f" ({outcome.error})" if outcome.error else "",
        )
    for (kind, destination), count in delivered.items():
        log.info("outbox %s %s: %d delivered in one batch", kind, destination, count)
