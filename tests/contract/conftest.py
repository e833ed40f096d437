from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from leadloop.app import Engine
from leadloop.clock import ManualClock
from leadloop.config import Settings
from leadloop.identity import queries
from leadloop.ingest import parse
from leadloop.storage import workspaces
from leadloop.testing import eventually


class Harness:
    """An in-process engine (writer, processor, timers) on one backend, without HTTP."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def send(self, *messages: dict[str, Any], workspace: str = "default") -> None:
        accepted = parse.parse_request(
            {"batch": list(messages)}, None, received_at=self.engine.clock.now()
        )
        assert isinstance(accepted, list), accepted
        self.engine.writer.append(workspace, accepted).result(timeout=30)

    def settle(self) -> None:
        eventually(lambda: self.engine.read_sync(self.engine.status)["lag"] == 0, timeout=30)
        # The processor commits its batch before the cursor moves: nothing is in flight now.

    def profile(self, kind: str, value: str, workspace: str = "default") -> dict[str, Any] | None:
        def run(c: Any) -> dict[str, Any] | None:
            pid = queries.lookup(c, workspace, kind, value)
            return None if pid is None else queries.profile_view(c, workspace, pid)

        view = self.engine.read_sync(run)
        return None if view is None else self.engine.decorate_profile(view)

    def sql(self, query: str, *params: Any) -> list[tuple[Any, ...]]:
        return self.engine.read_sync(lambda c: c.execute(query, params))

    def add_workspace(self, name: str) -> None:
        now = self.engine.clock.now()
        self.engine.writer.submit(lambda c: workspaces.ensure_workspace(c, name, now)).result()


@pytest.fixture
def harness(backend_url: str) -> Iterator[Harness]:
    engine = Engine(
        Settings(database_url=backend_url), clock=ManualClock(1_800_000_000.0), manual_clock=True
    )
    engine.start()
    try:
        yield Harness(engine)
    finally:
        engine.stop()
