"""Crash between send and mark (issue 6), for real: `leadloop serve` with the example playbook
forwards orders to the local fake Meta; the fake records the batch and holds its answer back;
the engine is killed with SIGKILL while it waits, and restarted on the same database. Every
conversion reaches the fake twice (sent, then sent again once the dead process's lease ends)
and is accepted exactly once, because the re-send carries the same `event_id`.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from leadloop.clock import SystemClock
from leadloop.outbox.service import LEASE_SECONDS
from leadloop.storage.db import DatabaseUrl, connect
from leadloop.testing import ServerProcess, eventually
from leadloop.testing_fakes.ads import FakeAdsServer

ROOT = Path(__file__).resolve().parents[2]
PEOPLE = 40


@pytest.fixture
def fake() -> Iterator[FakeAdsServer]:
    with FakeAdsServer(clock=SystemClock()) as server:
        yield server


def _orders() -> list[dict[str, Any]]:
    batch: list[dict[str, Any]] = []
    for i in range(PEOPLE):
        batch.append(
            {
                "type": "identify",
                "userId": f"buyer-{i}",
                "traits": {"email": f"buyer{i}@example.com", "ad_consent": True},
            }
        )
        batch.append(
            {
                "type": "track",
                "userId": f"buyer-{i}",
                "event": "Order Completed",
                "properties": {"order_id": f"o-{i}", "revenue": 20.0 + i, "currency": "EUR"},
            }
        )
    return batch


def _statuses(url: str) -> list[str]:
    conn = connect(DatabaseUrl.parse(url))
    try:
        rows = conn.execute(
            "SELECT status FROM outbox WHERE kind = 'conversion' AND destination = 'meta'"
        )
    finally:
        conn.close()
    return sorted(str(r[0]) for r in rows)


def meta_server(url: str, fake: FakeAdsServer, log_path: Path) -> ServerProcess:
    """`leadloop serve` started with the example playbook and a manual clock, forwarding
    orders to the fake Meta."""
    return ServerProcess(
        database_url=url,
        extra_args=("--clock", "manual", "--playbook", str(ROOT / "examples" / "playbook.yaml")),
        env={
            "LEADLOOP_META_PIXEL_ID": "1234567890",
            "LEADLOOP_META_ACCESS_TOKEN": "meta-token",
            "LEADLOOP_META_API_BASE": fake.base_url,
        },
        log_path=log_path,
    ).start()


def test_sigkill_between_send_and_mark_each_conversion_accepted_once(
    tmp_path: Path, fake: FakeAdsServer
) -> None:
    url = f"sqlite:///{tmp_path}/conversions-crash.db"
    server = meta_server(url, fake, tmp_path / "server.log")
    gate = fake.meta.hold_answers()
    try:
        server.send_batch(_orders())
        # The fake has accepted every order and is holding its answers back: the engine has
        # sent them and cannot have recorded the outcome yet.
        eventually(lambda: len(fake.meta.accepted) == PEOPLE, timeout=30)
        server.kill()  # SIGKILL: no shutdown hook runs
    except BaseException:
        gate.set()
        server.stop()
        raise
    gate.set()

    at_kill = _statuses(url)
    assert len(at_kill) == PEOPLE and "delivered" not in at_kill, at_kill
    assert fake.meta.duplicates == []

    server.start()  # same database; the claims of the killed process are still leased
    try:
        # The restarted manual clock starts from wall time: move it past the dead lease.
        status, body = server.admin("POST", "/api/v1/clock/advance", {"seconds": LEASE_SECONDS + 1})
        assert status == 200, body
        eventually(lambda: _statuses(url) == ["delivered"] * PEOPLE, timeout=30)
    finally:
        server.stop()

    ids = [e["event_id"] for e in fake.meta.accepted]
    assert len(ids) == PEOPLE and len(set(ids)) == PEOPLE
    assert sorted(ids) == sorted(e["event_id"] for e in fake.meta.duplicates)
    assert {e["event_name"] for e in fake.meta.accepted} == {"Purchase"}
