"""The processor: consumes the log in order, in batches, and writes each batch's state
changes, effects and cursor in one transaction.

Per-profile order follows from reading the whole log in order with one consumer. On
PostgreSQL several `leadloop worker` processes may run; one holds an advisory lock and
consumes, the others wait to take over (docs/decisions/0001-concurrency.md).

On SQLite the processor decides the next batch while the writer commits the previous one
(`step`): a batch's writes are about half its time, and SQLite's writer needs no interpreter
lock while it works (`storage.bulk`). The next batch's reads may then predate the previous
commit; `log.overlap` tells whether it read anything the previous batch writes, and if so it
is decided again after that commit. Each batch still commits its rows and the cursor in one
transaction, in log order (docs/decisions/0004-pipelined-processor.md).

An event whose decision (or write) fails every time is parked rather than retried for ever:
after `park.STRIKES` failures in a row at one position, the batch is taken apart until the
event that fails alone is found; it is recorded in `parked_events` in the transaction that
moves the cursor past it (docs/decisions/0006-parked-events.md). When parking stops being
rare (`log.breaker`), the processor holds at the failing event instead, retrying it in place
until it processes or an operator has it parked.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Literal

from leadloop.clock import Clock
from leadloop.errors import StorageError
from leadloop.identity import decide
from leadloop.identity.model import Profile
from leadloop.identity.service import IdentityBatch
from leadloop.log import park, store
from leadloop.log.batch import Batch, Conn, Processed, Stage
from leadloop.log.breaker import Breaker, Limits, sender_of
from leadloop.log.isolation import Isolation
from leadloop.log.model import Event
from leadloop.log.overlap import depends_on
from leadloop.log.park import CursorMoved
from leadloop.log.writer import Writer
from leadloop.storage.link import Link

log = logging.getLogger("leadloop.processor")
CURSOR = "processor"
_LEADER_LOCK = 724138


def _take_lead(conn: Conn) -> bool:
    """Whether this connection may consume the log: on PostgreSQL, once it holds the leader
    lock (released with its session)."""
    if conn.dialect != "postgres":
        return True
    return bool(conn.execute("SELECT pg_try_advisory_lock(?)", (_LEADER_LOCK,))[0][0])


class ErasedMeanwhile(Exception):
    """An erasure committed after the batch began to read: written, it could put the erased
    person back. The batch is dropped and its events read again from the committed cursor."""


@dataclass
class _InFlight:
    """A batch handed to the writer and not yet known to be committed."""

    future: Future[None]
    batch: Batch
    after: str
    """The log position after its last event: where the next batch starts reading."""
    events: int
    start: str
    """The log position it was read from."""
    first: int
    """The `seq` of its first event."""


Redriven = Literal["processed", "failed", "gone", "missing"]


class Processor:
    def __init__(
        self,
        connect: Callable[[], Conn],
        writer: Writer,
        clock: Clock,
        stages: Sequence[Stage] = (),
        *,
        batch_size: int = 1000,
        default_region: str | None = None,
        pipeline: bool = True,
        limits: Limits | None = None,
    ) -> None:
        """`pipeline`: on SQLite, decide the next batch while the previous one is written
        (False waits for every commit, as on PostgreSQL)."""
        self._connect = connect
        self._writer = writer
        self._clock = clock
        self._stages = list(stages)
        self._batch_size = batch_size
        self._default_region = default_region
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._conn: Conn | None = None
        self.processed = 0
        self._idle = False
        """Written by the processor's thread only (a plain store: the hot path pays no lock)."""
        self._leading = False
        """Whether this processor holds the lead (written by its thread only)."""
        self._jobs: list[Callable[[Conn], None]] = []
        self.on_effects: Callable[[], None] | None = None
        """Called after a batch that queued effects is committed (wakes the dispatcher)."""
        self._jobs_lock = threading.Lock()
        self._pipeline = pipeline
        self._in_flight: _InFlight | None = None
        self.redecided = 0
        """Batches decided a second time because the batch before them, still being written,
        touched something they read (`log.overlap`), or an erasure committed meanwhile."""
        self.retry_delay = 1.0
        """Seconds between a failed batch and the next attempt (a test seam)."""
        self._isolation = Isolation()
        self._failed_from: str | None = None
        """Where the batch being decided or written was read from, for `_failed`."""
        self._failed_size = 0
        self._failed_first = 0
        """The `seq` of its first event: which one failed, when it was read alone."""
        self._culprit: int | None = None
        """The index, in its batch, of the event whose decision raised last."""
        self.breaker = Breaker(limits or Limits())
        self._held: park.Hold | None = None
        """The event this processor holds at rather than parking it (`log.breaker`)."""
        self.hold_delay_cap = 30.0
        """The longest wait between two attempts at a held event (a test seam)."""
        self._poke = threading.Event()
        """Ends the wait between two attempts at a held event (an operator asked to park it)."""

    def is_idle(self) -> bool:
        """Whether the processor last found the log caught up, with no batch in flight and
        no job waiting, or stands by while another process leads. A lag of 0 alone does not
        tell: an erasure may have deleted every event of a batch not dropped yet."""
        with self._jobs_lock:
            return self._idle and not self._jobs

    def idle_here(self) -> bool | None:
        """`is_idle()` for a processor that leads; None while it stands by (or before it
        starts): the batches in flight are then another process's, which this one cannot see,
        so "idle" would be a guess."""
        return self.is_idle() if self._leading else None

    def request(self, job: Callable[[Conn], None]) -> None:
        """Run `job(read_connection)` on the processor's thread between two batches (e.g. a
        chunk of a rescore), so it never interleaves with event processing. A job that asks
        for another runs it in the next round, after the next batch."""
        self.request_later(job)
        self._poke.set()  # holding, it would otherwise wait up to `hold_delay_cap` first

    def request_later(self, job: Callable[[Conn], None]) -> None:
        """`request`, for a job asking for its own next part (a segment sweep's next chunk):
        while the processor holds at a failing event it runs at the next attempt, not at once,
        or each part would retry the held event (nothing behind it is processed meanwhile)."""
        with self._jobs_lock:
            self._jobs.append(job)
        self._wake.set()

    def _run_jobs(self, conn: Conn) -> None:
        with self._jobs_lock:
            jobs, self._jobs = self._jobs, []
        if jobs:
            # A job reads what the processor has committed, all of it. A failed write is only
            # logged here (its batch is decided again by the next step): raised, it would end
            # the thread and lose the jobs just taken, and the requests waiting on them.
            self._settle_quietly()
        for job in jobs:
            try:
                job(conn)
            except Exception:
                log.exception("a processor job failed")

    def set_stages(self, stages: Sequence[Stage]) -> None:
        self._stages = list(stages)

    @property
    def stages(self) -> list[Stage]:
        return list(self._stages)

    def wake(self) -> None:
        self._wake.set()

    @property
    def holding(self) -> bool:
        """Whether this processor holds at a failing event rather than parking it."""
        return self._held is not None

    def poke(self) -> None:
        """Try the held event again now (`park.request_park` may have asked to park it)."""
        self._poke.set()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="leadloop-processor", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        self._poke.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None

    def _run(self) -> None:
        # Opened again whenever the database drops it (a restart, a failover); the leader lock
        # went with the old session, so it is taken again, or waited for if another worker
        # took over meanwhile.
        link: Link[Conn] = Link(self._connect)
        leading: Conn | None = None
        try:
            while not self._stop.is_set():
                try:
                    conn = link.get()
                    if conn is not leading and not _take_lead(conn):
                        self._idle = True  # standing by: the leader's lag is all there is
                        self._leading = False
                        self._stop.wait(1.0)
                        continue
                except StorageError as exc:
                    log.warning("no connection to the database (%s); retrying", exc)
                    self._stop.wait(1.0)
                    continue
                leading = conn
                # Before anything is read: an "idle" left from the last pass (or from standing
                # by) would hide a batch read from here on.
                self._idle = False
                self._leading = True
                self._run_jobs(conn)
                try:
                    n = self.step(conn)
                except Exception as exc:
                    self._recover(exc)
                    self._pause()
                    continue
                if n == 0 and not self._jobs:
                    self._idle = True
                    self._wake.wait(0.2)
                    self._wake.clear()
        finally:
            self._settle_quietly()
            link.close()

    def _pause(self) -> None:
        """Wait before the next attempt: while holding, twice as long after each failure, up to
        `hold_delay_cap` (the event may fail for hours, until a fix is deployed)."""
        if self._held is None:
            self._stop.wait(self.retry_delay)
            return
        tries = max(0, self._isolation.alone - park.STRIKES)
        self._poke.wait(min(self.hold_delay_cap, self.retry_delay * 2 ** min(tries, 16)))
        self._poke.clear()

    def _recover(self, exc: Exception) -> None:
        """After a failed step, wait for the batch still in flight. If its write failed too,
        that is the failure that counts: the cursor stays before it, and the batch decided on
        top of it is read again only once it is written."""
        try:
            self.drain()
        except Exception as earlier:
            log.warning(
                "a step failed (%s) while the batch before it was written, which failed too", exc
            )
            exc = earlier
        self._failed(exc)

    def _failed(self, exc: Exception) -> None:
        """Count a failed `step` against the position its batch was read from: after
        `park.STRIKES` deterministic ones in a row, the next steps take the batch apart."""
        at = self._failed_from
        if park.transient(exc) or at is None:
            log.warning("processing a batch failed (%s); retrying", exc, exc_info=exc)
            return
        in_a_row = self._isolation.failed(
            at, self._failed_size, self._culprit, exc, self._failed_first
        )
        log.error(
            "processing a batch of %d event(s) from log position %s failed (%d time(s) in a "
            "row); retrying",
            self._failed_size,
            at,
            in_a_row,
            exc_info=exc,
        )

    def _settle_quietly(self) -> None:
        """Wait for a batch still in flight (after a failure, or at stop); a failed write is
        logged, and its events are read again from the committed cursor next time."""
        try:
            self.drain()
        except Exception:
            log.exception("writing a processed batch failed; it will be processed again")

    def run_once(self, conn: Conn) -> int:
        """Process one batch and wait for its commit; return how many events it held (0:
        caught up). For tools and tests that look at the database right after."""
        n = self.step(conn)
        self.drain()
        return n

    def step(self, conn: Conn) -> int:
        """Process one batch and hand it to the writer; return how many events it held (0:
        caught up, and everything committed). Pipelined (SQLite), it returns without waiting
        for the commit, which the next call waits for after deciding its own batch."""
        if self._isolation.active:
            return self._isolate(conn)
        pipelined = self._pipeline and conn.dialect == "sqlite"
        if not pipelined:
            self.drain()
        flight = self._in_flight
        position = flight.after if flight is not None else store.get_cursor(conn, CURSOR)
        self._failed_from = None
        # The epoch comes in the same snapshot as the events, before the batch reads anything
        # else; the write checks it again.
        events, after, epoch = store.read_after(conn, position, self._batch_size)
        if not events:
            if self.drain() or flight is None:
                return 0
            return flight.events  # dropped for an erasure: not caught up, read them again
        self._failed_from, self._failed_size = position, len(events)
        self._failed_first = events[0].seq
        batch = self.process(conn, events, position)
        batch.erasure_epoch = epoch
        if flight is not None:
            try:
                committed = self.drain()
            except BaseException:
                self._discard(batch)  # decided on top of a write that did not happen
                raise
            if not committed:  # an erasure came first: both are read again from the cursor
                self._discard(batch)
                return len(events)
            if depends_on(batch, flight.batch):
                self._discard(batch)
                self.redecided += 1
                batch = self.process(conn, events, position)
                batch.erasure_epoch = epoch
        future = self._writer.submit(self._write(batch, position, after))
        self._in_flight = _InFlight(future, batch, after, len(events), position, events[0].seq)
        if not pipelined:
            self.drain()
        return len(events)

    def _isolate(self, conn: Conn) -> int:
        """One step of taking a failing batch apart (`log.isolation`), each part written before
        the next is read; an event that failed alone `park.STRIKES` times is parked."""
        isolation = self._isolation
        self.drain()
        position = store.get_cursor(conn, CURSOR)
        if position != isolation.position:  # moved by someone else (a replay, another consumer)
            isolation.clear()
            self._held = None
            return 1  # not caught up: the next step reads from the cursor
        if isolation.budget == 0 and isolation.failures:
            log.warning(
                "the batch from log position %s failed %d times in a row; processing it in "
                "parts to find the event that fails",
                position,
                isolation.failures,
            )
        limit = isolation.part(self._batch_size)
        self._failed_from = None
        events, after, epoch = store.read_after(conn, position, limit or 1)
        if not events:
            isolation.clear()
            return 0
        if limit == 0 and not isolation.met(events[0].seq):
            limit = 1  # the event that failed is gone (erased): this one has not failed yet
        if limit == 0 and self._may_park(conn, events[0], position):
            return self._park(events[0], position, after)
        self._failed_from, self._failed_size = position, len(events)
        self._failed_first = events[0].seq
        batch = self.process(conn, events, position)
        batch.erasure_epoch = epoch
        future = self._writer.submit(self._write(batch, position, after))
        self._in_flight = _InFlight(future, batch, after, len(events), position, events[0].seq)
        if self.drain():  # else an erasure came first: read again
            isolation.part_written(after, len(events))
            if self._held is not None:
                self._resume()
        return len(events)

    def _may_park(self, conn: Conn, event: Event, position: str) -> bool:
        """Whether to park `event`, which failed alone `park.STRIKES` times; else the processor
        holds at it (`log.breaker`) and tries it again, alone, until it processes or an
        operator asks for it to be parked (`park.request_park`)."""
        error = self._isolation.error or RuntimeError("unknown failure")
        held = self._held
        if held is None:
            # Taken before a restart, or by the processor that led before this one: the parks
            # in a row that led to it were counted in that one's memory.
            held = self._held = park.held(conn, CURSOR)
            if held is not None and held.seq == event.seq:
                log.critical(
                    "processing still holds at event %s (log seq %d), as it did before this "
                    "processor took over: %s: %s (%s). Deploy a fix, or `leadloop events "
                    "park-current` if this one event is at fault",
                    held.message_id,
                    held.seq,
                    held.error,
                    held.message,
                    held.reason,
                )
        if held is not None and held.seq == event.seq:
            now_held = park.held(conn, CURSOR)
            if now_held is None or now_held.park_requested_at is None:
                return False
            log.warning("parking the held event %s, as an operator asked", event.message_id)
            return True
        recent = park.parked_within(conn, event.seq, self.breaker.limits.window)
        reason = self.breaker.verdict(park.error_name(error), sender_of(event), recent)
        if reason is None:
            return True
        _name, message, _trace = park.describe(error)
        hold = park.Hold(
            at=position,
            seq=event.seq,
            workspace_id=event.workspace_id,
            message_id=event.message_id,
            reason=reason,
            error=park.error_name(error),
            message=message,
            parked_recently=len(recent),
            since=self._clock.now(),
        )
        self._writer.submit(lambda w: park.hold(w, hold)).result()
        self._held = hold
        log.critical(
            "processing holds at event %s (workspace %s, log seq %d): it fails every time "
            "(%s: %s), and parking it too would not be rare any more (%s). It is retried in "
            "place until it processes: deploy a fix and processing resumes in log order by "
            "itself; if this one event is at fault, `leadloop events park-current` parks it. "
            "`leadloop events parked` lists the events parked before it",
            event.message_id,
            event.workspace_id,
            event.seq,
            hold.error,
            message,
            reason,
        )
        return False

    def _resume(self) -> None:
        held, self._held = self._held, None
        assert held is not None
        self._writer.submit(park.release).result()
        log.warning(
            "the held event %s (log seq %d) was processed: processing resumes",
            held.message_id,
            held.seq,
        )

    def _park(self, event: Event, position: str, after: str) -> int:
        """Move the cursor past `event` and record it as parked, in one transaction: both
        happen or neither."""
        error = self._isolation.error or RuntimeError("unknown failure")
        attempts = self._isolation.alone
        now = self._clock.now()

        def write(wconn: Conn) -> int:
            if store.get_cursor(wconn, CURSOR) != position:
                raise CursorMoved("the processor cursor moved: another consumer is running")
            parked_id = park.park(wconn, event, error, attempts, now)
            store.set_cursor(wconn, CURSOR, after)
            park.release(wconn)  # the event held, if it was, is held no more
            return parked_id

        parked_id = self._writer.submit(write).result()
        self._isolation.clear()
        self._held = None
        self.breaker.parked(park.error_name(error), sender_of(event))
        self.processed += 1
        log.error(
            "parked event %s (workspace %s, log seq %d, %s) after %d failures alone: %s: %s; "
            "processing goes on after it (`leadloop events parked`, parked id %d)",
            event.message_id,
            event.workspace_id,
            event.seq,
            event.event or event.type,
            attempts,
            type(error).__name__,
            error,
            parked_id,
        )
        return 1

    def drain(self) -> bool:
        """Wait until the batch handed to the writer, if any, is committed (raises its error).
        False when it was dropped because an erasure committed while it was decided: its
        events are read again from the committed cursor by the next step."""
        flight, self._in_flight = self._in_flight, None
        if flight is None:
            return True
        try:
            flight.future.result()
        except ErasedMeanwhile:
            self._discard(flight.batch)
            self.redecided += 1
            log.info("an erasure committed while a batch was decided; deciding it again")
            return False
        except BaseException:
            self._discard(flight.batch)  # it will be decided again from the committed cursor
            self._failed_from, self._failed_size = flight.start, flight.events
            self._failed_first = flight.first
            self._culprit = None  # a write failure: which event caused it is not known
            raise
        if flight.batch.outbox and self.on_effects is not None:
            self.on_effects()  # new outbox rows: the dispatcher has work
        self.processed += flight.events
        self._isolation.written(flight.start)
        if self.breaker.in_a_row:
            self.breaker.processed()
        return True

    def _write(self, batch: Batch, position: str, after: str) -> Callable[[Conn], None]:
        def write(wconn: Conn) -> None:
            # Guard against a second consumer: the cursor must not have moved under us (and,
            # pipelined, the batch before this one must have committed).
            # First, before writing anything (one statement: each costs the thread a wait for
            # the interpreter lock): the cursor, and the erasure epoch, which an erasure that
            # starts from here on waits for; one committed since the batch began to read
            # means deciding it again.
            cursor, epoch = store.cursor_and_epoch(wconn, CURSOR)
            if cursor != position:
                raise CursorMoved("the processor cursor moved: another consumer is running")
            if epoch != batch.erasure_epoch:
                raise ErasedMeanwhile()
            self._flush(batch, wconn)
            store.set_cursor(wconn, CURSOR, after)

        return write

    def _flush(self, batch: Batch, wconn: Conn) -> None:
        batch.identity.flush(wconn, batch.now)
        for stage in self._stages:
            stage.flush(batch, wconn)
        batch.flush(wconn)

    def redrive(self, conn: Conn, parked_id: int) -> Redriven:
        """Process a parked event again, alone, as a job on the processor's thread (`request`):
        "processed" deletes its row in the transaction that writes what it decided; "failed"
        keeps the row, with one attempt more and the new reason. A transient failure raises
        and changes nothing. It comes after every event processed meanwhile, including those
        that followed it in the log."""
        parked = park.get(conn, parked_id)
        if parked is None:
            return "missing"
        event, epoch = store.read_seq(conn, parked.seq)
        if event is None:  # erased since: nothing is left to process
            self._writer.submit(lambda w: park.remove(w, parked_id)).result()
            return "gone"
        try:
            batch = self.process(conn, [event], store.get_cursor(conn, CURSOR))
        except Exception as exc:
            return self._failed_again(parked_id, event, exc)
        batch.erasure_epoch = epoch
        try:
            self._writer.submit(self._redriven(batch, parked_id)).result()
        except ErasedMeanwhile:
            self._discard(batch)
            return self.redrive(conn, parked_id)  # read again: the event may be gone
        except Exception as exc:
            self._discard(batch)
            return self._failed_again(parked_id, event, exc)
        if batch.outbox and self.on_effects is not None:
            self.on_effects()
        log.info("re-driven parked event %d (%s) was processed", parked_id, event.message_id)
        return "processed"

    def _failed_again(self, parked_id: int, event: Event, exc: Exception) -> Redriven:
        if park.transient(exc):
            raise exc
        now = self._clock.now()
        self._writer.submit(lambda w: park.failed_again(w, parked_id, exc, now)).result()
        log.error(
            "re-driven parked event %d (%s) failed again: %s: %s",
            parked_id,
            event.message_id,
            type(exc).__name__,
            exc,
        )
        return "failed"

    def _redriven(self, batch: Batch, parked_id: int) -> Callable[[Conn], None]:
        def write(wconn: Conn) -> None:
            _cursor, epoch = store.cursor_and_epoch(wconn, CURSOR)
            if epoch != batch.erasure_epoch:
                raise ErasedMeanwhile()
            self._flush(batch, wconn)
            park.remove(wconn, parked_id)

        return write

    def _discard(self, batch: Batch) -> None:
        for stage in self._stages:
            discard = getattr(stage, "discard", None)
            if discard is not None:
                discard(batch)

    def process(self, conn: Conn, events: list[Event], position: str | None = None) -> Batch:
        """Decide `events`, read after log `position` (what is processed before them: a stage
        that replays a profile's history reads up to there, `Batch.processed`)."""
        identity = IdentityBatch(conn=conn, default_region=self._default_region)
        identity.prefetch(events)
        batch = Batch(identity=identity, now=self._clock.now())
        if position is not None:
            batch.processed = Processed(position, frozenset(e.seq for e in events))
        self._culprit = None
        try:
            for stage in self._stages:
                prefetch = getattr(stage, "prefetch", None)
                if prefetch is not None:
                    prefetch(batch, events)
            self._decide(batch, identity, events)
        except BaseException:
            self._discard(batch)  # what a stage kept for this batch: it is not written
            raise
        return batch

    def _decide(self, batch: Batch, identity: IdentityBatch, events: list[Event]) -> None:
        if not events:
            return
        event = events[0]
        try:  # free until something raises: the hot path pays nothing for it
            for event in events:
                if event.type == "internal":
                    key, due = event.properties.get("timerKey"), event.properties.get("dueAt")
                    if isinstance(key, str) and isinstance(due, int | float):
                        batch.settle_fired(event.workspace_id, key, float(due))
                found = self._profile_for(identity, event)
                if found is None:
                    continue
                # The engine's own events (timers, emitted events) are not the person's doing:
                # most leave the profile's row untouched; a journey's update is applied here,
                # before the stages, so scoring reads its traits at its own event.
                if event.type == "internal":
                    profile = decide.apply_engine_event(found, event)
                else:
                    profile = decide.apply_event(found, event)
                identity.group(event, profile)
                for stage in self._stages:
                    profile = stage.handle(batch, event, profile)
                identity.record(
                    event, profile, changed=profile is not found or event.type != "internal"
                )
        except BaseException:
            # The event that raised: the events before it can go as one batch (`_isolate`).
            self._culprit = next((i for i, e in enumerate(events) if e is event), None)
            raise

    def _profile_for(self, identity: IdentityBatch, event: Event) -> Profile | None:
        if event.type != "internal":
            return identity.resolve(event)
        pid = event.body.get("profileId")
        if not isinstance(pid, str):
            return None
        return identity.live_profile(event.workspace_id, pid)
