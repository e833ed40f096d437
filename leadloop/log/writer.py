"""The one writer: a thread that owns the write connection and group-commits.

Requests hand their rows over and wait on a future; the writer drains everything that is
waiting (up to `max_batch` events), inserts it in one transaction, commits once, then
completes every future. So a 200 means durable, and a thousand small requests cost a
handful of fsyncs rather than a thousand (docs/decisions/0003-group-commit.md).

Other write jobs (the processor's batch, timer and outbox claims) run on the same
thread, each in its own transaction: SQLite has one writer at a time anyway, and this way
no request ever waits on a lock with a timeout.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from typing import Any, TypeVar

from leadloop.errors import Overloaded, StorageError
from leadloop.ingest.model import Accepted
from leadloop.storage.db import PostgresConnection, SqliteConnection
from leadloop.storage.link import Link

log = logging.getLogger("leadloop.writer")
T = TypeVar("T")
Conn = SqliteConnection | PostgresConnection

INSERT_EVENT = (
    "INSERT INTO events (workspace_id, message_id, type, event, user_id, anonymous_id, "
    "group_id, previous_id, ts, received_at, body) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
    "ON CONFLICT (workspace_id, message_id) DO NOTHING"
)


def event_row(workspace_id: str, m: Accepted) -> tuple[Any, ...]:
    return (
        workspace_id,
        m.message_id,
        m.type,
        m.event,
        m.user_id,
        m.anonymous_id,
        m.group_id,
        m.previous_id,
        m.timestamp,
        m.received_at,
        m.body.decode(),
    )


class _Append:
    __slots__ = ("future", "rows")

    def __init__(self, rows: list[tuple[Any, ...]]) -> None:
        self.rows = rows
        self.future: Future[None] = Future()


class _Job:
    __slots__ = ("fn", "future")

    def __init__(self, fn: Callable[[Conn], Any]) -> None:
        self.fn = fn
        self.future: Future[Any] = Future()


class Writer:
    def __init__(
        self,
        connect: Callable[[], Conn],
        *,
        max_batch: int = 5000,
        max_pending: int = 50_000,
        on_commit: Callable[[], None] | None = None,
    ) -> None:
        self._connect = connect
        self._queue: queue.SimpleQueue[_Append | _Job | None] = queue.SimpleQueue()
        self._max_batch = max_batch
        self._max_pending = max_pending
        self._pending = 0
        self._lock = threading.Lock()
        self._on_commit = on_commit
        self._thread: threading.Thread | None = None
        self._stopped = False

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="leadloop-writer", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._thread is None:
            return
        with self._lock:  # after the sentinel no item is queued: each one queued is taken
            self._stopped = True
            self._queue.put(None)
        self._thread.join(timeout=30)
        self._thread = None

    @property
    def pending(self) -> int:
        return self._pending

    def append(self, workspace_id: str, messages: Sequence[Accepted]) -> Future[None]:
        """Queue messages for the next group commit; raise Overloaded instead of queueing
        without bound (the caller answers 429 with Retry-After)."""
        n = len(messages)
        with self._lock:
            self._check_room(n)
            self._pending += n
        item = _Append([event_row(workspace_id, m) for m in messages])
        with self._lock:
            if self._stopped:  # stopped while the rows were built
                self._pending -= n
                raise Overloaded(retry_after=2)
            self._queue.put(item)
        return item.future

    def reserve(self, n: int) -> None:
        """Count `n` messages that a job will write (one that filters them first) as pending,
        raising Overloaded where `append` would; `release` them once the job is done."""
        with self._lock:
            self._check_room(n)
            self._pending += n

    def release(self, n: int) -> None:
        with self._lock:
            self._pending -= n

    def _check_room(self, n: int) -> None:
        if self._stopped:
            raise Overloaded(retry_after=2)
        if self._pending + n > self._max_pending and self._pending > 0:
            raise Overloaded(retry_after=1)

    def submit(self, fn: Callable[[Conn], T]) -> Future[T]:
        """Run `fn(conn)` on the writer thread, inside one transaction. Raises StorageError
        once the writer is stopped: no thread would take the job, and its caller would wait
        for ever."""
        job = _Job(fn)
        with self._lock:
            if self._stopped:
                raise StorageError("the writer is stopped: the engine is shutting down")
            self._queue.put(job)
        return job.future

    def _run(self) -> None:
        # Opened again whenever the database drops it: a dead session kept for ever failed
        # every request and every batch until the process was restarted.
        conn: Link[Conn] = Link(self._connect)
        try:
            while True:
                item = self._queue.get()
                if item is None:
                    return
                if not self._take(item):
                    continue
                if isinstance(item, _Job):
                    self._run_job(conn, item)
                    continue
                batch = [item]
                count = len(item.rows)
                held: _Append | _Job | None = None
                stop = False
                while count < self._max_batch:
                    try:
                        nxt = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if nxt is None:
                        stop = True
                        break
                    if not self._take(nxt):
                        continue
                    if isinstance(nxt, _Job):
                        held = nxt
                        break
                    batch.append(nxt)
                    count += len(nxt.rows)
                self._commit_appends(conn, batch, count)
                if isinstance(held, _Job):
                    self._run_job(conn, held)
                if stop:
                    return
        finally:
            conn.close()

    def _take(self, item: _Append | _Job) -> bool:
        """Start the item's future; False when its caller cancelled it while it was queued
        (`asyncio.wrap_future` does when the awaiting task is cancelled), and it is dropped:
        nothing was acknowledged. A running future can no longer be cancelled, so completing
        it cannot raise here: raised, that ended this thread, and the engine waited for ever."""
        if item.future.set_running_or_notify_cancel():
            return True
        if isinstance(item, _Append):
            self.release(len(item.rows))
        return False

    def _commit_appends(self, conn: Link[Conn], batch: list[_Append], count: int) -> None:
        try:
            errors = self._insert(conn.get(), batch, count)
        except StorageError as exc:  # no connection: every request is refused (503)
            errors = [exc] * len(batch)
        with self._lock:
            self._pending -= count
        for item, error in zip(batch, errors, strict=True):
            if error is None:
                item.future.set_result(None)
            else:
                item.future.set_exception(error)
        if self._on_commit is not None and any(error is None for error in errors):
            self._on_commit()

    def _insert(self, conn: Conn, batch: list[_Append], count: int) -> list[BaseException | None]:
        """Each request's error, or None: the group in one transaction; if the database refuses
        it, each request in a transaction of its own, so that rows one request brought (a value
        a backend cannot hold that validation let through) fail that request alone rather than
        every request that happened to share its commit. A fault of the database itself (disk
        full, connection lost) fails them all again, one by one."""
        try:
            with conn.transaction():
                conn.executemany(INSERT_EVENT, [r for item in batch for r in item.rows], bulk=True)
            return [None] * len(batch)
        except Exception as exc:
            if len(batch) == 1:
                log.exception("commit of %d events failed", count)
                return [exc]
            log.warning(
                "group commit of %d requests (%d events) failed: %s; committing each alone",
                len(batch),
                count,
                exc,
            )
        except BaseException as exc:  # not the rows' doing: reported to every waiting request
            log.exception("group commit of %d events failed", count)
            return [exc] * len(batch)
        errors: list[BaseException | None] = []
        for item in batch:
            try:
                with conn.transaction():
                    conn.executemany(INSERT_EVENT, item.rows, bulk=True)
                errors.append(None)
            except BaseException as exc:
                log.exception("commit of one request's %d events failed", len(item.rows))
                errors.append(exc)
        return errors

    def _run_job(self, link: Link[Conn], job: _Job) -> None:
        try:
            conn = link.get()
            with conn.transaction():
                result = job.fn(conn)
        except BaseException as exc:
            job.future.set_exception(exc)
        else:
            # Jobs wake whatever they feed themselves; `on_commit` is only for new log rows
            # from ingestion (a job waking every loop would make them wake each other forever).
            job.future.set_result(result)
