"""Durable timers: rows with a due time. When one is due it becomes an internal event in
the log (in the same transaction as its deletion), so the processor handles a timer
exactly like a click: in order, once, and never racing with it."""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Callable
from typing import Any

import msgspec

from leadloop.clock import Clock
from leadloop.log.batch import Conn
from leadloop.log.writer import Writer

log = logging.getLogger("leadloop.timers")
_decoder = msgspec.json.Decoder(dict[str, Any])
_encoder = msgspec.json.Encoder()


def fire_due(conn: Conn, now: float, limit: int = 5000) -> int:
    """Turn up to `limit` due timers into log events; run inside a write transaction."""
    if conn.dialect == "sqlite":
        return _fire_sqlite(conn, now, limit)
    rows = conn.execute(
        "SELECT id, workspace_id, key, profile_id, due_at, payload FROM timers "
        "WHERE due_at <= ? ORDER BY due_at, id LIMIT ? FOR UPDATE SKIP LOCKED",
        (now, limit),
    )
    if not rows:
        return 0
    events = []
    for _tid, ws, key, profile_id, due_at, payload in rows:
        data = _decoder.decode(payload)
        body = {
            "type": "internal",
            "event": data.get("name"),
            "profileId": profile_id,
            "properties": {**data.get("properties", {}), "timerKey": key, "dueAt": due_at},
        }
        events.append(
            (
                ws,
                f"timer:{key}:{due_at!r}",
                data.get("name"),
                float(due_at),
                now,
                _encoder.encode(body).decode(),
                profile_id,
            )
        )
    conn.executemany(
        "INSERT INTO events (workspace_id, message_id, type, event, ts, received_at, body, "
        "profile_id) VALUES (?, ?, 'internal', ?, ?, ?, ?, ?) "
        "ON CONFLICT (workspace_id, message_id) DO NOTHING",
        events,
    )
    conn.executemany("DELETE FROM timers WHERE id = ?", [(r[0],) for r in rows])
    return len(rows)


# The same event rows built by SQLite itself: a wake-up of many timers at once (a decay
# window or a journey wait ending for everybody) costs no Python per timer. Only one writer
# exists on SQLite, so the two statements see the same due rows. `dueAt` is written with 17
# digits: SQLite's JSON writes a REAL with 15, a hundredth of a millisecond for epoch seconds,
# and the event's decisions were then made before the timer was due (`journeys.moment`). The
# message id keeps SQLite's own text: ids already in the log must stay the same.
_DUE_SQLITE = "FROM timers WHERE due_at <= ? ORDER BY due_at, id LIMIT ?"
_FIRE_SQLITE = (
    "INSERT INTO events (workspace_id, message_id, type, event, ts, received_at, body, "
    "profile_id) SELECT workspace_id, 'timer:' || key || ':' || due_at, 'internal', "
    "json_extract(payload, '$.name'), due_at, ?, json_object('type', 'internal', 'event', "
    "json_extract(payload, '$.name'), 'profileId', profile_id, 'properties', "
    "json_patch(coalesce(json_extract(payload, '$.properties'), '{}'), "
    "json_object('timerKey', key, 'dueAt', json(printf('%!.17g', due_at))))), profile_id "
    f"{_DUE_SQLITE} ON CONFLICT (workspace_id, message_id) DO NOTHING"
)


def _fire_sqlite(conn: Conn, now: float, limit: int) -> int:
    conn.execute(_FIRE_SQLITE, (now, now, limit))
    conn.execute(f"DELETE FROM timers WHERE id IN (SELECT id {_DUE_SQLITE})", (now, limit))
    return int(conn.execute("SELECT changes()")[0][0])


def next_due(conn: Conn) -> float | None:
    rows = conn.execute("SELECT MIN(due_at) FROM timers")
    return float(rows[0][0]) if rows and rows[0][0] is not None else None


class TimerLoop:
    """Wakes at the next due time (or when told to, e.g. after the manual clock moved)."""

    def __init__(
        self,
        writer: Writer,
        clock: Clock,
        *,
        poll: float = 0.1,
        on_fired: Callable[[], None] | None = None,
    ) -> None:
        self._writer = writer
        self._on_fired = on_fired
        self._clock = clock
        self._poll = poll
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.fired_total = 0
        """Timers fired so far, by the loop or `fire_now`; counted in the writer's transaction,
        so the count has moved by the time a later writer call returns."""

    def wake(self) -> None:
        self._wake.set()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="leadloop-timers", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=30)

    def fire_now(self) -> int:
        total = 0
        while True:
            n = self._writer.submit(functools.partial(self._fire, now=self._clock.now())).result()
            total += n
            if n and self._on_fired is not None:
                self._on_fired()  # the fired timers are events in the log now
            if n == 0:
                return total

    def _fire(self, conn: Conn, *, now: float) -> int:
        n = fire_due(conn, now)
        self.fired_total += n  # only the writer thread writes it
        return n

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.fire_now()
            except Exception:
                log.exception("firing timers failed; retrying")
            self._wake.wait(self._poll)
            self._wake.clear()
