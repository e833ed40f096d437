"""Composition root: builds storage, the writer, the processor and its stages, timers and
the HTTP app, in flow order."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from fastapi import FastAPI
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from leadloop.api.admin import admin_router, install_error_handlers
from leadloop.clock import Clock, ManualClock, SystemClock
from leadloop.config import Settings
from leadloop.ingest.http import TrackingApp
from leadloop.log.processor import Processor
from leadloop.log.timers import TimerLoop
from leadloop.log.writer import Writer
from leadloop.storage import workspaces
from leadloop.storage.db import DatabaseUrl, PostgresConnection, SqliteConnection, connect
from leadloop.storage.migrate import migrate

log = logging.getLogger("leadloop")
T = TypeVar("T")
Conn = SqliteConnection | PostgresConnection


def prepare_database(url: DatabaseUrl, clock: Clock) -> None:
    """Apply migrations and make sure the `default` workspace exists."""
    conn = connect(url)
    try:
        for migration in migrate(conn):
            log.info("applied migration %04d_%s", migration.version, migration.name)
        with conn.transaction():
            workspaces.ensure_workspace(conn, workspaces.DEFAULT_WORKSPACE, clock.now())
    finally:
        conn.close()


class Engine:
    """One running leadloop: API, writer, processor and timers sharing one database."""

    def __init__(
        self,
        settings: Settings,
        *,
        clock: Clock | None = None,
        manual_clock: bool = False,
        run_processor: bool = True,
        serve_api: bool = True,
    ) -> None:
        self.settings = settings
        self.url = DatabaseUrl.parse(settings.database_url)
        self.manual_clock: ManualClock | None = None
        if manual_clock:
            self.manual_clock = clock if isinstance(clock, ManualClock) else ManualClock()
            self.clock: Clock = self.manual_clock
        else:
            self.clock = clock or SystemClock()
        self.writer = Writer(
            self._connect, max_pending=settings.max_pending_events, on_commit=self._committed
        )
        self.processor = Processor(
            self._connect, self.writer, self.clock, default_region=settings.default_region
        )
        self.timers = TimerLoop(self.writer, self.clock)
        self._run_processor = run_processor
        self._local = threading.local()
        self._readers: list[Conn] = []
        self._readers_lock = threading.Lock()
        self._key_cache: dict[str, str] = {}
        self._token_cache: dict[str, str] = {}
        self.profile_decorators: list[Callable[[Conn, dict[str, Any]], None]] = []

    def _connect(self) -> Conn:
        return connect(self.url)

    def _committed(self) -> None:
        self.processor.wake()

    # -- lifecycle -----------------------------------------------------------------------

    def start(self) -> None:
        prepare_database(self.url, self.clock)
        self.writer.start()
        if self._run_processor:
            self.processor.start()
            self.timers.start()

    def stop(self) -> None:
        if self._run_processor:
            self.timers.stop()
            self.processor.stop()
        self.writer.stop()
        with self._readers_lock:
            readers, self._readers = self._readers, []
        for conn in readers:
            try:
                conn.close()
            except Exception:  # a reader owned by another thread may be mid-query at exit
                log.debug("closing a reader connection failed", exc_info=True)
        self._local = threading.local()

    # -- reads (thread-local connections, run off the event loop) ------------------------

    def _reader(self) -> Conn:
        conn: Conn | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._connect()
            self._local.conn = conn
            with self._readers_lock:
                self._readers.append(conn)
        return conn

    def read_sync(self, fn: Callable[[Conn], T]) -> T:
        return fn(self._reader())

    async def read(self, fn: Callable[[Conn], T]) -> T:
        return await asyncio.to_thread(self.read_sync, fn)

    async def workspace_for_write_key(self, key: str) -> str | None:
        found = self._key_cache.get(key)
        if found is None:
            found = await self.read(lambda c: workspaces.workspace_for_write_key(c, key))
            if found is not None and len(self._key_cache) < 10_000:
                self._key_cache[key] = found
        return found

    async def workspace_for_token(self, token: str) -> str | None:
        found = self._token_cache.get(token)
        if found is None:
            found = await self.read(lambda c: workspaces.workspace_for_token(c, token))
            if found is not None and len(self._token_cache) < 10_000:
                self._token_cache[token] = found
        return found

    def status(self, conn: Conn) -> dict[str, Any]:
        from leadloop.log import store
        from leadloop.log.processor import CURSOR

        return {
            "log_length": store.log_length(conn),
            "processor_position": store.get_cursor(conn, CURSOR),
            "lag": store.lag(conn, CURSOR),
            "writer_pending": self.writer.pending,
            "clock": "manual" if self.manual_clock else "system",
            "now": self.clock.now(),
        }

    def decorate_profile(self, view: dict[str, Any]) -> dict[str, Any]:
        for decorate in self.profile_decorators:
            self.read_sync(lambda c, d=decorate: d(c, view))  # type: ignore[misc]
        return view

    async def advance_clock(self, seconds: float) -> float:
        assert self.manual_clock is not None
        now = self.manual_clock.advance(seconds)
        # Due timers become events before the answer, so a caller can read their effect.
        await asyncio.to_thread(self.timers.fire_now)
        self.processor.wake()
        return now

    # -- HTTP ----------------------------------------------------------------------------

    def asgi(self) -> TrackingApp:
        """The whole HTTP surface: the tracking hot path in front of the admin app."""
        return TrackingApp(self, self.admin_app())

    def admin_app(self) -> FastAPI:
        app = FastAPI(
            title="leadloop",
            version="0.1.0",
            openapi_url="/api/v1/openapi.json",
            docs_url="/api/v1/docs",
            redoc_url=None,
        )
        install_error_handlers(app)

        async def healthz(request: Request) -> Response:
            return JSONResponse({"status": "ok"})

        app.add_route("/healthz", healthz, methods=["GET"])
        app.include_router(admin_router(self))
        return app
