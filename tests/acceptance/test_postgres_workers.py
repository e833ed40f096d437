"""The PostgreSQL deployment: an API-only server and two `leadloop worker` processes. One
worker consumes the log, the other stands by; killing the first hands over to the second, and
every event is applied exactly once."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from leadloop.storage.db import DatabaseUrl, connect
from leadloop.testing import ServerProcess, eventually
from tests.conftest import PG_URL, _with_db, drop_postgres_database, new_postgres_database

pytestmark = pytest.mark.postgres


@pytest.fixture
def pg_url() -> Iterator[str]:
    name = new_postgres_database()
    try:
        yield _with_db(PG_URL, name)
    finally:
        drop_postgres_database(name)


def worker(url: str, log: Path) -> subprocess.Popen[bytes]:
    with open(log, "ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "leadloop", "worker"],
            env={**os.environ, "LEADLOOP_DATABASE_URL": url},
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def send(server: ServerProcess, prefix: str, n: int) -> None:
    batch = [
        {
            "type": "track",
            "userId": f"{prefix}-{i % 5}",
            "event": "Visit",
            "messageId": f"{prefix}-{i}",
        }
        for i in range(n)
    ]
    server.send_batch(batch)


def tracks(url: str) -> int:
    conn = connect(DatabaseUrl.parse(url))
    try:
        total = 0
        for (state,) in conn.execute("SELECT state FROM profiles WHERE merged_into IS NULL"):
            total += json.loads(state)["event_counts"].get("track", 0)
        return total
    finally:
        conn.close()


def test_two_workers_one_consumer_and_failover(pg_url: str, tmp_path: Path) -> None:
    server = ServerProcess(database_url=pg_url, extra_args=("--no-processor",)).start()
    first = worker(pg_url, tmp_path / "w1.log")
    second = worker(pg_url, tmp_path / "w2.log")
    try:
        send(server, "a", 200)
        eventually(lambda: tracks(pg_url) == 200, timeout=60)
        first.kill()  # SIGKILL: the advisory lock dies with its session
        first.wait(timeout=30)
        send(server, "b", 300)
        eventually(lambda: tracks(pg_url) == 500, timeout=60)
        server.wait_processed()
        assert tracks(pg_url) == 500
    finally:
        for proc in (first, second):
            if proc.poll() is None:
                proc.terminate()
                proc.wait(timeout=30)
        server.stop()
