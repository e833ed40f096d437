"""The pipelined processor decides exactly what the one-batch-at-a-time processor decides.

On SQLite the processor decides batch N+1 while batch N is being written, so N+1's reads may
predate N's commit; `log.overlap` sends such a batch back to be decided again. Here the worst
case is forced: every batch's write is held back until the next batch has been decided (a
`_Deferred` future runs the write only when the processor waits for it), batches are 5 events
long, and people come back batch after batch (identify, pages, lead magnets, groups with shared
accounts, anonymous visits merged by a later identify, orders). The derived tables must come
out the same as from the processor that waits for every commit, row for row. Without the
overlap check they do not, which shows the check is what keeps them equal.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import pytest

from leadloop.app import Engine
from leadloop.clock import ManualClock
from leadloop.config import Settings
from leadloop.ingest import parse
from leadloop.log import processor as processor_module
from leadloop.log.processor import Processor
from leadloop.log.rebuild import DERIVED
from leadloop.log.writer import Writer

ROOT = Path(__file__).resolve().parents[2]
PLAYBOOK = str(ROOT / "examples" / "playbook.yaml")
NOW = 1_800_000_000.0
TABLES = (*DERIVED, "journey_versions", "outbox", "events", "cursors")
"""Every table the processor writes: the derived ones `leadloop replay` rebuilds, and more."""


class _Deferred(Future[None]):
    """A write that runs only when the processor waits for it: after the next batch."""

    def __init__(self, writer: Writer, job: Callable[[Any], None]) -> None:
        super().__init__()
        self._writer, self._job = writer, job

    def result(self, timeout: float | None = None) -> None:
        self._writer.submit(self._job).result(timeout)


class _LateWriter:
    def __init__(self, writer: Writer) -> None:
        self._writer = writer

    def submit(self, job: Callable[[Any], None]) -> Future[None]:
        return _Deferred(self._writer, job)


def messages(seed: int) -> list[dict[str, Any]]:
    """People who come back across batches, merge, share accounts and order."""
    rnd = random.Random(seed)
    out: list[dict[str, Any]] = []
    for n in range(400):
        person = rnd.randrange(25)
        user, anon = f"u{person}", f"a{person}"
        kind = rnd.choice(["identify", "page", "page", "anon", "track", "group", "order"])
        base: dict[str, Any] = {"messageId": f"m{n}", "userId": user}
        if kind == "identify":
            traits = {
                "email": f"p{person}@example.com",
                "title": rnd.choice(["VP Sales", "Engineer", "Head of Growth"]),
                "company_size": rnd.choice([20, 300, 900]),
                "ad_consent": rnd.random() < 0.7,
            }
            out.append({**base, "type": "identify", "anonymousId": anon, "traits": traits})
        elif kind == "page":
            path = rnd.choice(["/", "/pricing", "/pricing/teams", "/blog"])
            out.append({**base, "type": "page", "properties": {"path": path}})
        elif kind == "anon":  # a visit before the identify that will merge it
            path = rnd.choice(["/", "/pricing"])
            del base["userId"]
            out.append({**base, "type": "page", "anonymousId": anon, "properties": {"path": path}})
        elif kind == "track":
            out.append({**base, "type": "track", "event": "Lead Magnet Downloaded"})
        elif kind == "group":
            account = f"acct{person % 4}"  # shared by several people
            traits = {"name": account, "employees": rnd.choice([50, 250, 5000])}
            out.append({**base, "type": "group", "groupId": account, "traits": traits})
        else:
            order = {"order_id": f"o{n}", "revenue": 10.0 + n % 7, "currency": "USD"}
            out.append({**base, "type": "track", "event": "Order Completed", "properties": order})
    return out


def run(
    folder: Path,
    name: str,
    pipeline: bool,
    late: bool,
    failing: bool = False,
    changed: str | None = None,
) -> tuple[dict[str, list[str]], int]:
    """`changed`: a playbook applied once half the events are processed (no rescore job runs:
    the scoring stage rescores each profile it meets under the changed model)."""
    engine = Engine(
        Settings(database_url=f"sqlite:///{folder}/{name}.db", playbook=PLAYBOOK),
        clock=ManualClock(NOW),
        manual_clock=True,
        run_processor=False,
    )
    engine.dispatcher.senders.clear()
    engine.start()
    try:
        for first in range(0, 400, 40):
            accepted = parse.parse_request(
                {"batch": messages(7)[first : first + 40]}, None, received_at=NOW
            )
            assert isinstance(accepted, list)
            engine.writer.append("default", accepted).result()
        writer: Any = _LateWriter(engine.writer) if late else engine.writer
        if failing:
            writer = _FailingOnce(writer)
        processor = Processor(
            engine._connect,
            writer,
            engine.clock,
            engine.processor.stages,
            batch_size=5,
            pipeline=pipeline,
        )
        conn = engine._connect()
        stepped = 0
        while True:
            try:
                n = processor.step(conn)
            except RuntimeError as error:
                assert failing and str(error) == "disk full"
                continue
            if not n:
                break
            stepped += n
            if changed is not None and stepped >= 200:
                processor.drain()
                engine.apply_playbook_file(changed)
                engine.refresh_playbooks()
                changed = None
        conn.close()
        assert processor.processed >= 400  # and the events the engine emitted on the way
        tables = {
            table: sorted(
                repr(row)
                for row in engine.read_sync(lambda c, t=table: c.execute(f"SELECT * FROM {t}"))
            )
            for table in TABLES
        }
        return tables, processor.redecided
    finally:
        engine.stop()


@pytest.fixture
def meta_enabled(monkeypatch: pytest.MonkeyPatch) -> None:
    # One destination configured (its sender is never run), so orders reach the outbox.
    monkeypatch.setenv("LEADLOOP_META_PIXEL_ID", "1")
    monkeypatch.setenv("LEADLOOP_META_ACCESS_TOKEN", "token")


def test_pipelined_processing_decides_what_serial_processing_decides(
    tmp_path: Path, meta_enabled: None
) -> None:
    serial, _ = run(tmp_path, "serial", pipeline=False, late=False)
    pipelined, redecided = run(tmp_path, "pipelined", pipeline=True, late=True)
    assert redecided > 10  # people came back in the very next batch, often
    assert serial["outbox"] and serial["journey_instances"] and serial["account_members"]
    for table in TABLES:
        assert pipelined[table] == serial[table], table


def test_without_the_overlap_check_the_stale_reads_show(
    tmp_path: Path, meta_enabled: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    serial, _ = run(tmp_path, "serial", pipeline=False, late=False)
    monkeypatch.setattr(processor_module, "depends_on", lambda later, earlier: False)
    unchecked, redecided = run(tmp_path, "unchecked", pipeline=True, late=True)
    assert redecided == 0
    assert any(unchecked[table] != serial[table] for table in TABLES)


def test_pipelined_processing_during_a_rescore_decides_what_serial_processing_decides(
    tmp_path: Path, meta_enabled: None
) -> None:
    """Half the profiles come back after a model changed: each is rescored at its first event
    from its history up to the batch's position. Pipelined, a batch that read a history before
    the batch ahead of it committed more of it is decided again (`log.overlap`)."""
    text = Path(PLAYBOOK).read_text()
    old = "          points: 10\n        - id: lead_magnet"
    assert old in text
    playbook = tmp_path / "changed.yaml"
    playbook.write_text(text.replace(old, "          points: 30\n        - id: lead_magnet"))
    serial, _ = run(tmp_path, "serial", pipeline=False, late=False, changed=str(playbook))
    pipelined, redecided = run(
        tmp_path, "pipelined", pipeline=True, late=True, changed=str(playbook)
    )
    assert redecided > 10
    rescored = [line for line in serial["score_ledger"] if "'rescore'" in line]
    assert len(rescored) > 10
    for table in TABLES:
        assert pipelined[table] == serial[table], table


class _FailingOnce:
    """The first write the processor hands over fails before touching the database."""

    def __init__(self, writer: Any) -> None:
        self._writer, self.failed = writer, False

    def submit(self, job: Callable[[Any], None]) -> Future[None]:
        if self.failed:
            return self._writer.submit(job)  # type: ignore[no-any-return]

        def fail(conn: Any) -> None:
            raise RuntimeError("disk full")

        self.failed = True
        return self._writer.submit(fail)  # type: ignore[no-any-return]


def test_a_failed_write_is_decided_again_with_nothing_lost(
    tmp_path: Path, meta_enabled: None
) -> None:
    # The first batch also registers the playbook's journeys (a barrier); when its write fails,
    # the journeys stage must register them again on the retry, or they are never written.
    serial, _ = run(tmp_path, "serial", pipeline=False, late=False)
    retried, _ = run(tmp_path, "retried", pipeline=True, late=True, failing=True)
    assert serial["outbox"]
    for table in TABLES:
        assert retried[table] == serial[table], table


def test_a_job_queued_behind_a_failed_write_still_runs(tmp_path: Path) -> None:
    """A job (an erasure, a rescore) waits for the batch still being written; when that write
    fails, the job runs all the same and the batch is decided again, nothing lost."""
    engine = Engine(
        Settings(database_url=f"sqlite:///{tmp_path}/jobs.db", playbook=PLAYBOOK),
        clock=ManualClock(NOW),
        manual_clock=True,
        run_processor=False,
    )
    engine.start()
    try:
        accepted = parse.parse_request({"batch": messages(3)[:20]}, None, received_at=NOW)
        assert isinstance(accepted, list)
        engine.writer.append("default", accepted).result()
        processor = Processor(
            engine._connect,
            _FailingOnce(engine.writer),
            engine.clock,
            engine.processor.stages,
            batch_size=5,
            pipeline=True,
        )
        conn = engine._connect()
        assert processor.step(conn)  # its write, still in flight, fails
        ran: list[int] = []
        processor.request(lambda c: ran.append(len(c.execute("SELECT id FROM profiles"))))
        processor._run_jobs(conn)
        assert ran == [0]  # it ran, and saw only what was committed: nothing
        while processor.step(conn):
            pass
        processor.drain()
        conn.close()
        events = engine.read_sync(lambda c: c.execute("SELECT COUNT(*) FROM events"))[0][0]
        position = engine.read_sync(
            lambda c: c.execute("SELECT position FROM cursors WHERE name = 'processor'")
        )
        assert position and int(position[0][0]) == events
    finally:
        engine.stop()
