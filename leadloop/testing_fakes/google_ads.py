"""A local fake of the Google Ads API's `customers/{id}:uploadClickConversions` (REST), served by
`FakeAdsServer` beside the other platforms.

It checks what research/capi.md §2.3 says a request must be, and answers the way the Ads API
does: request-level problems (auth, developer token, `partialFailure` off, more than 2,000
conversions, an account that is not allow-listed) refuse the whole request with a
`google.rpc.Status` whose details hold a `GoogleAdsFailure`; problems of single conversions come
back with HTTP 200 as a `partialFailureError` naming each row by
`fieldPathElements[{fieldName: "conversions", index: i}]`, while the other rows are taken.
Accepted rows are deduplicated by order id per conversion action (`ORDER_ID_ALREADY_IN_USE`).

    fake.google_ads.plan_row_errors({1: "INVALID_USER_IDENTIFIER"})   # next request only
    fake.google_ads.allowlisted = False    # every request: CUSTOMER_NOT_ALLOWLISTED_FOR_THIS_FEATURE
"""

from __future__ import annotations

import re
from collections import deque
from typing import Any

from leadloop.clock import Clock
from leadloop.testing_fakes.base import HEX64, FakePlatform, Recorded, Response

PATH = re.compile(r"/(?P<version>v\d+)/customers/(?P<customer>\d+):uploadClickConversions")
MAX_CONVERSIONS = 2000  # capi.md §2.3: fewer than 2,001
MAX_USER_IDENTIFIERS = 5
DATE_TIME = re.compile(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}[+-]\d{2}:\d{2}")
ACTION = re.compile(r"customers/\d+/conversionActions/(?P<action>\d+)")
CONSENT_VALUES = {"UNSPECIFIED", "UNKNOWN", "GRANTED", "DENIED", 0, 1, 2, 3}  # §6.4; names or ints
CURRENCY = re.compile(r"[A-Z]{3}")
NOT_ALLOWLISTED = "CUSTOMER_NOT_ALLOWLISTED_FOR_THIS_FEATURE"


