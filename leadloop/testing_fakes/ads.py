"""Local fakes of Meta CAPI, Google Data Manager, the Google Ads API and TikTok Events API, for
tests and dry runs.

One loopback HTTP server (stdlib, a thread, port 0) serves the routes of research/capi.md §8.3
and the Ads API's `uploadClickConversions` (`testing_fakes.google_ads`). Each fake:

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
import hashlib
import hmac
import json
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx2
import msgspec

from leadloop.clock import Clock, ManualClock, SystemClock
from leadloop.testing_fakes.base import (
    DAY,
    HEX64,
    FakePlatform,
    Invalid,
    Recorded,
    Response,
)
from leadloop.testing_fakes.base import require as _require
from leadloop.testing_fakes.base import require_list as _require_list
from leadloop.testing_fakes.google_ads import PATH as GOOGLE_ADS_PATH
from leadloop.testing_fakes.google_ads import FakeGoogleAds

BASE64_SHA256 = re.compile(r"[A-Za-z0-9+/]{43}=")


def _check_hex_list(value: Any, what: str, index: int) -> None:
    # Meta emits hashed keys as arrays of lowercase SHA-256 hex (capi.md §1.3). Messages are
    # built only on failure: this runs for every key of every event of a 1,000-event batch.
    if not isinstance(value, list) or not value:
        raise Invalid(f"{what} must be an array", index)
    for item in value:
        if not isinstance(item, str) or len(item) != 64 or not HEX64.fullmatch(item):
            raise Invalid(f"{what} not hashed", index)


# --- Meta --------------------------------------------------------------------------------------

META_ACTION_SOURCES = frozenset(
    {"email", "website", "app", "phone_call", "chat", "physical_store", "system_generated"}
    | {"business_messaging", "other"}
)  # capi.md §1.2, SDK 26.0.3 enum
META_HASHED = frozenset({"em", "ph", "fn", "ln", "ge", "db", "ct", "st", "zp", "country"})  # §1.3
META_PLAIN = frozenset({"client_ip_address", "client_user_agent", "fbc", "fbp", "lead_id"})  # §1.3
LEAD_ID = re.compile(r"\d{15,16}")
CURRENCY = re.compile(r"[A-Za-z]{3}")
CURRENCY_MESSAGE = "currency must be 3 letters"


class FakeMeta(FakePlatform):
    def __init__(self, clock: Clock, access_token: str, app_secret: str | None) -> None:
        super().__init__(clock)
        self.access_token = access_token
        self.app_secret = app_secret

    def plan_bad_event(self, index: int, subcode: int = 2804003) -> None:
        """A whole-batch 400 naming one event, as when one `event_time` is too old (§1.1).
        The "Event index: i" wording is this fake's convention; `decide` reads it as a hint."""
        self.plan(400, _graph_error(100, f"Invalid parameter. Event index: {index}", subcode))

    def plan_graph_error(self, status: int, code: int, subcode: int | None = None) -> None:
        self.plan(status, _graph_error(code, "planned error", subcode))

    def _rate_limit_body(self) -> Any:
        return _graph_error(17, "User request limit reached")  # §1.5: throttling family

    def serve(self, request: Recorded) -> Response:
        # §1.1: token in the query string; wrong token is a Graph OAuthException, code 190.
        if request.query.get("access_token") != self.access_token:
            return 400, {}, _graph_error(190, "Invalid OAuth access token.")
        body = request.body if isinstance(request.body, dict) else {}
        if self.app_secret is not None:
            # §1.1: appsecret_proof = HMAC-SHA256(app_secret, access_token) hex.
            expected = hmac.new(
                self.app_secret.encode(), self.access_token.encode(), hashlib.sha256
            ).hexdigest()
            proof = body.get("appsecret_proof") or request.query.get("appsecret_proof")
            if proof != expected:
                return 400, {}, _graph_error(100, "Invalid appsecret_proof")
        try:
            events = self._check(body)
        except Invalid as invalid:
            subcode = 2804003 if "too old" in str(invalid) else None
            message = str(invalid)
            if invalid.index is not None:
                message += f". Event index: {invalid.index}"
            return 400, {}, _graph_error(100, message, subcode)
        # §1.1: test events show in Test Events only; §1.2: same name + id within 48 h, first kept.
        self._record_within_window(events, "event_name", bool(body.get("test_event_code")))
        return 200, {}, {"events_received": len(events), "messages": [], "fbtrace_id": "fake"}

    def _check(self, body: dict[str, Any]) -> list[dict[str, Any]]:
        data = body.get("data")
        if isinstance(data, str):  # form-encoded bodies carry `data` as a JSON string (§1.1)
            data = json.loads(data)
        data = _require_list(data, 1000, "data must hold 1-1000 events")
        now = self.clock.now()
        for i, event in enumerate(data):
            _require(isinstance(event, dict), "event must be an object", i)
            _require(bool(event.get("event_name")), "event_name required", i)
            event_time = event.get("event_time")
            _require(isinstance(event_time, int), "event_time must be integer seconds", i)
            source = event.get("action_source")
            _require(source in META_ACTION_SOURCES, "action_source invalid", i)
            # §1.1: ≤7 days (62 for physical_store); one old event fails the whole request.
            max_age = (62 if source == "physical_store" else 7) * DAY
            _require(now - event_time <= max_age, "event_time too old", i)
            user = event.get("user_data")
            if not isinstance(user, dict) or not user:
                raise Invalid("user_data required", i)
            if source == "website":  # §1.2: web events need these two
                _require(bool(event.get("event_source_url")), "event_source_url required", i)
                _require(bool(user.get("client_user_agent")), "client_user_agent required", i)
            for key, value in user.items():
                if key in META_HASHED:
                    _check_hex_list(value, key, i)
                elif key in META_PLAIN and not isinstance(value, str):
                    raise Invalid(f"{key} must be a string", i)
            if "external_id" in user:  # hashing recommended, not required (§1.3)
                _require(isinstance(user["external_id"], list), "external_id must be an array", i)
            if "lead_id" in user:  # §1.4: the 15-16 digit leadgen_id, unhashed
                _require(bool(LEAD_ID.fullmatch(user["lead_id"])), "lead_id invalid", i)
            custom = event.get("custom_data", {})
            _require(isinstance(custom, dict), "custom_data must be an object", i)
            if "currency" in custom:  # §1.2: ISO-4217
                _require(bool(CURRENCY.fullmatch(str(custom["currency"]))), CURRENCY_MESSAGE, i)
            options = event.get("data_processing_options")
            if options is not None:  # §6.4: ["LDU"] + country/state, or []
                _require(options in ([], ["LDU"]), "data_processing_options invalid", i)
                if options == ["LDU"]:
                    where = ("data_processing_options_country", "data_processing_options_state")
                    ints = all(isinstance(event.get(key), int) for key in where)
                    _require(ints, "LDU needs country and state", i)
        return data


