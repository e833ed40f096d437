"""WAL checkpoints on their own thread (embedded SQLite only).

SQLite's automatic checkpoint runs inside whichever commit pushes the WAL past its limit:
the writer thread then copies pages into the database file and syncs it while every request
and the processor wait on that commit. Measured on the journeys benchmark, commits took a third
of a wake-up's time, growing with the database. Here a second connection checkpoints in
PASSIVE mode, which never takes the write lock, so copying and syncing overlap with writing;
the writer keeps a much higher automatic limit only as a backstop should this thread lag.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from leadloop.storage.db import SqliteConnection

log = logging.getLogger("leadloop.checkpoint")

WRITER_BACKSTOP_PAGES = 16_384
"""The writer's own automatic checkpoint limit (64 MiB of 4 KiB pages), reached only when
the background checkpoints fall behind."""


def hand_off_checkpoints(conn: SqliteConnection) -> None:
    """Configure the writer's connection: automatic checkpoints only as a backstop."""
    conn.execute(f"PRAGMA wal_autocheckpoint={WRITER_BACKSTOP_PAGES}")


class Checkpointer:
    def __init__(self, connect: Callable[[], SqliteConnection], *, interval: float = 0.2) -> None:
        self._connect = connect
        self._interval = interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="leadloop-checkpoint", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None

    def _run(self) -> None:
        conn = self._connect()
        try:
            while not self._stop.wait(self._interval):
                try:
                    conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
                except Exception:
                    log.exception("WAL checkpoint failed; the writer's backstop still applies")
        finally:
            conn.close()
