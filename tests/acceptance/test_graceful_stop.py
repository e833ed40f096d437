"""SIGTERM (what systemd, Docker and Kubernetes send) stops `leadloop serve` cleanly: the sends
in flight finish and their outcomes are recorded before the process exits.

uvicorn shuts its server down on SIGTERM, then restores the handler it found and raises the
signal again. With the default handler that killed the process there, before the engine was
stopped: sends in flight were cut off unrecorded (sent again, duplicates, after the restart),
and opens and clicks already answered but not yet written were lost.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from leadloop.clock import SystemClock
from leadloop.testing import ServerProcess, eventually
from leadloop.testing_fakes.ads import FakeAdsServer
from tests.acceptance.test_conversions_crash import PEOPLE, _orders, _statuses, meta_server


@pytest.fixture
def fake() -> Iterator[FakeAdsServer]:
    with FakeAdsServer(clock=SystemClock()) as server:
        yield server


def test_sigterm_lets_sends_in_flight_finish_and_records_them(
    tmp_path: Path, fake: FakeAdsServer
) -> None:
    url = f"sqlite:///{tmp_path}/graceful.db"
    server = meta_server(url, fake, tmp_path / "server.log")
    proc = server.proc
    assert proc is not None
    gate = fake.meta.hold_answers()
    try:
        server.send_batch(_orders())
        eventually(lambda: len(fake.meta.accepted) == PEOPLE, timeout=30)
        proc.terminate()  # SIGTERM, while the engine waits for the platform's answer
        eventually(lambda: not _listening(server), timeout=30)
        time.sleep(1.0)  # the HTTP server is down; the engine must still be stopping
        gate.set()
        assert proc.wait(timeout=60) == 0
    finally:
        gate.set()
        server.stop()
    assert _statuses(url) == ["delivered"] * PEOPLE
    assert fake.meta.duplicates == []


def _listening(server: ServerProcess) -> bool:
    try:
        return server._healthy()
    except RuntimeError:  # exited already
        return False