def _graph_error(code: int, message: str, subcode: int | None = None) -> dict[str, Any]:
    error: dict[str, Any] = {"message": message, "type": "OAuthException", "code": code}
    if subcode is not None:
        error.update(error_subcode=subcode, error_user_msg=message)
    error["fbtrace_id"] = "fake"
    return {"error": error}  # §1.5 envelope


# --- Google Data Manager -----------------------------------------------------------------------

GOOGLE_ACCOUNT_TYPES = {"GOOGLE_ADS", "DISPLAY_VIDEO_PARTNER", "DISPLAY_VIDEO_ADVERTISER"}
GOOGLE_CONSENT = {"CONSENT_GRANTED", "CONSENT_DENIED", 1, 2}  # §2.5: names or ints
GOOGLE_EVENT_SOURCES = {"WEB", "APP", "IN_STORE", "PHONE", "MESSAGE", "OTHER"}  # §2.2


class FakeGoogle(FakePlatform):
    def __init__(self, clock: Clock, access_token: str) -> None:
        super().__init__(clock)
        self.access_token = access_token
        self.validated: list[dict[str, Any]] = []
        self._transactions: set[tuple[str, str]] = set()
        self._request_ids: Iterator[int] = iter(range(1, 10**9))

    def plan_invalid_argument(self, index: int, field_name: str = "eventTimestamp") -> None:
        self.plan(400, _google_error(Invalid("planned", index, field_name)))

    def serve(self, request: Recorded) -> Response:
        if request.headers.get("authorization") != f"Bearer {self.access_token}":
            error = {"code": 401, "status": "UNAUTHENTICATED", "message": "bad credentials"}
            return 401, {}, {"error": error}
        body = request.body if isinstance(request.body, dict) else {}
        try:
            product_ids = self._check(body)
        except Invalid as invalid:
            return 400, {}, _google_error(invalid)  # §2.1: fast-fail, whole request
        events: list[dict[str, Any]] = body["events"]
        if body.get("validateOnly"):
            self.validated.extend(events)  # §2.2: validated, not executed
        else:
            for event in events:
                for product in product_ids:
                    key = (product, str(event.get("transactionId", "")))
                    if event.get("transactionId") and key in self._transactions:
                        self.duplicates.append(event)  # §6.2: transaction id dedup
                        continue
                    self._transactions.add(key)
                    self.accepted.append(event)
        return 200, {}, {"requestId": f"fake-{next(self._request_ids)}"}

    def _check(self, body: dict[str, Any]) -> list[str]:
        destinations = _require_list(body.get("destinations"), 10, "destinations", "destinations")
        products = []
        for d, destination in enumerate(destinations):
            where = f"destinations[{d}]"
            account = destination.get("operatingAccount") or {}
            # §2.2: the account that owns the conversion action, and the action itself.
            type_ok = account.get("accountType") in GOOGLE_ACCOUNT_TYPES | {1, 2, 3}
            account_ok = type_ok and bool(account.get("accountId"))
            _require(account_ok, "operatingAccount", path=f"{where}.operatingAccount")
            product = destination.get("productDestinationId")
            _require(bool(product), "productDestinationId", path=f"{where}.productDestinationId")
            products.append(str(destination["productDestinationId"]))
        events = _require_list(body.get("events"), 2000, "events must hold 1-2000 items", "events")
        encoding = body.get("encoding")
        for i, event in enumerate(events):
            stamp_ok = _is_rfc3339(event.get("eventTimestamp"))
            _require(stamp_ok, "eventTimestamp not RFC3339", i, "eventTimestamp")
            source = event.get("eventSource", "WEB")
            source_ok = source in GOOGLE_EVENT_SOURCES or isinstance(source, int)
            _require(source_ok, "eventSource", i, "eventSource")
            for name, value in (event.get("consent") or {}).items():
                _require(value in GOOGLE_CONSENT, "consent value", i, f"consent.{name}")
            identifiers = (event.get("userData") or {}).get("userIdentifiers", [])
            _require(len(identifiers) <= 10, "at most 10 identifiers", i, "userData")
            if identifiers:  # §2.2: encoding is required for user data
                _require(encoding in ("HEX", "BASE64", 1, 2), "encoding required", path="encoding")
            for identifier in identifiers:
                _check_google_identifier(identifier, encoding, i)
        return products


