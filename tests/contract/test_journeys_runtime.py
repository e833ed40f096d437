"""Races, contact pressure across journeys, live edits and crashes, on both backends."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from leadloop.app import Engine
from leadloop.clock import ManualClock
from leadloop.config import Settings
from leadloop.journeys.queries import path_lines
from leadloop.log import store
from leadloop.log.processor import CURSOR
from tests.conftest import PG_URL, _with_db, drop_postgres_database, new_postgres_database
from tests.contract.conftest import Harness
from tests.contract.test_journeys_seed import (
    HOUR,
    become_lead,
    journey_harness,
    messages,
    playbook_with_journeys,
    plug_journeys,
)

pytestmark = pytest.mark.usefixtures("channels_env")

DAY = 24 * HOUR


def path_of(h: Harness, pid: str) -> list[tuple[str, str | None, float]]:
    rows = h.sql(
        "SELECT at, step, kind, detail, more_lines FROM journey_path WHERE profile_id = ? "
        "ORDER BY id",
        pid,
    )
    return [(kind, step, at) for at, step, kind, _detail in path_lines(rows)]


def clicked(h: Harness, user: str, message_id: str) -> dict[str, Any]:
    return {
        "type": "track",
        "userId": user,
        "event": "Email Link Clicked",
        "messageId": f"click-{user}",
        "properties": {"message_id": message_id},
    }


def _race(h: Harness, user: str, click_first: bool) -> str:
    pid = become_lead(h, user)
    guide = messages(h, pid)[0][2]
    assert h.engine.manual_clock is not None
    h.engine.manual_clock.advance(72 * HOUR)  # the click lands exactly at the timeout
    if click_first:
        h.send(clicked(h, user, guide))
        h.engine.timers.fire_now()
    else:
        h.engine.timers.fire_now()
        h.send(clicked(h, user, guide))
    h.settle()
    return pid


def _branches(h: Harness, pid: str) -> list[str]:
    return [kind for kind, _step, _at in path_of(h, pid) if kind in ("happened", "timed_out")]


def test_a_click_at_the_timeout_instant_takes_exactly_one_branch(
    backend_url: str, tmp_path: Path
) -> None:
    h = journey_harness(backend_url, playbook_with_journeys(tmp_path))
    try:
        first = _race(h, "click-first", click_first=True)
        second = _race(h, "timer-first", click_first=False)
        assert _branches(h, first) == ["happened"]
        assert _branches(h, second) == ["timed_out"]
        h.advance(100 * HOUR)
        assert [t for _c, t, _m in messages(h, first)] == ["guide", "case_study"]
        assert [c for c, _t, _m in messages(h, second)] == ["email", "email"][:1]
        assert _branches(h, first) == ["happened"] and _branches(h, second) == ["timed_out"]
        log = h.sql(
            "SELECT workspace_id, message_id, type, event, user_id, anonymous_id, group_id, "
            "previous_id, ts, received_at, body FROM events ORDER BY seq"
        )
        expected = {pid: path_of(h, pid) for pid in (first, second)}
        ids = {
            pid: h.sql(
                "SELECT user_id FROM events WHERE profile_id = ? AND user_id IS NOT NULL LIMIT 1",
                pid,
            )[0][0]
            for pid in expected
        }
    finally:
        h.engine.stop()

    # The same log, replayed into a fresh database, takes the same branches at the same times.
    pg_name = None
    if backend_url.startswith("sqlite"):
        url = f"sqlite:///{tmp_path}/replay.db"
    else:
        pg_name = new_postgres_database()
        url = _with_db(PG_URL, pg_name)
    replay = journey_harness(url, playbook_with_journeys(tmp_path))
    try:
        replay.engine.writer.submit(
            lambda c: c.executemany(
                "INSERT INTO events (workspace_id, message_id, type, event, user_id, anonymous_id, "
                "group_id, previous_id, ts, received_at, body) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (workspace_id, message_id) DO NOTHING",
                [tuple(r) for r in log],
            )
        ).result()
        replay.engine.processor.wake()
        replay.settle()
        for pid, path in expected.items():
            user = ids[pid]
            prof = replay.profile("user_id", user)
            assert prof is not None
            assert path_of(replay, prof["id"]) == path
    finally:
        replay.engine.stop()
        if pg_name is not None:
            drop_postgres_database(pg_name)


TWO_JOURNEYS = """
journeys:
  templates:
    email: [a1, b1]
  policy:
    quiet_hours: { start: "21:00", end: "08:00" }
    caps:
      - { max: 1, per: 1d }
  flows:
    - id: journey_a
      entry: { event: Signed Up }
      steps:
        - { id: send_a, type: send, channel: email, template: a1 }
    - id: journey_b
      entry: { event: Signed Up }
      steps:
        - { id: send_b, type: send, channel: email, template: b1 }
