from __future__ import annotations

import base64
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from starlette.testclient import TestClient

from leadloop.app import Engine
from leadloop.config import Settings
from leadloop.storage import workspaces
from leadloop.testing import eventually


@dataclass
class Api:
    engine: Engine
    client: TestClient
    write_key: str
    token: str
    other_key: str
    other_token: str

    def basic(self, key: str | None = None) -> dict[str, str]:
        raw = base64.b64encode(f"{key or self.write_key}:".encode()).decode()
        return {"Authorization": f"Basic {raw}"}

    def bearer(self, token: str | None = None) -> dict[str, str]:
        return {"Authorization": f"Bearer {token or self.token}"}

    def settle(self) -> None:
        # As `wait_processed` over HTTP: a lag of 0 may also mean an erasure deleted the events
        # of a batch still in flight, so where this engine's processor leads, it must be idle.
        processor = self.engine.processor

        def settled() -> bool:
            caught_up = self.engine.read_sync(self.engine.status)["lag"] == 0
            return caught_up and processor.idle_here() is not False

        eventually(settled, timeout=30)

    def event_count(self) -> int:
        return int(self.engine.read_sync(lambda c: c.execute("SELECT COUNT(*) FROM events"))[0][0])


@pytest.fixture
def api(sqlite_url: str) -> Iterator[Api]:
    yield from serve_api(sqlite_url)


@pytest.fixture
def any_api(backend_url: str) -> Iterator[Api]:
    """`api` on each backend: SQLite and PostgreSQL refuse different inputs."""
    yield from serve_api(backend_url)


def serve_api(
    url: str, *, run_processor: bool = True, playbook: str | None = None
) -> Iterator[Api]:
    """An engine on `url` with two workspaces' keys and tokens, and a client for its HTTP.
    Without `run_processor`, a test processes the log itself (`engine.processor.run_once`)."""
    engine = Engine(
        Settings(database_url=url, playbook=playbook),
        manual_clock=True,
        run_processor=run_processor,
    )
    engine.start()

    def keys(c):  # type: ignore[no-untyped-def]
        now = engine.clock.now()
        workspaces.ensure_workspace(c, "other", now)
        return (
            workspaces.create_write_key(c, "default", "t", now),
            workspaces.create_admin_token(c, "default", "t", now),
            workspaces.create_write_key(c, "other", "t", now),
            workspaces.create_admin_token(c, "other", "t", now),
        )

    wk, tk, owk, otk = engine.writer.submit(keys).result()
    with TestClient(engine.asgi()) as client:
        yield Api(engine, client, wk, tk, owk, otk)
    engine.stop()