class RowInvalid(Exception):
    def __init__(self, code: str, message: str, field_name: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.field_name = field_name


class FakeGoogleAds(FakePlatform):
    def __init__(self, clock: Clock, access_token: str, developer_token: str) -> None:
        super().__init__(clock)
        self.access_token = access_token
        self.developer_token = developer_token
        self.allowlisted = True
        """False: every request is refused as Google refuses new adopters (capi.md §2.1)."""
        self.validated: list[dict[str, Any]] = []
        self.failed: list[tuple[int, str]] = []
        """(index in its request, error code) of every row refused so far."""
        self._orders: set[tuple[str, str]] = set()
        self._row_plans: deque[dict[int, str]] = deque()
        self._request_ids = iter(range(1, 10**9))

    # -- failing on command -------------------------------------------------------------------

    def plan_row_errors(self, errors: dict[int, str]) -> None:
        """The next request that passes the request-level checks fails these rows (index to
        `ConversionUploadError` code, or `INTERNAL_ERROR`) and takes the others."""
        with self._lock:
            self._row_plans.append(dict(errors))

    def plan_not_allowlisted(self) -> None:
        self._plan(
            _request_error(400, "INVALID_ARGUMENT", "conversionUploadError", NOT_ALLOWLISTED)
        )

    def plan_server_error(self, status: int = 500) -> None:
        self._plan(_request_error(status, "INTERNAL", "internalError", "INTERNAL_ERROR"))

    def _plan(self, response: Response) -> None:
        status, headers, body = response
        self.plan(status, body, headers)

    def _rate_limit_body(self) -> Any:
        return _request_error(429, "RESOURCE_EXHAUSTED", "quotaError", "RESOURCE_EXHAUSTED")[1]

    # -- serving ------------------------------------------------------------------------------

    def serve(self, request: Recorded) -> Response:
        headers = request.headers
        if not self.bearer_ok(headers.get("authorization"), self.access_token):
            return _request_error(
                401, "UNAUTHENTICATED", "authenticationError", "OAUTH_TOKEN_INVALID"
            )
        if headers.get("developer-token") != self.developer_token:
            return _request_error(
                401, "UNAUTHENTICATED", "authenticationError", "DEVELOPER_TOKEN_INVALID"
            )
        login = headers.get("login-customer-id")
        if login is not None and not re.fullmatch(r"\d{10}", login):  # digits only, no dashes
            return _request_error(
                400,
                "INVALID_ARGUMENT",
                "authenticationError",
                "LOGIN_CUSTOMER_ID_PARAMETER_INVALID",
            )
        path = PATH.fullmatch(request.path)
        if path is None or not re.fullmatch(r"\d{10}", path.group("customer")):
            return _request_error(400, "INVALID_ARGUMENT", "requestError", "INVALID_CUSTOMER_ID")
        body = request.body if isinstance(request.body, dict) else {}
        if body.get("partialFailure") is not True:
            return _request_error(
                400, "INVALID_ARGUMENT", "partialFailureError", "PARTIAL_FAILURE_MODE_REQUIRED"
            )
        rows = body.get("conversions")
        if not isinstance(rows, list) or not rows:
            return _request_error(400, "INVALID_ARGUMENT", "requestError", "REQUIRED_FIELD_MISSING")
        if len(rows) > MAX_CONVERSIONS:
            return _request_error(
                400, "INVALID_ARGUMENT", "conversionUploadError", "TOO_MANY_CONVERSIONS_IN_REQUEST"
            )
        if not self.allowlisted:
            return _request_error(400, "INVALID_ARGUMENT", "conversionUploadError", NOT_ALLOWLISTED)
        planned = self._row_plans.popleft() if self._row_plans else {}
        return 200, {}, self._upload(rows, planned, bool(body.get("validateOnly")))

    def _upload(self, rows: list[Any], planned: dict[int, str], validate: bool) -> dict[str, Any]:
        results: list[dict[str, Any]] = []
        errors: list[dict[str, Any]] = []
        for i, row in enumerate(rows):
            try:
                if i in planned:
                    code = planned[i]
                    raise RowInvalid(code, f"planned {code}")
                action = _check_row(row)
                if not validate and row.get("orderId"):
                    key = (action, str(row["orderId"]))
                    if key in self._orders:  # §6.2: one conversion per order id per action
                        self.duplicates.append(row)
                        raise RowInvalid("ORDER_ID_ALREADY_IN_USE", "order id already used")
                    self._orders.add(key)
            except RowInvalid as invalid:
                self.failed.append((i, invalid.code))
                errors.append(_row_error(i, invalid))
                results.append({})  # failed rows answer with an empty result (§2.3)
                continue
            (self.validated if validate else self.accepted).append(row)
            results.append(
                {k: row[k] for k in ("conversionAction", "conversionDateTime") if k in row}
            )
        answer: dict[str, Any] = {"results": results, "jobId": str(next(self._request_ids))}
        if errors:
            answer["partialFailureError"] = {
                "code": 3,
                "message": f"{len(errors)} of {len(rows)} conversions failed",
                "details": [_failure(errors)],
            }
        return answer


def _check_row(row: Any) -> str:
    """The conversion action id of a valid row; raises `RowInvalid` otherwise (capi.md §2.3)."""
    if not isinstance(row, dict):
        raise RowInvalid("REQUIRED_FIELD_MISSING", "conversion must be an object")
    action = ACTION.fullmatch(str(row.get("conversionAction", "")))
    if action is None:
        raise RowInvalid("INVALID_CONVERSION_ACTION", "conversionAction", "conversion_action")
    if not DATE_TIME.fullmatch(str(row.get("conversionDateTime", ""))):
        raise RowInvalid(
            "INVALID_CONVERSION_DATE_TIME", "yyyy-mm-dd hh:mm:ss+|-hh:mm", "conversion_date_time"
        )
    clicks = [k for k in ("gclid", "gbraid", "wbraid") if row.get(k)]
    if "gbraid" in clicks and "wbraid" in clicks:
        raise RowInvalid("GBRAID_WBRAID_BOTH_SET", "gbraid and wbraid both set", "gbraid")
    identifiers = row.get("userIdentifiers", [])
    if not clicks and not identifiers:
        raise RowInvalid("INVALID_USER_IDENTIFIER", "no click id and no user identifier")
    if not isinstance(identifiers, list) or len(identifiers) > MAX_USER_IDENTIFIERS:
        raise RowInvalid(
            "INVALID_USER_IDENTIFIER", "at most 5 user identifiers", "user_identifiers"
        )
    for identifier in identifiers:
        # Only hashed email and hashed phone are accepted for conversion uploads: SHA-256, hex.
        keys = set(identifier) if isinstance(identifier, dict) else set()
        hashed = keys <= {"hashedEmail", "hashedPhoneNumber", "userIdentifierSource"} and keys
        values = [identifier.get(k) for k in ("hashedEmail", "hashedPhoneNumber") if k in keys]
        if not hashed or len(values) != 1 or not all(_is_hex64(v) for v in values):
            raise RowInvalid("INVALID_USER_IDENTIFIER", "user identifier not hashed")
    consent = row.get("consent")
    if consent is not None:
        # §6.4: only ad_user_data may be set on click conversions.
        ok = isinstance(consent, dict) and set(consent) <= {"adUserData"}
        if not ok or consent.get("adUserData") not in CONSENT_VALUES:
            raise RowInvalid("INVALID_CONSENT", "consent takes adUserData only", "consent")
    if "currencyCode" in row and not CURRENCY.fullmatch(str(row["currencyCode"])):
        raise RowInvalid("INVALID_CURRENCY_CODE", "currencyCode", "currency_code")
    value = row.get("conversionValue")
    if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
        raise RowInvalid("INVALID_CONVERSION_VALUE", "conversionValue", "conversion_value")
    return action.group("action")


def _is_hex64(value: Any) -> bool:
    return isinstance(value, str) and len(value) == 64 and bool(HEX64.fullmatch(value))


def _row_error(index: int, invalid: RowInvalid) -> dict[str, Any]:
    elements: list[dict[str, Any]] = [{"fieldName": "conversions", "index": index}]
    if invalid.field_name:
        elements.append({"fieldName": invalid.field_name})
    kind = "internalError" if invalid.code == "INTERNAL_ERROR" else "conversionUploadError"
    return {
        "errorCode": {kind: invalid.code},
        "message": str(invalid),
        "location": {"fieldPathElements": elements},
    }


def _failure(errors: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "@type": "type.googleapis.com/google.ads.googleads.v26.errors.GoogleAdsFailure",
        "errors": errors,
        "requestId": "fake",
    }


def _request_error(status: int, grpc_status: str, kind: str, code: str) -> Response:
    error = {"errorCode": {kind: code}, "message": f"{code} (fake)"}
    body = {
        "error": {
            "code": status,
            "message": "Request contains an invalid argument." if status == 400 else code,
            "status": grpc_status,
            "details": [_failure([error])],
        }
    }
    return status, {}, body
