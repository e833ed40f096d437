"""Local fakes of Meta CAPI, Google Data Manager, the Google Ads API and TikTok Events API, for
tests and dry runs.

One loopback HTTP server (stdlib, a thread, port 0) serves the routes of research/capi.md §8.3
and the Ads API's `uploadClickConversions`, one module a platform (`ads_meta`, `ads_data_manager`,
`ads_tiktok`, `google_ads`; what they share is `base`), and Google's OAuth token endpoint for
service accounts (`google_token`, at `token_uri`). Each fake:

* checks every request the way the platform documents it (each check names its capi.md section)
  and answers with the platform's own error envelope when a check fails;
* records accepted events, deduplicated the way the platform would (Meta/TikTok: name + event id
  within 48 h; Google: `transactionId`, Ads API: `orderId`, per conversion action);
* can be told to fail: planned responses are served first-in first-out, before any check.

    with FakeAdsServer() as fake:
        fake.meta.plan_bad_event(index=3)
        ...  # point MetaDestination(base_url=fake.base_url) at it
        assert len(fake.meta.accepted) == 0

`FakeAdsProcess` runs the same server in a child process (`python -m leadloop.testing_fakes.ads`),
so a benchmark's client does not share a CPU (and the GIL) with the fake's checks; it exposes the
counts through `GET /_fake/stats` instead of the recorded objects.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import re
import signal
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx2
import msgspec

from leadloop.clock import Clock, ManualClock, SystemClock
from leadloop.testing_fakes.ads_data_manager import FakeGoogle
from leadloop.testing_fakes.ads_meta import FakeMeta
from leadloop.testing_fakes.ads_tiktok import FakeTikTok
from leadloop.testing_fakes.base import FakePlatform, Headers, Recorded
from leadloop.testing_fakes.google_ads import PATH as GOOGLE_ADS_PATH
from leadloop.testing_fakes.google_ads import FakeGoogleAds
from leadloop.testing_fakes.google_token import PATH as GOOGLE_TOKEN_PATH
from leadloop.testing_fakes.google_token import FakeGoogleToken

# --- the server --------------------------------------------------------------------------------

_META_PATH = re.compile(r"/v\d+\.\d+/[^/]+/events")


class FakeAdsServer:
    """All the fakes behind one loopback port; `base_url` goes into each Destination."""

    def __init__(
        self,
        *,
        clock: Clock | None = None,
        meta_access_token: str = "meta-token",
        meta_app_secret: str | None = None,
        google_access_token: str = "google-token",
        google_ads_access_token: str = "google-ads-token",
        google_ads_developer_token: str = "developer-token",
        tiktok_access_token: str = "tiktok-token",
    ) -> None:
        moment = clock or SystemClock()
        self.meta = FakeMeta(moment, meta_access_token, meta_app_secret)
        self.google = FakeGoogle(moment, google_access_token)
        self.google_ads = FakeGoogleAds(moment, google_ads_access_token, google_ads_developer_token)
        self.tiktok = FakeTikTok(moment, tiktok_access_token)
        self.google_token = FakeGoogleToken(moment)
        self.google.issued_token = self.google_ads.issued_token = self.google_token.valid
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self.google_token.audience = self.token_uri
        # A short poll keeps `shutdown()` (and so each test's teardown) quick.
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def base_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    @property
    def token_uri(self) -> str:
        """Google's OAuth token endpoint, for a service-account key file's `token_uri`."""
        return f"{self.base_url}{GOOGLE_TOKEN_PATH}"

    def route(self, path: str) -> FakePlatform | None:
        if _META_PATH.fullmatch(path):
            return self.meta
        if path == "/v1/events:ingest":
            return self.google
        if path == "/open_api/v1.3/event/track/":
            return self.tiktok
        if GOOGLE_ADS_PATH.fullmatch(path):
            return self.google_ads
        if path == GOOGLE_TOKEN_PATH:
            return self.google_token
        return None

    def stats(self) -> dict[str, dict[str, int]]:
        """Counts per platform, as `GET /_fake/stats` serves them."""
        return {
            name: {
                "requests": len(platform.requests),
                "accepted": len(platform.accepted),
                "duplicates": len(platform.duplicates),
                "test_events": len(platform.test_events),
            }
            for name, platform in self.platforms().items()
        }

    def platforms(self) -> dict[str, FakePlatform]:
        return {
            "meta": self.meta,
            "google": self.google,
            "google_ads": self.google_ads,
            "tiktok": self.tiktok,
        }

    def __enter__(self) -> FakeAdsServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()


def _handler_for(fake: FakeAdsServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        # Keep-alive, as the platforms serve it: every answer carries a Content-Length.
        protocol_version = "HTTP/1.1"
        # Headers and body go out in two writes: without TCP_NODELAY, Nagle's algorithm and the
        # client's delayed ACK stall every answer on a kept-alive connection by ~40 ms.
        disable_nagle_algorithm = True

        def do_GET(self) -> None:
            if urlsplit(self.path).path == "/_fake/stats":
                self._send(200, {}, fake.stats())
            else:
                self._send(404, {}, {"error": {"code": 404, "message": "no such route"}})

        def do_POST(self) -> None:
            url = urlsplit(self.path)
            # The body is read first, even for an unknown route, so the connection stays usable.
            raw = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            headers = {k.lower(): v for k, v in self.headers.items()}
            platform = fake.route(url.path)
            if platform is None:
                self._send(404, {}, {"error": {"code": 404, "message": "no such route"}})
                return
            body: Any
            if headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
                body = {k: v[0] for k, v in parse_qs(raw.decode()).items()}
            else:
                try:
                    body = msgspec.json.decode(raw or b"null")
                except msgspec.DecodeError:
                    body = None
            query = {k: v[0] for k, v in parse_qs(url.query).items()}
            recorded = Recorded(url.path, query, headers, body)
            self._send(*platform.handle(recorded))

        def _send(self, status: int, headers: Headers, body: Any) -> None:
            payload = body if isinstance(body, bytes) else msgspec.json.encode(body)
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            for name, value in headers.items():
                for line in [value] if isinstance(value, str) else value:
                    self.send_header(name, line)
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, format: str, *args: Any) -> None:
            pass  # keep test output clean

    return Handler


# --- in a child process ------------------------------------------------------------------------


class FakeAdsProcess:
    """`FakeAdsServer` in a child process: for benchmarks, whose client must not share a core
    (and the GIL) with the fake. `now` pins the fake's clock (`ManualClock`); tokens as above.

        with FakeAdsProcess(now=NOW) as fake:
            ...  # MetaDestination(base_url=fake.base_url)
            assert fake.stats()["meta"]["accepted"] == n
    """

    def __init__(
        self,
        *,
        now: float | None = None,
        meta_access_token: str = "meta-token",
        meta_app_secret: str | None = None,
        google_access_token: str = "google-token",
        tiktok_access_token: str = "tiktok-token",
    ) -> None:
        self._args = [
            "--meta-token",
            meta_access_token,
            "--google-token",
            google_access_token,
            "--tiktok-token",
            tiktok_access_token,
        ]
        if now is not None:
            self._args += ["--now", repr(now)]
        if meta_app_secret is not None:
            self._args += ["--meta-app-secret", meta_app_secret]
        self._process: subprocess.Popen[str] | None = None
        self.base_url = ""

    def __enter__(self) -> FakeAdsProcess:
        command = [sys.executable, "-m", "leadloop.testing_fakes.ads", *self._args]
        self._process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
        assert self._process.stdout is not None
        line = self._process.stdout.readline().strip()
        if not line.startswith("http://"):
            self._stop()
            raise RuntimeError(f"the fake ads server did not start: {line!r}")
        self.base_url = line
        return self

    def stats(self) -> dict[str, dict[str, int]]:
        response = httpx2.get(f"{self.base_url}/_fake/stats", timeout=10)
        response.raise_for_status()
        stats: dict[str, dict[str, int]] = response.json()
        return stats

    def __exit__(self, *exc: object) -> None:
        self._stop()

    def _stop(self) -> None:
        if self._process is None:
            return
        self._process.terminate()
        try:
            self._process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        if self._process.stdout is not None:
            self._process.stdout.close()
        self._process = None


def main(argv: list[str] | None = None) -> None:
    """Serve the fakes on loopback until SIGTERM; the first stdout line is the base URL."""
    parser = argparse.ArgumentParser(prog="python -m leadloop.testing_fakes.ads")
    parser.add_argument("--now", type=float, default=None, help="pin the clock (Unix seconds)")
    parser.add_argument("--meta-token", default="meta-token")
    parser.add_argument("--meta-app-secret", default=None)
    parser.add_argument("--google-token", default="google-token")
    parser.add_argument("--tiktok-token", default="tiktok-token")
    args = parser.parse_args(argv)
    # The fake keeps every accepted event (decoded JSON: many small dicts, no cycles); with the
    # default thresholds the cyclic GC would rescan them all, over and over, during a benchmark.
    gc.set_threshold(100_000, 50, 100)
    clock: Clock = ManualClock(args.now) if args.now is not None else SystemClock()
    server = FakeAdsServer(
        clock=clock,
        meta_access_token=args.meta_token,
        meta_app_secret=args.meta_app_secret,
        google_access_token=args.google_token,
        tiktok_access_token=args.tiktok_token,
    )
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with server:
        print(server.base_url, flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            stop.wait()


if __name__ == "__main__":
    main()
