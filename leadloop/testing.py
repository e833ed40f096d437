"""Test seams shipped with the package: a manual clock, a real server in a subprocess,
free ports and polling helpers. Used by leadloop's own tests and usable by yours."""

from __future__ import annotations

import base64
import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from leadloop.clock import ManualClock

__all__ = ["ManualClock", "ServerProcess", "eventually", "free_port", "run_cli"]
T = TypeVar("T")


def free_port() -> int:
    """A loopback port for a server the caller starts next, kept from everyone else meanwhile.

    A port bound and released at once was free for any socket: an outgoing connection's
    ephemeral port could take it before the server bound it, and the server failed to start.
    Here a connection to it is accepted and closed from the accepting side first, which leaves
    that side in TIME_WAIT (about a minute): the kernel then hands the port to no ephemeral
    bind or connect, while a server that sets SO_REUSEADDR (uvicorn via `leadloop serve`,
    http.server, asyncio, aiosmtpd) still binds it at once."""
    with socket.socket() as listener:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        port = int(listener.getsockname()[1])
        with socket.create_connection(("127.0.0.1", port), timeout=30) as client:
            accepted, _ = listener.accept()
            accepted.close()  # first: the TIME_WAIT is on the port's side
            client.recv(1)  # the close has reached the client before it closes in turn
    return port


def eventually(fn: Callable[[], T | None], timeout: float = 60.0, interval: float = 0.05) -> T:
    """Poll until `fn` returns something truthy (or stops raising AssertionError).

    The default deadline is long on purpose: a condition that holds returns at the first poll
    that sees it, and on a loaded machine (CI's two shared cores) a background thread or a
    server subprocess can take many times its usual second to get there."""
    deadline = time.monotonic() + timeout
    last: BaseException | None = None
    while True:
        try:
            value = fn()
            if value:
                return value
        except AssertionError as exc:
            last = exc
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s") from last
        time.sleep(interval)


def run_cli(*args: str, env: dict[str, str] | None = None, check: bool = True) -> str:
    """Run `python -m leadloop ARGS`; return stdout."""
    proc = subprocess.run(
        [sys.executable, "-m", "leadloop", *args],
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=120,
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"leadloop {' '.join(args)} failed: {proc.stderr}")
    return proc.stdout


@dataclass
class ServerProcess:
    """`leadloop serve` in a subprocess on loopback, with a key and a token for `default`."""

    database_url: str
    port: int = field(default_factory=free_port)
    extra_args: tuple[str, ...] = ()
    env: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen[bytes] | None = None
    write_key: str = ""
    admin_token: str = ""
    log_path: Path | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def full_env(self) -> dict[str, str]:
        return {
            **os.environ,
            "LEADLOOP_DATABASE_URL": self.database_url,
            "NO_PROXY": "127.0.0.1,localhost",
            "no_proxy": "127.0.0.1,localhost",
            **self.env,
        }

    def start(self) -> ServerProcess:
        if not self.write_key:
            self.write_key = run_cli("keys", "create", env=self.full_env).strip().splitlines()[-1]
            self.admin_token = (
                run_cli("tokens", "create", env=self.full_env).strip().splitlines()[-1]
            )
        if self.log_path is not None:
            with open(self.log_path, "ab") as out:  # the child keeps its own copy open
                self.proc = self._spawn(out)
        else:
            self.proc = self._spawn(subprocess.DEVNULL)
        eventually(self._healthy, timeout=30)
        return self

    def _spawn(self, out: Any) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [sys.executable, "-m", "leadloop", "serve", "--port", str(self.port), *self.extra_args],
            env=self.full_env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )

    def _healthy(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise RuntimeError(f"leadloop serve exited with {self.proc.returncode}")
        try:
            with urllib.request.urlopen(self.base + "/healthz", timeout=1) as r:
                return bool(r.status == 200)
        except (urllib.error.URLError, ConnectionError, OSError):
            return False

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(timeout=30)
            self.proc = None

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=30)
            self.proc = None

    def admin(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(
            self.base + path,
            data=data,
            method=method,
            headers={
                "Authorization": f"Bearer {self.admin_token}",
                "Content-Type": "application/json",
            },
        )
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                return r.status, json.loads(r.read() or b"null")
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read() or b"null")

    def send_batch(self, batch: list[dict[str, Any]]) -> None:
        """POST `batch` to `/v1/batch` with the write key, as a Segment client would; 200 or fail."""
        auth = "Basic " + base64.b64encode(f"{self.write_key}:".encode()).decode()
        req = urllib.request.Request(
            self.base + "/v1/batch",
            data=json.dumps({"batch": batch}).encode(),
            headers={"Authorization": auth, "Content-Type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(req, timeout=30) as r:
            if r.status != 200:
                raise AssertionError(f"/v1/batch answered {r.status}")

    def get(self, path: str) -> Any:
        status, body = self.admin("GET", path)
        return body if status == 200 else None

    def wait_processed(self, timeout: float = 30.0) -> None:
        """Until everything in the log has been processed: a lag of 0 and, where the server's
        processor leads, that processor idle (an erasure may have taken every event of a batch
        still in flight). Where it does not say (`idle` null), the lag alone."""

        def processed() -> bool:
            status = self.get("/api/v1/status") or {}
            idle = (status.get("processor") or {}).get("idle")
            return status.get("lag") == 0 and idle is not False

        eventually(processed, timeout=timeout)

    def lookup(self, kind: str, value: str) -> Any:
        from urllib.parse import urlencode

        return self.get("/api/v1/profiles/lookup?" + urlencode({"type": kind, "value": value}))


class WebhookReceiver:
    """A loopback HTTP receiver for outgoing webhooks: answers from a plan of statuses (then
    200), verifies each delivery with the `standardwebhooks` library when given the secret,
    and records what arrived. A plan entry may be `(status, headers)` to answer with headers,
    e.g. `(503, {"Retry-After": "120"})`; a list of values is sent as repeated header lines."""

    def __init__(
        self,
        secret: str | None = None,
        plan: list[int | tuple[int, Mapping[str, str | list[str]]]] | None = None,
        port: int = 0,
    ) -> None:
        import http.server
        import threading

        self.secret = secret
        self.plan = list(plan or [])
        self.deliveries: list[dict[str, Any]] = []
        self.attempts: list[dict[str, Any]] = []
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length)
                headers = {k.lower(): v for k, v in self.headers.items()}
                verified = receiver._verify(headers, body)
                answer = receiver.plan.pop(0) if receiver.plan else 200
                status, extra = answer if isinstance(answer, tuple) else (answer, {})
                record = {"headers": headers, "body": body, "verified": verified, "status": status}
                receiver.attempts.append(record)
                if status == 200 and verified is not False:
                    receiver.deliveries.append(record)
                self.send_response(status)
                for name, value in extra.items():
                    for line in [value] if isinstance(value, str) else value:
                        self.send_header(name, line)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks/sales"

    def _verify(self, headers: dict[str, str], body: bytes) -> bool | None:
        if self.secret is None:
            return None
        from standardwebhooks import Webhook

        try:
            Webhook(self.secret).verify(body, headers)
        except Exception:
            return False
        return True

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)
