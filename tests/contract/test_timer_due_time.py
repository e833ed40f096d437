"""A fired timer's event carries its exact due time.

The event's `dueAt` is the instant its decisions are made at (`journeys.service.moment`) and
the key that settles the timer's row. SQLite's JSON writes a REAL with 15 significant digits,
which for today's epoch seconds is a hundredth of a millisecond: a due time of
`...123.4561234` came back as `...123.45612`, before the timer was due. A deferred send decided
again there found its frequency cap still full and was deferred to the same instant, under the
same key: that second firing had the first one's message id and was dropped as a duplicate,
and the send never went out.
"""

from __future__ import annotations

from leadloop.journeys.service import moment
from leadloop.log import store
from leadloop.log.timers import fire_due
from leadloop.storage.db import PostgresConnection, SqliteConnection
from leadloop.testing import eventually

DUE = 1_800_000_123.4561234
"""More digits than 15: rounded to 15, it is earlier than itself."""


def test_a_fired_timer_carries_its_exact_due_time(
    conn: SqliteConnection | PostgresConnection,
) -> None:
    with conn.transaction():
        conn.execute(
            "INSERT INTO timers (workspace_id, key, profile_id, due_at, payload) "
            "VALUES (?, ?, ?, ?, ?)",
            ("default", "k1", "p1", DUE, '{"name": "Wake", "properties": {"step": "s1"}}'),
        )
    with conn.transaction():
        assert fire_due(conn, DUE) == 1
    start = "0" if conn.dialect == "sqlite" else "0:0"
    # PostgreSQL's log reader holds back events until no transaction older than theirs is
    # open anywhere on the server (another session, another database: xids are shared), as
    # the processor must; right after the commit it may still see none. It polls; so do we.
    [event] = eventually(lambda: store.read_after(conn, start, 10)[0], timeout=30)
    assert event.properties == {"step": "s1", "timerKey": "k1", "dueAt": DUE}
    assert moment(event) == DUE
    assert event.timestamp == DUE
