"""Local fake of TikTok's Events API (`POST /open_api/v1.3/event/track/`, capi.md §3): errors
arrive as HTTP 200 with a non-zero `code`, as TikTok answers them; dedup is event + event id
within 48 hours. The server is `ads`.
"""

from __future__ import annotations

from typing import Any

from leadloop.clock import Clock
from leadloop.testing_fakes.base import HEX64, FakePlatform, Invalid, Recorded, Response
from leadloop.testing_fakes.base import require as _require
from leadloop.testing_fakes.base import require_list as _require_list

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