"""


def test_cap_and_quiet_hours_across_two_journeys_defer_never_drop_never_double(
    backend_url: str, tmp_path: Path
) -> None:
    h = journey_harness(backend_url, playbook_with_journeys(tmp_path, TWO_JOURNEYS))
    try:
        start = h.engine.clock.now()  # 08:00 UTC = midnight in Los Angeles: quiet hours
        h.send(
            {
                "type": "identify",
                "userId": "u",
                "traits": {"email": "u@x.test", "timezone": "America/Los_Angeles"},
            },
            {"type": "track", "userId": "u", "event": "Signed Up"},
        )
        h.settle()
        prof = h.profile("user_id", "u")
        assert prof is not None
        pid = prof["id"]
        assert messages(h, pid) == []
        deferred = h.sql(
            "SELECT step, outcome, reason, until FROM sends WHERE profile_id = ? ORDER BY id", pid
        )
        assert [(r[0], r[1]) for r in deferred] == [("send_a", "deferred"), ("send_b", "deferred")]
        assert all("quiet hours" in r[2] and r[3] == start + 8 * HOUR for r in deferred)
        h.advance(8 * HOUR)  # 08:00 in Los Angeles: one goes, the cap defers the other a day
        assert [t for _c, t, _m in messages(h, pid)] == ["a1"]
        capped = h.sql(
            "SELECT reason, until FROM sends WHERE profile_id = ? AND outcome = 'deferred' ORDER BY id",
            pid,
        )[-1]
        assert "frequency cap" in capped[0] and capped[1] == start + 8 * HOUR + DAY
        h.advance(DAY - 1)
        assert [t for _c, t, _m in messages(h, pid)] == ["a1"]
        h.advance(1)
        h.advance(30 * DAY)
        sent = h.sql(
            "SELECT payload, next_attempt_at FROM outbox JOIN outbox_payloads USING (id) WHERE kind = 'message' AND profile_id = ? ORDER BY id",
            pid,
        )
        assert [json.loads(p)["template"] for p, _ in sent] == ["a1", "b1"]
        assert [float(t) for _p, t in sent] == [start + 8 * HOUR, start + 8 * HOUR + DAY]
        statuses = h.sql("SELECT status FROM journey_instances WHERE profile_id = ?", pid)
        assert sorted(s for (s,) in statuses) == ["completed", "completed"]
    finally:
        h.engine.stop()


EDIT_V1 = """
journeys:
  templates:
    email: [t1, t2, t3]
  flows:
    - id: edit
      entry: { event: Go }
      reentry: always
      steps:
        - { id: first, type: send, channel: email, template: t1, next: pause }
        - { id: pause, type: wait, duration: 24h, next: second }
        - { id: second, type: send, channel: email, template: t2 }
