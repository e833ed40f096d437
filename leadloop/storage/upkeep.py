"""A storage chore repeated on its own thread and connection (WAL checkpoints on SQLite,
planner statistics on PostgreSQL), so no request, batch or commit ever waits for it."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Generic, TypeVar

from leadloop.storage.link import Link, Session

log = logging.getLogger("leadloop.upkeep")


C = TypeVar("C", bound=Session)


class Upkeep(Generic[C]):
    def __init__(
        self, name: str, connect: Callable[[], C], chore: Callable[[C], object], interval: float
    ) -> None:
        self._name = name
        self._connect = connect
        self._chore = chore
        self._interval = interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None

    def _run(self) -> None:
        link = Link(self._connect)  # opened again after the database dropped it
        try:
            while not self._stop.wait(self._interval):
                try:
                    self._chore(link.get())
                except Exception:
                    log.exception("%s failed; trying again in %gs", self._name, self._interval)
        finally:
            link.close()
