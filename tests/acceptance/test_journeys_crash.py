"""Crash during timer processing (issue 4): the real server, a manual clock, thousands of
journey timers falling due at once, SIGKILL while their wake-ups are being processed, restart
on the same database. Every due step runs exactly once.

Email is switched on (an SMTP URL nobody listens on): queued messages stay in the outbox,
which is what the test counts; delivery is not its subject.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

from leadloop.storage.db import DatabaseUrl, connect
from leadloop.testing import ServerProcess, eventually
from tests.contract.test_journeys_seed import playbook_with_journeys

PROFILES = 3000
HOUR = 3600.0
DRIP = """
journeys:
  templates:
    email: [guide, case_study]
  flows:
    - id: drip
      entry: { event: Go }
      steps:
        - { id: first, type: send, channel: email, template: guide, next: pause }
        - { id: pause, type: wait, duration: 1h, next: second }
        - { id: second, type: send, channel: email, template: case_study, next: pause2 }
        - { id: pause2, type: wait, duration: 1h, next: third }
        - { id: third, type: send, channel: email, template: guide }
"""
ENV = {
    "LEADLOOP_SMTP_URL": "smtp://127.0.0.1:9",
    "LEADLOOP_EMAIL_FROM": "Leadloop <hello@leadloop.test>",
    "LEADLOOP_PUBLIC_URL": "http://127.0.0.1:9",
}


def _enter(server: ServerProcess, count: int) -> None:
    for base in range(0, count, 250):
        batch: list[dict[str, Any]] = []
        for i in range(base, min(base + 250, count)):
            batch.append(
                {"type": "identify", "userId": f"p{i}", "traits": {"email": f"p{i}@x.test"}}
            )
            batch.append({"type": "track", "userId": f"p{i}", "event": "Go"})
        server.send_batch(batch)


def _advance(server: ServerProcess, seconds: float) -> None:
    status, body = server.admin("POST", "/api/v1/clock/advance", {"seconds": seconds})
    assert status == 200, body


def _advance_quietly(server: ServerProcess, seconds: float) -> None:
    """Advance the clock; the server may be killed before it answers."""
    with contextlib.suppress(OSError, json.JSONDecodeError):
        server.admin("POST", "/api/v1/clock/advance", {"seconds": seconds})


def _lag(server: ServerProcess) -> int | None:
    try:
        found = server.get("/api/v1/status")
    except OSError:
        return None
    return None if found is None else int(found["lag"])


def _messages(url: str) -> list[dict[str, Any]]:
    conn = connect(DatabaseUrl.parse(url))
    try:
        rows = conn.execute(
            "SELECT payload FROM outbox JOIN outbox_payloads USING (id) WHERE kind = 'message' ORDER BY id"
        )
    finally:
        conn.close()
    return [json.loads(r[0]) for r in rows]


def _sql(url: str, query: str) -> list[tuple[Any, ...]]:
    conn = connect(DatabaseUrl.parse(url))
    try:
        return conn.execute(query)
    finally:
        conn.close()


def test_sigkill_while_timers_are_processed_runs_every_due_step_once(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/journeys-crash.db"
    playbook = playbook_with_journeys(tmp_path, DRIP)
    server = ServerProcess(
        database_url=url,
        extra_args=("--clock", "manual", "--playbook", playbook),
        env=ENV,
        log_path=tmp_path / "server.log",
    ).start()
    try:
        _enter(server, PROFILES)
        server.wait_processed(timeout=60)
        first = _messages(url)
        assert len(first) == PROFILES and {m["step"] for m in first} == {"first"}

        # One hour later every instance's wait is over: PROFILES timers become log events and
        # the processor works through them batch by batch (the call answers once all are
        # processed, so it runs in a thread and the kill lands while it is waiting).
        mover = threading.Thread(target=_advance_quietly, args=(server, HOUR), daemon=True)
        mover.start()
        # Generous: should the kill come before the advance has turned the timers into log
        # events, the restarted server (its manual clock back at wall time) would never fire
        # them, and the test would fail for a slow machine, not for lost work.
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            lag = _lag(server)
            if lag is not None and 0 < lag < PROFILES:
                break  # at least one batch of wake-ups committed, the next one in flight
            time.sleep(0.005)
        server.kill()  # SIGKILL: no shutdown hook runs
    except BaseException:
        server.stop()
        raise

    at_kill = Counter(m["step"] for m in _messages(url))
    assert at_kill["second"] < PROFILES, "the kill came after every wake-up was processed"

    server.start()  # same database: resumes from the committed cursor
    try:
        server.wait_processed(timeout=60)
        sent = _messages(url)
        by_step = Counter(m["step"] for m in sent)
        assert by_step == {"first": PROFILES, "second": PROFILES}, (by_step, at_kill)
        assert len({m["message_id"] for m in sent}) == len(sent)
        per_instance = Counter((m["instance"], m["step"]) for m in sent)
        assert set(per_instance.values()) == {1}
        assert _sql(
            url, "SELECT status, step, COUNT(*) FROM journey_instances GROUP BY status, step"
        ) == [("waiting", "pause2", PROFILES)]
        assert _sql(
            url,
            "SELECT step, COUNT(*) FROM sends WHERE outcome = 'queued' GROUP BY step ORDER BY step",
        ) == [("first", PROFILES), ("second", PROFILES)]
        assert _sql(url, "SELECT COUNT(*) FROM journey_path WHERE kind = 'waited'") == [(PROFILES,)]

        # The restarted manual clock starts from wall time again: two hours more is past the
        # second wait of every instance (whose times come from the log, not the clock).
        _advance(server, 2 * HOUR)
        eventually(lambda: len(_messages(url)) >= 3 * PROFILES, timeout=30)
        server.wait_processed(timeout=30)
        sent = _messages(url)
        assert Counter(m["step"] for m in sent) == {
            "first": PROFILES,
            "second": PROFILES,
            "third": PROFILES,
        }
        assert len({m["message_id"] for m in sent}) == 3 * PROFILES
        assert _sql(url, "SELECT status, COUNT(*) FROM journey_instances GROUP BY status") == [
            ("completed", PROFILES)
        ]
        assert _sql(url, "SELECT COUNT(*) FROM timers WHERE key LIKE 'journey:%'") == [(0,)]
    finally:
        server.stop()
