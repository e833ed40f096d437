"""`Link`: a connection opened again once the database dropped it."""

from __future__ import annotations

import pytest

from leadloop.errors import StorageError
from leadloop.storage.link import Link


class Session:
    """A connection's two properties a link looks at; `broken` as the database left it."""

    def __init__(self) -> None:
        self.broken = False
        self.closed = False

    def close(self) -> None:
        self.closed = True


class Database:
    def __init__(self) -> None:
        self.up = True
        self.opened: list[Session] = []

    def connect(self) -> Session:
        if not self.up:
            raise StorageError("connection refused")
        self.opened.append(Session())
        return self.opened[-1]


def test_a_dropped_session_is_replaced_at_once() -> None:
    db = Database()
    link = Link(db.connect, retry=3600)
    first = link.get()
    first.broken = True  # a restart, moments after the link first connected
    second = link.get()
    assert second is not first and first.closed and not second.broken


def test_while_the_database_is_away_it_is_asked_once_per_retry() -> None:
    db = Database()
    link = Link(db.connect, retry=3600)
    link.get().broken = True
    db.up = False
    with pytest.raises(StorageError, match="connection refused"):
        link.get()
    db.up = True
    with pytest.raises(StorageError, match="unreachable"):  # refused at once, not asked
        link.get()
    assert len(db.opened) == 1