def _check_google_identifier(identifier: dict[str, Any], encoding: Any, i: int) -> None:
    # §2.4: email, phone and names hashed; region and postal code sent in clear.
    address = identifier.get("address", {})
    hashed: dict[str, Any] = {
        k: identifier[k] for k in ("emailAddress", "phoneNumber") if k in identifier
    }
    hashed.update({f"address.{k}": address.get(k) for k in ("givenName", "familyName") if address})
    for key, value in hashed.items():
        _require(_is_hashed(value, encoding), f"{key} not hashed", i, f"userData.{key}")
    if address:
        region_ok = bool(re.fullmatch(r"[A-Z]{2}", str(address.get("regionCode"))))
        _require(region_ok, "regionCode", i, "userData.address.regionCode")
        postal = str(address.get("postalCode", ""))
        postal_ok = bool(postal) and not HEX64.fullmatch(postal)
        _require(postal_ok, "postalCode must be sent unhashed", i, "userData.address.postalCode")


def _is_hashed(value: Any, encoding: Any) -> bool:
    if not isinstance(value, str):
        return False
    if encoding in ("BASE64", 2):
        return bool(BASE64_SHA256.fullmatch(value))
    return bool(HEX64.fullmatch(value))


def _is_rfc3339(value: Any) -> bool:
    if not isinstance(value, str) or "T" not in value:
        return False
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).tzinfo is not None
    except ValueError:
        return False


