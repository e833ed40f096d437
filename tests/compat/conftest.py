"""Compat harness (clients.md §7): one leadloop server for the whole session, real tracking
clients run as subprocesses against it, assertions on the *stored* state via the admin API.

Each test gets its own write key and id prefix, so tests share the server without
cross-talk (messageIds are unique per workspace forever, so they are prefixed too).

Node/npm/Chromium: when missing, the tests that need them are skipped with the reason,
unless CI is set, in which case they fail.  The JS packages come from
`cd tests/compat/js && PUPPETEER_SKIP_DOWNLOAD=1 npm ci` (the Makefile's `test` target).
"""

from __future__ import annotations

import functools
import http.server
import os
import shutil
import subprocess
import sys
import threading
import uuid
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from leadloop.testing import ServerProcess, eventually, run_cli

HERE = Path(__file__).resolve().parent
DRIVERS = HERE / "drivers"
JS = HERE / "js"
WWW = JS / "www"
UMD = JS / "node_modules" / "@segment" / "analytics-next" / "dist" / "umd"
DRIVER_TIMEOUT = 60


def require_tool(name: str, env_var: str | None = None) -> str:
    """Path of a tool; skip (or fail when CI is set) if it is missing."""
    path = os.environ.get(env_var) if env_var else None
    path = path or shutil.which(name)
    if path:
        return path
    reason = f"{name} not found on PATH" + (f" (or in ${env_var})" if env_var else "")
    if os.environ.get("CI"):
        pytest.fail(f"CI is set but {reason}", pytrace=False)
    pytest.skip(reason)


def require_js_packages() -> None:
    """The npm packages are installed from the committed lock file; without them, fail."""
    require_tool("node")
    require_tool("npm")
    if not (JS / "node_modules" / "@segment" / "analytics-node").is_dir() or not UMD.is_dir():
        pytest.fail(
            "tests/compat/js/node_modules is missing: run "
            "`cd tests/compat/js && PUPPETEER_SKIP_DOWNLOAD=1 npm ci` (make test does)",
            pytrace=False,
        )


class KeyPool:
    """Write keys made ahead by `leadloop keys create` (about a second of interpreter start
    each) on a few threads, so a test rarely waits for its fresh key."""

    def __init__(self, server: ServerProcess, ahead: int = 4) -> None:
        self._server = server
        self._executor = ThreadPoolExecutor(max_workers=ahead, thread_name_prefix="keys")
        self._ready: deque[Future[str]] = deque(self._submit() for _ in range(ahead))

    def _submit(self) -> Future[str]:
        return self._executor.submit(
            lambda: run_cli("keys", "create", env=self._server.full_env).strip().splitlines()[-1]
        )

    def take(self) -> str:
        self._ready.append(self._submit())
        return self._ready.popleft().result(timeout=60)

    def close(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)


@dataclass
class Engine:
    server: ServerProcess
    keys: KeyPool

    @property
    def base(self) -> str:
        return self.server.base

    @property
    def port(self) -> int:
        return self.server.port

    def new_write_key(self) -> str:
        return self.keys.take()

    def get(self, path: str) -> Any:
        return self.server.get(path)

    def status(self) -> dict[str, Any]:
        status = self.server.get("/api/v1/status")
        assert status is not None, "GET /api/v1/status failed"
        return dict(status)

    def wait_processed(self) -> None:
        self.server.wait_processed(timeout=20)

    def lookup(self, kind: str, value: str) -> Any:
        return self.server.lookup(kind, value)

    def profile(self, user_id: str) -> dict[str, Any]:
        """The profile of `user_id`, once everything received so far is processed."""
        self.wait_processed()
        return dict(
            eventually(lambda: self.lookup("user_id", user_id), timeout=10),
        )

    def events(self, profile_id: str) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        after = 0
        while True:
            page = self.get(f"/api/v1/profiles/{profile_id}/events?after={after}&limit=1000")
            assert page is not None, f"GET events of profile {profile_id} failed"
            out.extend(page["events"])
            if page.get("next_after") is None:
                return out
            after = page["next_after"]

    def account(self, group_id: str) -> Any:
        from urllib.parse import quote

        return self.get("/api/v1/accounts/" + quote(group_id, safe=""))


@pytest.fixture(scope="session")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    root = tmp_path_factory.mktemp("compat-engine")
    server = ServerProcess(
        database_url=f"sqlite:///{root / 'db.sqlite'}", log_path=root / "server.log"
    ).start()
    keys = KeyPool(server)
    try:
        yield Engine(server, keys)
    finally:
        keys.close()
        server.stop()


@pytest.fixture
def write_key(engine: Engine) -> str:
    return engine.new_write_key()


@pytest.fixture
def prefix(request: pytest.FixtureRequest) -> str:
    name = "".join(c if c.isalnum() else "-" for c in request.node.name)[:40].strip("-")
    return f"{name}-{uuid.uuid4().hex[:6]}-"


def run_driver(
    argv: list[str], cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run a client driver; fail the test with its output if it exits non-zero."""
    proc = subprocess.run(
        argv,
        cwd=cwd,
        env={
            **os.environ,
            "NO_PROXY": "127.0.0.1,localhost",
            "no_proxy": "127.0.0.1,localhost",
            **(env or {}),
        },
        capture_output=True,
        text=True,
        timeout=DRIVER_TIMEOUT,
        check=False,
    )
    if proc.returncode != 0:
        pytest.fail(
            f"driver {' '.join(map(str, argv))} exited {proc.returncode}\n"
            f"--- stdout\n{proc.stdout}\n--- stderr\n{proc.stderr}",
            pytrace=False,
        )
    return proc


def python_driver(name: str) -> list[str]:
    return [sys.executable, str(DRIVERS / f"{name}.py")]


class _PageHandler(http.server.SimpleHTTPRequestHandler):
    """js/www, plus the npm UMD bundle of analytics-next at /analytics-next/bundles/."""

    def translate_path(self, path: str) -> str:
        clean = path.split("?", 1)[0].split("#", 1)[0]
        bundles = "/analytics-next/bundles/"
        if clean.startswith(bundles):
            name = clean[len(bundles) :]
            if "/" in name or name.startswith("."):
                return str(WWW / "missing")
            return str(UMD / name)
        return super().translate_path(path)

    def end_headers(self) -> None:
        self.send_header("Cache-Control", "no-store")
        super().end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture(scope="session")
def page_server() -> Iterator[str]:
    """A second loopback origin for the browser page (cross-origin to the engine)."""
    handler = functools.partial(_PageHandler, directory=str(WWW))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)
