"""Local fake of Google's Data Manager API for conversions (`POST /v1/events:ingest`, capi.md
§2): checks destinations, events and hashed user data, answers with `google.rpc.Status` naming
the field at fault, and dedups by `transactionId` per conversion action. The server is `ads`;
the Google Ads API fake is `google_ads`.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import datetime
from typing import Any

from leadloop.clock import Clock
from leadloop.testing_fakes.base import HEX64, FakePlatform, Invalid, Recorded, Response
from leadloop.testing_fakes.base import require as _require
from leadloop.testing_fakes.base import require_list as _require_list

BASE64_SHA256 = re.compile(r"[A-Za-z0-9+/]{43}=")


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
        if not self.bearer_ok(request.headers.get("authorization"), self.access_token):
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