"""
EDIT_V2 = EDIT_V1.replace("template: t2 }", "template: t3 }")


def _go(h: Harness, users: range) -> None:
    for chunk in range(users.start, users.stop, 250):
        batch: list[dict[str, Any]] = []
        for i in range(chunk, min(chunk + 250, users.stop)):
            batch.append(
                {"type": "identify", "userId": f"e{i}", "traits": {"email": f"e{i}@x.test"}}
            )
            batch.append({"type": "track", "userId": f"e{i}", "event": "Go"})
        h.send(*batch)
    h.settle()


def test_live_edit_keeps_1000_waiting_instances_on_version_1(
    backend_url: str, tmp_path: Path
) -> None:
    h = journey_harness(backend_url, playbook_with_journeys(tmp_path, EDIT_V1, "v1.yaml"))
    try:
        _go(h, range(1000))
        (v1,) = h.sql("SELECT DISTINCT version FROM journey_instances")[0]
        assert h.sql(
            "SELECT COUNT(*) FROM journey_instances WHERE status = 'waiting' AND step = 'pause'"
        ) == [(1000,)]
        h.engine.apply_playbook_file(playbook_with_journeys(tmp_path, EDIT_V2, "v2.yaml"))
        h.engine.refresh_playbooks()
        _go(h, range(1000, 1010))  # new entrants
        versions = dict(h.sql("SELECT version, COUNT(*) FROM journey_instances GROUP BY version"))
        assert versions[v1] == 1000 and len(versions) == 2
        (v2,) = [v for v in versions if v != v1]
        assert versions[v2] == 10
        assert h.sql("SELECT COUNT(*) FROM journey_versions WHERE journey_id = 'edit'") == [(2,)]
        h.advance(DAY)
        rows = h.sql(
            "SELECT payload FROM outbox JOIN outbox_payloads USING (id) WHERE kind = 'message'"
        )
        payloads = [json.loads(r[0]) for r in rows]
        by_template: dict[str, int] = {}
        for p in payloads:
            by_template[p["template"]] = by_template.get(p["template"], 0) + 1
        assert by_template == {"t1": 1010, "t2": 1000, "t3": 10}
        assert len({p["message_id"] for p in payloads}) == len(payloads)  # none duplicated
        assert h.sql("SELECT status, COUNT(*) FROM journey_instances GROUP BY status") == [
            ("completed", 1010)
        ]
    finally:
        h.engine.stop()


def test_a_migrate_map_moves_waiting_instances_and_a_removed_journey_ends_them(
    backend_url: str, tmp_path: Path
) -> None:
    h = journey_harness(backend_url, playbook_with_journeys(tmp_path, EDIT_V1, "v1.yaml"))
    try:
        _go(h, range(5))
        v3 = EDIT_V2.replace("reentry: always", "reentry: always\n      migrate: { pause: pause }")
        h.engine.apply_playbook_file(playbook_with_journeys(tmp_path, v3, "v3.yaml"))
        h.engine.refresh_playbooks()
        _go(h, range(100, 101))  # any event runs the first batch under the new playbook
        assert h.sql("SELECT COUNT(DISTINCT version) FROM journey_instances") == [(1,)]
        assert h.sql("SELECT COUNT(*) FROM journey_path WHERE kind = 'migrated'") == [(5,)]
        h.advance(DAY)
        rows = h.sql(
            "SELECT payload FROM outbox JOIN outbox_payloads USING (id) WHERE kind = 'message'"
        )
        assert sorted(json.loads(r[0])["template"] for r in rows).count("t3") == 6
        _go(h, range(200, 203))
        gone = "journeys:\n  flows: []\n"
        h.engine.apply_playbook_file(playbook_with_journeys(tmp_path, gone, "v4.yaml"))
        h.engine.refresh_playbooks()
        _go(h, range(300, 301))
        ended = h.sql(
            "SELECT reason, COUNT(*) FROM journey_instances WHERE status = 'ended' GROUP BY reason"
        )
        assert ended == [("journey removed from the playbook", 3)]
        h.advance(DAY)
        assert h.sql(
            "SELECT COUNT(*) FROM outbox JOIN outbox_payloads USING (id) WHERE kind = 'message' AND payload LIKE ?",
            '%"t3"%',
        ) == [(6,)]
    finally:
        h.engine.stop()


def test_a_crash_while_timers_are_processed_runs_every_due_step_once(
    backend_url: str, tmp_path: Path
) -> None:
    playbook = playbook_with_journeys(tmp_path)
    h = journey_harness(backend_url, playbook)
    users = [f"crash{i}" for i in range(20)]
    try:
        for user in users:
            become_lead(h, user, phone="+14155550100", whatsapp_opt_in=True)
        h.engine.processor.stop()
        assert h.engine.manual_clock is not None
        h.engine.manual_clock.advance(72 * HOUR)
        assert h.engine.timers.fire_now() == 20  # due steps are now events in the log
        conn = h.engine._connect()
        try:
            position = store.get_cursor(conn, CURSOR)
            events, _after, _epoch = store.read_after(conn, position, 1000)
            batch = h.engine.processor.process(conn, events)
        finally:
            conn.close()
        stages = list(h.engine.processor._stages)

        def crash(wconn: Any) -> None:
            batch.identity.flush(wconn, batch.now)
            for stage in stages:
                stage.flush(batch, wconn)
            batch.flush(wconn)
            raise RuntimeError("killed mid-transaction")

        failed = h.engine.writer.submit(crash).exception()
        assert isinstance(failed, RuntimeError)
        assert h.sql(
            "SELECT COUNT(*) FROM outbox WHERE kind = 'message' AND destination = 'whatsapp'"
        ) == [(0,)]
    finally:
        h.engine.stop()

    # Restart on the same database: the processor resumes from its committed cursor.
    engine = Engine(
        Settings(database_url=backend_url, playbook=playbook),
        clock=ManualClock(1_800_000_000.0 + 72 * HOUR),
        manual_clock=True,
    )
    restarted = Harness(engine)
    plug_journeys(restarted)  # before start: the stage must see the replayed batch
    engine.start()
    try:
        restarted.settle()
        rows = restarted.sql(
            "SELECT profile_id, COUNT(*) FROM outbox WHERE kind = 'message' AND destination = 'whatsapp' GROUP BY profile_id"
        )
        assert len(rows) == 20 and all(n == 1 for _p, n in rows)
        assert restarted.sql("SELECT COUNT(*) FROM journey_path WHERE kind = 'timed_out'") == [
            (20,)
        ]
        restarted.advance(30 * DAY)
        assert restarted.sql("SELECT COUNT(*) FROM outbox WHERE kind = 'message'") == [(40,)]
    finally:
        restarted.engine.stop()
