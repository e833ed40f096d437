"""What every local platform fake shares: the recorded request, the failed check, planned
answers served first-in first-out, and dedup within the platforms' 48-hour window."""

from __future__ import annotations

import re
import threading
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from leadloop.clock import Clock

HEX64 = re.compile(r"[0-9a-f]{64}")
DAY = 86_400.0
DEDUP_WINDOW = 2 * DAY


@dataclass(frozen=True)
class Recorded:
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: Any


class Invalid(Exception):
    """A check failed; `index` is the event at fault when there is one."""

    def __init__(self, message: str, index: int | None = None, field_path: str = "") -> None:
        super().__init__(message)
        self.index = index
        self.field_path = field_path


Headers = Mapping[str, str | list[str]]
"""Extra answer headers; a list is sent as that many header lines (a repeated field)."""
Response = tuple[int, Headers, Any]
"""Status, extra headers, JSON body: what a fake answers, or what a test plans it to answer."""


class FakePlatform:
    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.requests: list[Recorded] = []
        self.accepted: list[dict[str, Any]] = []
        self.duplicates: list[dict[str, Any]] = []
        self.test_events: list[dict[str, Any]] = []
        self._seen: dict[tuple[str, str], float] = {}
        self._planned: deque[Response] = deque()
        self._lock = threading.Lock()
        self._gate: threading.Event | None = None
        self.issued_token: Callable[[str], bool] | None = None
        """Also take bearer tokens this says are valid (the fake token endpoint's)."""

    def bearer_ok(self, header: str | None, static_token: str) -> bool:
        """`Authorization: Bearer` with the fake's static token or one the token endpoint
        issued and has not expired or revoked."""
        if header is None or not header.startswith("Bearer "):
            return False
        token = header.removeprefix("Bearer ")
        if token == static_token:
            return True
        return self.issued_token is not None and self.issued_token(token)

    def hold_answers(self) -> threading.Event:
        """From now on, record and accept each request as usual but keep its answer back until
        the returned event is set: the sender has been heard and has not yet heard back, which
        is where a crash test kills it."""
        gate = threading.Event()
        self._gate = gate
        return gate

    def plan(self, status: int, body: Any, headers: Headers | None = None) -> None:
        with self._lock:
            self._planned.append((status, headers or {}, body))

    def plan_server_error(self, status: int = 500) -> None:
        self.plan(status, {"error": {"code": status, "message": "planned"}})

    def plan_rate_limit(self, retry_after: int = 1) -> None:
        self.plan(429, self._rate_limit_body(), {"Retry-After": str(retry_after)})

    def _rate_limit_body(self) -> Any:
        return {"error": {"code": 429, "message": "rate limited"}}

    def handle(self, request: Recorded) -> Response:
        with self._lock:
            self.requests.append(request)
            answer = self._planned.popleft() if self._planned else self.serve(request)
            gate = self._gate
        if gate is not None:
            gate.wait(timeout=60)
        return answer

    def serve(self, request: Recorded) -> Response:
        raise NotImplementedError

    def _record_within_window(self, events: list[dict[str, Any]], name: str, test: bool) -> None:
        now = self.clock.now()
        for event in events:
            key = (str(event[name]), str(event.get("event_id", "")))
            first = self._seen.get(key)
            if test:
                self.test_events.append(event)
            elif event.get("event_id") and first is not None and now - first < DEDUP_WINDOW:
                self.duplicates.append(event)
            else:
                self._seen[key] = now
                self.accepted.append(event)


def require(condition: bool, message: str, index: int | None = None, path: str = "") -> None:
    if not condition:
        raise Invalid(message, index, path)


def require_list(value: Any, most: int, message: str, path: str = "") -> list[Any]:
    if not isinstance(value, list) or not 1 <= len(value) <= most:
        raise Invalid(message, None, path)
    return value
