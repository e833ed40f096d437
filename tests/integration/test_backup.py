"""`leadloop backup`: a copy taken while an engine appends and processes events is consistent
and opens as a working database; the targets it must not write to are refused."""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

from leadloop.cli import main
from leadloop.log import store
from leadloop.log.processor import CURSOR
from leadloop.storage import backup
from leadloop.storage.db import DatabaseUrl, connect
from leadloop.storage.migrate import pending
from leadloop.testing import eventually
from tests.integration.conftest import Api, serve_api

ROOT = Path(__file__).resolve().parents[2]
PLAYBOOK = str(ROOT / "examples" / "playbook.yaml")


def _send(api: Api, first: int, count: int) -> None:
    """`count` people, each identified and then tracked: user ids u{first}... (each one new)."""
    batch = []
    for n in range(first, first + count):
        batch += [
            {"type": "identify", "userId": f"u{n}", "traits": {"email": f"p{n}@example.com"}},
            {"type": "track", "userId": f"u{n}", "event": "Lead Magnet Downloaded"},
        ]
    r = api.client.post("/v1/batch", content=json.dumps({"batch": batch}), headers=api.basic())
    assert r.status_code == 200, r.text


class Feeder:
    """Sends batches from another thread, as clients do, until stopped: the engine's writer
    appends them and its processor processes them while the backup runs."""

    def __init__(self, api: Api) -> None:
        self.api = api
        self.people = 0
        self.stop = threading.Event()
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        try:
            while not self.stop.is_set():
                _send(self.api, self.people, 5)
                self.people += 5
        except BaseException as error:
            self.error = error

    def __enter__(self) -> Feeder:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(timeout=60)
        assert self.error is None, self.error


