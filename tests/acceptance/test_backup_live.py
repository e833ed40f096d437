"""`leadloop backup` as an operator runs it: a separate process copying the database of a
`leadloop serve` that clients keep sending events to. Each copy is consistent (SQLite finds
nothing wrong; what it holds processed is what its cursor passed; its log is the start of the
engine's), and the engine loses nothing."""

from __future__ import annotations

import sqlite3
import threading
from contextlib import closing
from pathlib import Path
from typing import Any

from leadloop.log import store
from leadloop.log.processor import CURSOR
from leadloop.storage.db import DatabaseUrl, connect
from leadloop.storage.migrate import pending
from leadloop.testing import ServerProcess, eventually, run_cli

ROOT = Path(__file__).resolve().parents[2]
PLAYBOOK = str(ROOT / "examples" / "playbook.yaml")


def _read(path: Path, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    with closing(sqlite3.connect(path)) as db:
        return db.execute(sql, params).fetchall()


def _check(copy: Path) -> list[tuple[Any, ...]]:
    """The copy's log, once the copy is found consistent."""
    assert _read(copy, "PRAGMA integrity_check") == [("ok",)]
    with closing(connect(DatabaseUrl.parse(f"sqlite:///{copy}"))) as conn:
        assert pending(conn) == []
        cursor = store.processed_seq(conn, CURSOR)
    wrong = _read(copy, "SELECT seq FROM events WHERE (profile_id IS NULL) != (seq > ?)", (cursor,))
    assert wrong == []
    processed = {r[0] for r in _read(copy, "SELECT user_id FROM events WHERE seq <= ?", (cursor,))}
    people = {r[0] for r in _read(copy, "SELECT value FROM identities WHERE type = 'user_id'")}
    assert people == processed
    return _read(copy, "SELECT seq, message_id FROM events ORDER BY seq")


def test_backups_taken_while_serve_takes_events_are_consistent(tmp_path: Path) -> None:
    database = tmp_path / "leadloop.db"
    server = ServerProcess(
        f"sqlite:///{database}",
        extra_args=("--playbook", PLAYBOOK),
        log_path=tmp_path / "server.log",
    ).start()
    stop = threading.Event()
    sent: list[int] = []
    errors: list[BaseException] = []

    def feed() -> None:
        n = 0
        try:
            while not stop.is_set():
                batch = []
                for person in range(n, n + 10):
                    batch += [
                        {"type": "identify", "userId": f"u{person}", "traits": {"plan": "pro"}},
                        {"type": "track", "userId": f"u{person}", "event": "Signed Up"},
                    ]
                server.send_batch(batch)
                n += 10
                sent.append(len(batch))
        except BaseException as error:
            errors.append(error)

    feeder = threading.Thread(target=feed, daemon=True)
    copies = []
    try:
        feeder.start()
        for number in range(3):
            eventually(lambda n=number: sum(sent) > 200 * (n + 1))
            copy = tmp_path / f"backup-{number}.db"
            out = run_cli("backup", "--to", str(copy), env=server.full_env)
            assert "events in its log" in out, out
            copies.append(copy)
        stop.set()
        feeder.join(timeout=60)
        assert errors == []
        server.wait_processed(timeout=60)
    finally:
        stop.set()
        server.stop()
    log = _read(database, "SELECT seq, message_id FROM events ORDER BY seq")
    assert len(log) == sum(sent)  # the engine lost nothing
    assert _read(database, "SELECT COUNT(*) FROM events WHERE profile_id IS NULL") == [(0,)]
    lengths = []
    for copy in copies:
        held = _check(copy)
        assert held == log[: len(held)]
        lengths.append(len(held))
    assert 0 < lengths[0] < lengths[1] < lengths[2] < len(log)  # taken as the log grew
