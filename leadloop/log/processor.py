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
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass

from leadloop.clock import Clock
from leadloop.errors import StorageError
from leadloop.identity import decide
from leadloop.identity.model import Profile
from leadloop.identity.service import IdentityBatch
from leadloop.log import store
from leadloop.log.batch import Batch, Conn, Stage
from leadloop.log.model import Event
from leadloop.log.overlap import depends_on
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
        rescore), so it never interleaves with event processing."""
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

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="leadloop-processor", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
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
                except Exception:
                    log.exception("processing a batch failed; retrying")
                    self._settle_quietly()
                    self._stop.wait(1.0)
                    continue
                if n == 0 and not self._jobs:
                    self._idle = True
                    self._wake.wait(0.2)
                    self._wake.clear()
        finally:
            self._settle_quietly()
            link.close()

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
        pipelined = self._pipeline and conn.dialect == "sqlite"
        if not pipelined:
            self.drain()
        flight = self._in_flight
        position = flight.after if flight is not None else store.get_cursor(conn, CURSOR)
        # The epoch comes in the same snapshot as the events, before the batch reads anything
        # else; the write checks it again.
        events, after, epoch = store.read_after(conn, position, self._batch_size)
        if not events:
            if self.drain() or flight is None:
                return 0
            return flight.events  # dropped for an erasure: not caught up, read them again
        batch = self.process(conn, events)
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
                batch = self.process(conn, events)
                batch.erasure_epoch = epoch
        future = self._writer.submit(self._write(batch, position, after))
        self._in_flight = _InFlight(future, batch, after, len(events))
        if not pipelined:
            self.drain()
        return len(events)

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
            raise
        if flight.batch.outbox and self.on_effects is not None:
            self.on_effects()  # new outbox rows: the dispatcher has work
        self.processed += flight.events
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
                raise RuntimeError("the processor cursor moved: another consumer is running")
            if epoch != batch.erasure_epoch:
                raise ErasedMeanwhile()
            batch.identity.flush(wconn, batch.now)
            for stage in self._stages:
                stage.flush(batch, wconn)
            batch.flush(wconn)
            store.set_cursor(wconn, CURSOR, after)

        return write

    def _discard(self, batch: Batch) -> None:
        for stage in self._stages:
            discard = getattr(stage, "discard", None)
            if discard is not None:
                discard(batch)

    def process(self, conn: Conn, events: list[Event]) -> Batch:
        identity = IdentityBatch(conn=conn, default_region=self._default_region)
        identity.prefetch(events)
        batch = Batch(identity=identity, now=self._clock.now())
        for stage in self._stages:
            prefetch = getattr(stage, "prefetch", None)
            if prefetch is not None:
                prefetch(batch, events)
        for event in events:
            if event.type == "internal":
                key, due = event.properties.get("timerKey"), event.properties.get("dueAt")
                if isinstance(key, str) and isinstance(due, int | float):
                    batch.settle_fired(event.workspace_id, key, float(due))
            found = self._profile_for(identity, event)
            if found is None:
                continue
            # The engine's own events (timers, emitted events) are not the person's doing:
            # they do not change the CDP profile, so most of them leave its row untouched.
            profile = found if event.type == "internal" else decide.apply_event(found, event)
            identity.group(event, profile)
            for stage in self._stages:
                profile = stage.handle(batch, event, profile)
            identity.record(
                event, profile, changed=profile is not found or event.type != "internal"
            )
        return batch

    def _profile_for(self, identity: IdentityBatch, event: Event) -> Profile | None:
        if event.type != "internal":
            return identity.resolve(event)
        pid = event.body.get("profileId")
        if not isinstance(pid, str):
            return None
        return identity.live_profile(event.workspace_id, pid)