def _google_error(invalid: Invalid) -> dict[str, Any]:
    # google.rpc.Status with a BadRequest detail naming the field (standard Google API errors).
    path = invalid.field_path
    if invalid.index is not None:
        path = f"events[{invalid.index}].{path}" if path else f"events[{invalid.index}]"
    violation = {"field": path, "description": str(invalid)}
    detail = {"@type": "type.googleapis.com/google.rpc.BadRequest", "fieldViolations": [violation]}
    error = {"code": 400, "status": "INVALID_ARGUMENT", "message": str(invalid)}
    return {"error": {**error, "details": [detail]}}


# --- TikTok ------------------------------------------------------------------------------------

TIKTOK_SOURCES = {"web", "app", "offline", "crm"}  # §3 (values other than web: integrators)
TIKTOK_INVALID = 40000
"""This fake's code for a failed check: TikTok's own validation codes are unverified (§9); any
non-zero code outside the auth and rate-limit sets is a data error to `decide`."""


class FakeTikTok(FakePlatform):
    def __init__(self, clock: Clock, access_token: str) -> None:
        super().__init__(clock)
        self.access_token = access_token

    def plan_error_code(self, code: int, message: str = "planned error") -> None:
        """§3: errors arrive as HTTP 200 with a non-zero `code` (40100 rate limit, 40001 auth)."""
        self.plan(200, {"code": code, "message": message, "request_id": "fake"})

    def _rate_limit_body(self) -> Any:
        return {"code": 40100, "message": "Too many requests"}

    def serve(self, request: Recorded) -> Response:
        if request.headers.get("access-token") != self.access_token:  # §3: Access-Token header
            return 200, {}, {"code": 40001, "message": "Authentication failed", "request_id": "x"}
        body = request.body if isinstance(request.body, dict) else {}
        try:
            events = self._check(body)
        except Invalid as invalid:
            where = f" data[{invalid.index}]" if invalid.index is not None else ""
            return 200, {}, {"code": TIKTOK_INVALID, "message": f"{invalid}{where}"}
        # §3 (TikTok help, Event Deduplication): same event + event_id within 48 h.
        self._record_within_window(events, "event", bool(body.get("test_event_code")))
        return 200, {}, {"code": 0, "message": "OK", "request_id": "fake"}

    def _check(self, body: dict[str, Any]) -> list[dict[str, Any]]:
        _require(body.get("event_source") in TIKTOK_SOURCES, "event_source invalid")
        _require(bool(body.get("event_source_id")), "event_source_id required")
        data = body.get("data")
        data = _require_list(data, 1000, "data must hold 1-1000 events")
        for i, event in enumerate(data):
            _require(bool(event.get("event")), "event required", i)
            event_time = event.get("event_time")
            # §3: Unix seconds (milliseconds would be > 1e11 for any date after 1973).
            _require(isinstance(event_time, int) and event_time < 10**11, "event_time seconds", i)
            user = event.get("user", {})
            for key in ("email", "phone", "external_id"):  # §3: SHA-256, 64 hex
                values = user.get(key)
                if values is None:
                    continue
                for value in values if isinstance(values, list) else [values]:
                    hashed = isinstance(value, str) and bool(HEX64.fullmatch(value))
                    _require(hashed, f"user.{key} not hashed", i)
        return data


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
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        # A short poll keeps `shutdown()` (and so each test's teardown) quick.
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def base_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def route(self, path: str) -> FakePlatform | None:
        if _META_PATH.fullmatch(path):
            return self.meta
        if path == "/v1/events:ingest":
            return self.google
        if path == "/open_api/v1.3/event/track/":
            return self.tiktok
        if GOOGLE_ADS_PATH.fullmatch(path):
            return self.google_ads
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

        def _send(self, status: int, headers: dict[str, str], body: Any) -> None:
            payload = body if isinstance(body, bytes) else msgspec.json.encode(body)
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            for name, value in headers.items():
                self.send_header(name, value)
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