def _read(path: Path, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    with closing(sqlite3.connect(path)) as db:
        return db.execute(sql, params).fetchall()


def _events(path: Path) -> int:
    return int(_read(path, "SELECT COUNT(*) FROM events")[0][0])


@pytest.fixture
def live(tmp_path: Path) -> Iterator[tuple[Api, Path]]:
    database = tmp_path / "leadloop.db"
    for api in serve_api(f"sqlite:///{database}", playbook=PLAYBOOK):
        yield api, database


def test_a_backup_taken_while_the_engine_appends_and_processes_is_consistent(
    live: tuple[Api, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    api, database = live
    copy = tmp_path / "backup.db"
    monkeypatch.setattr(backup, "STEP_PAGES", 4)  # many steps, with commits between them
    _send(api, 1000, 10)  # processed before the copy, as
    api.settle()
    hold = threading.Event()
    api.engine.processor.request(lambda conn: hold.wait(60))  # the processor falls behind
    steps = 0

    def attributed() -> int:
        rows = _read(database, "SELECT COUNT(*) FROM events WHERE profile_id IS NOT NULL")
        return int(rows[0][0])

    def progress(done: int, total: int) -> None:
        # After the copy's first step the processor goes on past what the copy holds, and the
        # writer appends more: both commit while the copy is being taken.
        nonlocal steps
        steps += 1
        if steps == 1:
            hold.set()
            eventually(lambda: attributed() > at_start and _events(database) > at_start + 20)

    with Feeder(api) as feeder:
        eventually(lambda: _events(database) >= 40)
        at_start = _events(database)
        copied = backup.copy_database(database, copy, progress)
        during = _events(database)
    assert steps > 2
    api.settle()

    # The copy: SQLite finds nothing wrong, its schema is current, its log is a prefix of the
    # engine's, and what it holds processed is exactly what its cursor has passed.
    assert _read(copy, "PRAGMA integrity_check") == [("ok",)]
    with closing(connect(DatabaseUrl.parse(f"sqlite:///{copy}"))) as conn:
        assert pending(conn) == []
        cursor = store.processed_seq(conn, CURSOR)
    log = _read(copy, "SELECT seq, message_id, user_id FROM events ORDER BY seq")
    assert copied.events == len(log) and 0 < len(log) < during
    original = _read(database, "SELECT seq, message_id, user_id FROM events ORDER BY seq")
    assert original[: len(log)] == log
    processed = {user for seq, _, user in log if seq <= cursor}
    assert processed and len(processed) < len({user for _, _, user in log})  # some of each
    unattributed = _read(
        copy, "SELECT seq FROM events WHERE (profile_id IS NULL) != (seq > ?)", (cursor,)
    )
    assert unattributed == []
    people = {row[0] for row in _read(copy, "SELECT value FROM identities WHERE type = 'user_id'")}
    assert people == processed
    scored = _read(copy, "SELECT COUNT(DISTINCT profile_id) FROM scores")[0][0]
    assert scored == len(processed)

    # The engine lost nothing: every accepted event is in its log, and processed.
    assert _events(database) == 2 * (feeder.people + 10)
    assert _read(database, "SELECT COUNT(*) FROM events WHERE profile_id IS NULL") == [(0,)]

    # An engine started on the copy processes the rest of its log.
    for restored in serve_api(f"sqlite:///{copy}", playbook=PLAYBOOK):
        restored.settle()
    people = {row[0] for row in _read(copy, "SELECT value FROM identities WHERE type = 'user_id'")}
    assert people == {user for _, _, user in log}


TABLES = (
    "events",
    "profiles",
    "identities",
    "scores",
    "score_ledger",
    "cursors",
    "timers",
    "journey_instances",
    "outbox",
)


def _tables(path: Path) -> dict[str, list[str]]:
    return {table: sorted(map(repr, _read(path, f"SELECT * FROM {table}"))) for table in TABLES}


def test_an_engine_started_on_a_backup_has_the_same_profiles_scores_and_log(
    live: tuple[Api, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    api, database = live
    for first in range(0, 30, 10):
        _send(api, first, 10)
    api.settle()
    copy = tmp_path / "copies" / "backup.db"
    copy.parent.mkdir()
    url = f"sqlite:///{database}"
    assert main(["backup", "--to", str(copy), "--database-url", url]) == 0
    out = capsys.readouterr().out
    version = _read(database, "SELECT MAX(version) FROM schema_migrations")[0][0]
    assert f"60 events in its log, schema version {version}" in out, out
    assert sorted(os.listdir(copy.parent)) == ["backup.db"]  # no temporary file is left
    assert _read(copy, "PRAGMA journal_mode") == [("delete",)]  # one file, on its own

    lookup = "/api/v1/profiles/lookup?type=email&value=p7@example.com"
    before = api.client.get(lookup, headers=api.bearer()).json()
    expected = _tables(database)
    assert expected["journey_instances"]  # leads entered the nurture journey
    for restored in serve_api(f"sqlite:///{copy}", playbook=PLAYBOOK):
        restored.settle()
        assert restored.engine.read_sync(restored.engine.status)["log_length"] == 60
        after = restored.client.get(lookup, headers=restored.bearer(api.token)).json()
        assert after == before and after["scores"]
    assert _tables(copy) == expected


# -- refusals ---------------------------------------------------------------------------------


def _refused(capsys: pytest.CaptureFixture[str], folder: Path, *argv: str) -> tuple[str, list[str]]:
    """Runs `leadloop backup ARGV`, which must be refused: status 2, one line, and nothing in
    `folder` changed."""
    before = {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}
    assert main(["backup", *argv]) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("leadloop: error: "), captured.err
    assert captured.out == ""
    after = {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}
    assert after == before
    return lines[0], sorted(os.listdir(folder))


@pytest.fixture
def stopped(tmp_path: Path) -> tuple[Path, str]:
    database = tmp_path / "leadloop.db"
    url = f"sqlite:///{database}"
    assert main(["migrate", "--database-url", url]) == 0
    return database, url


def test_an_existing_target_is_replaced_only_with_force(
    stopped: tuple[Path, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, url = stopped
    target = tmp_path / "backup.db"
    target.write_text("yesterday's")
    line, _ = _refused(capsys, tmp_path, "--to", str(target), "--database-url", url)
    assert f"--to {target} exists" in line and "--force" in line
    assert main(["backup", "--to", str(target), "--force", "--database-url", url]) == 0
    assert _read(target, "PRAGMA integrity_check") == [("ok",)]


@pytest.mark.parametrize(
    "spelling",
    [
        "same",
        "dots",
        "symlink",
        "hardlink",
        "wal",
        "shm",
        "symlink --force",
        # The engine runs on `sqlite:///link.db`, a symlink: the file it links to, and the WAL
        # beside that file, are the database's too.
        "linked --force",
        "linked-wal --force",
    ],
)
def test_the_database_itself_is_refused_under_any_spelling(
    stopped: tuple[Path, str],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    spelling: str,
) -> None:
    database, url = stopped
    if spelling.startswith("linked"):
        link = tmp_path / "link.db"
        link.symlink_to(database)
        url = f"sqlite:///{link}"
    with closing(sqlite3.connect(database)) as db:  # a WAL beside it, as under an engine
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("CREATE TABLE scratch (x)")
    target = {
        "same": database,
        "dots": tmp_path / ".." / tmp_path.name / "." / "leadloop.db",
        "wal": Path(f"{database}-wal"),
        "linked": database,
        "linked-wal": Path(f"{database}-wal"),
        "shm": Path(f"{database}-shm"),
    }.get(spelling.split()[0], tmp_path / "other.db")
    if spelling.startswith("symlink"):
        target.symlink_to(database)
    if spelling == "hardlink":
        os.link(database, target)
    force = ["--force"] if "--force" in spelling else []
    line, _ = _refused(capsys, tmp_path, "--to", str(target), *force, "--database-url", url)
    assert "is the database itself" in line or "a file SQLite keeps beside" in line, line
    assert _read(database, "PRAGMA integrity_check") == [("ok",)]


def test_a_missing_or_unwritable_folder_or_a_device_is_refused(
    stopped: tuple[Path, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, url = stopped
    missing = str(tmp_path / "no" / "b.db")
    line, _ = _refused(capsys, tmp_path, "--to", missing, "--database-url", url)
    assert f"no folder {tmp_path / 'no'}" in line
    line, _ = _refused(capsys, tmp_path, "--to", "/dev/null", "--force", "--database-url", url)
    assert "is not a regular file" in line and Path("/dev/null").is_char_device()
    line, _ = _refused(capsys, tmp_path, "--to", str(tmp_path), "--force", "--database-url", url)
    assert "is a folder" in line

    locked = tmp_path / "locked"
    locked.mkdir(mode=0o555)
    if os.access(locked, os.W_OK):
        # Root writes where the mode forbids it; sysfs takes no new file even from root (the
        # refusal then comes from creating the temporary file, not from the mode).
        locked = Path("/sys")
        if not locked.is_dir():
            pytest.skip("running as root without /sys: no folder it cannot write in")
    line, listed = _refused(capsys, locked, "--to", str(locked / "b.db"), "--database-url", url)
    assert "b.db" not in listed and ("not writable" in line or "Permission denied" in line), line


def test_postgresql_is_pointed_to_pg_dump_without_the_password(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = "postgresql://marketing:s3cret@db.internal:5433/leads?sslmode=require&password=s3cret"
    line, listed = _refused(capsys, tmp_path, "--to", "leads.dump", "--database-url", url)
    assert (
        "`pg_dump --format=custom --file=leads.dump "
        "'postgresql://marketing@db.internal:5433/leads?sslmode=require'`"
    ) in line, line
    assert "s3cret" not in line and listed == []


def test_no_database_is_the_usual_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "elsewhere" / "leadloop.db"
    line, listed = _refused(
        capsys, tmp_path, "--to", str(tmp_path / "b.db"), "--database-url", f"sqlite:///{missing}"
    )
    assert f"no database at {missing}" in line and listed == []


def test_an_older_schema_is_copied_before_an_upgrade(
    stopped: tuple[Path, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The backup an upgrade needs is taken before `leadloop migrate`: a database one migration
    behind this version is copied as it is (and says so), not refused as `explain` refuses it."""
    database, url = stopped
    with closing(sqlite3.connect(database)) as db, db:
        newest = db.execute("SELECT MAX(version) FROM schema_migrations").fetchone()[0]
        db.execute("DELETE FROM schema_migrations WHERE version = ?", (newest,))
    target = tmp_path / "before-upgrade.db"
    assert main(["backup", "--to", str(target), "--database-url", url]) == 0
    out = capsys.readouterr().out
    assert f"schema version {newest - 1}; this leadloop's is {newest}" in out, out
    assert _read(target, "SELECT MAX(version) FROM schema_migrations") == [(newest - 1,)]
