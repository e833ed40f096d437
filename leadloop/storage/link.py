"""A long-lived connection that outlives the session under it.

A PostgreSQL restart or failover (or a proxy closing idle sessions) ends every session; a
thread that kept its connection for ever then failed every call for the rest of the process's
life. A `Link` opens a new connection once the old one is broken. While the database stays
unreachable it tries at most once per `retry` seconds and otherwise refuses at once with
`StorageError`, so callers fail fast (ingest answers 503) instead of each waiting on a connect.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Generic, Protocol, TypeVar

from leadloop.clock import monotonic
from leadloop.errors import StorageError

log = logging.getLogger("leadloop.storage")


class Session(Protocol):
    """What a `Link` needs of a connection (both backends' connections are one)."""

    @property
    def broken(self) -> bool: ...

    def close(self) -> None: ...


C = TypeVar("C", bound=Session)


class Link(Generic[C]):
    def __init__(self, connect: Callable[[], C], *, retry: float = 1.0) -> None:
        self._connect = connect
        self._retry = retry
        self._conn: C | None = None
        self._next_try = 0.0
        self._lost = False

    def get(self) -> C:
        """The open connection, or a new one in place of a broken one (raises StorageError
        while none can be opened)."""
        if self._conn is not None and not self._conn.broken:
            return self._conn
        if self._conn is not None:
            log.warning("the database dropped a connection; opening a new one")
            self._lost = True
            self._drop()
        now = monotonic()
        if now < self._next_try:
            raise StorageError("the database is unreachable; reconnecting")
        try:
            self._conn = self._connect()
        except StorageError:
            self._next_try = now + self._retry  # only failed attempts wait
            raise
        if self._lost:
            log.warning("connected to the database again")
            self._lost = False
        return self._conn

    def close(self) -> None:
        self._drop()

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is None:
            return
        try:
            conn.close()
        except Exception:  # the session is gone already; nothing is left to release
            log.debug("closing a dropped connection failed", exc_info=True)
