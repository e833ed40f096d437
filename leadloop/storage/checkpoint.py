"""WAL checkpoints on their own thread (embedded SQLite only).

SQLite's automatic checkpoint runs inside whichever commit pushes the WAL past its limit:
the writer thread then copies pages into the database file and syncs it while every request
and the processor wait on that commit. Measured on the journeys benchmark, commits took a third
of a wake-up's time, growing with the database. Here a second connection checkpoints in
PASSIVE mode, which never takes the write lock, so copying and syncing overlap with writing;
the writer keeps a much higher automatic limit only as a backstop should this thread lag.
"""

from __future__ import annotations

from collections.abc import Callable

from leadloop.storage.db import SqliteConnection
from leadloop.storage.upkeep import Upkeep

WRITER_BACKSTOP_PAGES = 16_384
"""The writer's own automatic checkpoint limit (64 MiB of 4 KiB pages), reached only when
the background checkpoints fall behind."""


def hand_off_checkpoints(conn: SqliteConnection) -> None:
    """Configure the writer's connection: automatic checkpoints only as a backstop."""
    conn.execute(f"PRAGMA wal_autocheckpoint={WRITER_BACKSTOP_PAGES}")


def checkpoint(conn: SqliteConnection) -> None:
    """Copy what the WAL holds into the database file, as far as readers allow, without
    waiting for or blocking the writer."""
    conn.execute("PRAGMA wal_checkpoint(PASSIVE)")


def checkpointer(
    connect: Callable[[], SqliteConnection], interval: float = 0.2
) -> Upkeep[SqliteConnection]:
    return Upkeep("leadloop-checkpoint", connect, checkpoint, interval)
