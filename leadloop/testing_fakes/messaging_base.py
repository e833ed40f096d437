"""What the messaging fakes share: the recorded request, the refusal, one provider's planned
answers (served first-in first-out, before any check) and its error envelope, and the bearer and
JSON checks every Graph-style API makes. The HTTP server itself is `messaging`.
"""

from __future__ import annotations

import json
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

Response = tuple[int, dict[str, str], Any]


@dataclass(frozen=True)
class Recorded:
    method: str
    path: str
    headers: dict[str, str]
    body: Any


class Refused(Exception):
    def __init__(self, status: int, body: Any) -> None:
        super().__init__(str(body))
        self.status = status
        self.body = body


@dataclass
class FakeProvider:
    name: str
    requests: list[Recorded] = field(default_factory=list)
    accepted: list[Any] = field(default_factory=list)
    _planned: deque[Response] = field(default_factory=deque)
    on_accept: Callable[[dict[str, Any]], None] | None = None
    """Called with each accepted message before the answer goes: a test posts the receipt a
    fast provider sends while the sender still waits for that answer."""
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def plan(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        with self._lock:
            self._planned.append((status, headers or {}, body))

    def plan_server_error(self, status: int = 500) -> None:
        self.plan(status, self.error_body(status, "planned server error", 1))

    def plan_rate_limit(self, retry_after: int = 1) -> None:
        # Twilio: HTTP 429, error 20429 (Twilio "Error 20429: Too Many Requests").
        # Graph API: HTTP 429/400 with code 4 ("Application request limit reached"; WhatsApp
        # throughput is 130429 "Rate limit hit", Cloud API "Error codes").
        # Data Manager: HTTP 429 RESOURCE_EXHAUSTED ("Limits and quotas"; ErrorReason).
        code = {"twilio": 20429, "whatsapp": 130429}.get(self.name, 4)
        self.plan(
            429, self.error_body(429, "rate limit hit", code), {"Retry-After": str(retry_after)}
        )

    def error_body(
        self, status: int, message: str, code: int, reason: str = "", field_path: str = ""
    ) -> Any:
        if self.name == "google":
            return google_error(status, message, reason, field_path)
        if self.name == "twilio":
            # Twilio REST API error envelope ("REST API: Errors").
            return {
                "code": code,
                "message": message,
                "more_info": f"https://www.twilio.com/docs/errors/{code}",
                "status": status,
            }
        # Graph API error envelope ("Graph API: Handling errors").
        return {
            "error": {
                "message": message,
                "type": "OAuthException",
                "code": code,
                "fbtrace_id": "AbCdEfGh",
            }
        }

    def _next_planned(self) -> Response | None:
        with self._lock:
            return self._planned.popleft() if self._planned else None


# Standard Google API errors (`google.rpc.Status`), the Data Manager API's envelope.
GOOGLE_STATUS = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    503: "UNAVAILABLE",
}


def google_error(status: int, message: str, reason: str = "", field_path: str = "") -> Any:
    """`google.rpc.Status` with an `ErrorInfo` (Data Manager `ErrorReason`) and, for a field,
    a `BadRequest` field violation."""
    details: list[dict[str, Any]] = []
    if reason:
        details.append(
            {
                "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                "reason": reason,
                "domain": "datamanager.googleapis.com",
            }
        )
    if field_path:
        details.append(
            {
                "@type": "type.googleapis.com/google.rpc.BadRequest",
                "fieldViolations": [{"field": field_path, "description": message}],
            }
        )
    error: dict[str, Any] = {
        "code": status,
        "message": message,
        "status": GOOGLE_STATUS.get(status, "UNKNOWN"),
    }
    if details:
        error["details"] = details
    return {"error": error}


def require_bearer(provider: FakeProvider, headers: dict[str, str], token: str) -> None:
    # Graph API: "Authorization: Bearer <access token>" (WhatsApp Cloud API "Get started";
    # Instagram API with Instagram Login "Send API"); a bad token is 401, code 190.
    if headers.get("authorization") != f"Bearer {token}":
        raise Refused(401, provider.error_body(401, "Invalid OAuth access token.", 190))


def read_json(provider: FakeProvider, headers: dict[str, str], raw: bytes) -> Any:
    if not headers.get("content-type", "").startswith("application/json"):
        raise Refused(400, provider.error_body(400, "expected application/json", 100))
    try:
        return json.loads(raw)
    except ValueError as exc:
        raise Refused(400, provider.error_body(400, "malformed JSON", 100)) from exc
