"""`ServerProcess.wait_processed` (acceptance tests against a real server) waits as `settle()`
does: for a lag of 0 and, where the server's processor leads, for it to be idle, which
`GET /api/v1/status` tells under `processor.idle` (null where the processor is elsewhere).
The wait across an erasure is in tests/contract/test_erasure.py, on both backends."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

import uvicorn

from leadloop.app import Engine
from leadloop.storage import workspaces
from leadloop.testing import ServerProcess, eventually, free_port
from tests.integration.conftest import serve_api


@contextmanager
def served(engine: Engine) -> Iterator[ServerProcess]:
    """`engine` over real HTTP in this process, with a `ServerProcess` pointed at it."""
    token = engine.writer.submit(
        lambda c: workspaces.create_admin_token(c, "default", "t", engine.clock.now())
    ).result(timeout=30)
    port = free_port()
    config = uvicorn.Config(engine.asgi(), port=port, log_level="warning", lifespan="off")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        process = ServerProcess(engine.settings.database_url, port=port, admin_token=token)
        eventually(process._healthy, timeout=30)
        yield process
    finally:
        server.should_exit = True
        thread.join(30)


def test_without_a_processor_idle_is_unknown_and_the_lag_alone_counts(sqlite_url: str) -> None:
    """`serve --no-processor`: the processor runs elsewhere, so idle is null, not a guess."""
    for api in serve_api(sqlite_url, run_processor=False):
        with served(api.engine) as server:
            assert server.get("/api/v1/status")["processor"] == {"idle": None, "halted": None}
            server.wait_processed(timeout=5)  # lag 0: returns


def test_a_leading_processor_says_idle(sqlite_url: str) -> None:
    for api in serve_api(sqlite_url):
        with served(api.engine) as server:
            eventually(
                lambda: server.get("/api/v1/status")["processor"] == {"idle": True, "halted": None}
            )
