"""Google Ads API enhanced conversions for leads: request bodies and the partial-failure answer.

`POST {base}/{version}/customers/{customer_id}:uploadClickConversions` is the REST transcoding of
`ConversionUploadService.UploadClickConversions` (capi.md §2.3); JSON field names are the proto
names in lowerCamelCase. Google closed this path to new adopters on 2026-06-15 (capi.md §2.1):
it is kept for allow-listed accounts; the Data Manager API (`payloads.build_google_request`) is
the primary Google path.

The Ads API answers per conversion (`partialFailure` must be true): a 200 may still carry a
`partialFailureError` whose `GoogleAdsFailure` details name the failed rows by
`location.fieldPathElements[{fieldName: "conversions", index: i}]`. `row_errors` reads those, and
`decide.classify_response` turns them into one outcome per row.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

import msgspec

from leadloop.conversions.model import Conversion, GoogleAdsDestination, UserIdentifiers
from leadloop.conversions.normalize import (
    hash_identifier,
    normalize_email_google,
    normalize_phone_google,
)

MAX_CONVERSIONS = 2000
"""`conversions` per request: fewer than 2,001 (`TOO_MANY_CONVERSIONS_IN_REQUEST`, capi.md §2.3)."""
MAX_USER_IDENTIFIERS = 5
NOT_ALLOWLISTED = "CUSTOMER_NOT_ALLOWLISTED_FOR_THIS_FEATURE"
NOT_ALLOWLISTED_HINT = (
    f"google_ads: {NOT_ALLOWLISTED}: this Google Ads account may not upload click conversions "
    "through the Google Ads API (closed to new adopters since 2026-06-15); use a destination of "
    "`type: google` (the Data Manager API) instead"
)
FAILURE_TYPE = "google.ads.googleads.{version}.errors.GoogleAdsFailure"


class RowError(msgspec.Struct, frozen=True, kw_only=True):
    """One entry of a `GoogleAdsFailure`: `index` is the conversion it names, None when the error
    names no row (then it concerns the whole request)."""

    index: int | None
    kind: str
    """The `errorCode` field set, e.g. `conversionUploadError`, `quotaError`."""
    code: str
    """Its enum value, e.g. `TOO_RECENT_EVENT`."""
    message: str = ""


# --- request ------------------------------------------------------------------------------------


def conversion_date_time(timestamp: float) -> str:
    """`yyyy-mm-dd hh:mm:ss+|-hh:mm`; the offset is required, so UTC is written as `+00:00`."""
    moment = dt.datetime.fromtimestamp(int(timestamp), tz=dt.UTC)
    return moment.strftime("%Y-%m-%d %H:%M:%S+00:00")


def conversion_action_resource(destination: GoogleAdsDestination) -> str:
    owner = destination.conversion_action_owner or destination.customer_id
    return f"customers/{owner}/conversionActions/{destination.conversion_action_id}"


def user_identifiers(user: UserIdentifiers, default_region: str | None) -> list[dict[str, str]]:
    """`hashedEmail` and `hashedPhoneNumber`, the only identifiers conversion uploads accept
    (capi.md §2.3), normalised by Google's rules (§2.4): for gmail.com and googlemail.com the dots
    *and* the `+suffix` go, as the Data Manager documents. (The older Ads API client-library
    examples drop only the dots; capi.md says to align with Data Manager.) E.164 with `+`."""
    out: list[dict[str, str]] = []
    if user.email:
        email = hash_identifier(user.email, normalize_email_google)
        if email:
            out.append({"hashedEmail": email})
    if user.phone:
        region = user.phone_region or default_region
        phone = hash_identifier(user.phone, normalize_phone_google, region)
        if phone:
            out.append({"hashedPhoneNumber": phone})
    return out[:MAX_USER_IDENTIFIERS]


def click_id(user: UserIdentifiers) -> dict[str, str]:
    """The one click id Google takes (`gclid`, else `gbraid`, else `wbraid`): the Ads API refuses
    gbraid with wbraid (`GBRAID_WBRAID_BOTH_SET`, capi.md §2.3), and a gclid is the most precise."""
    if user.gclid:
        return {"gclid": user.gclid}
    if user.gbraid:
        return {"gbraid": user.gbraid}
    if user.wbraid:
        return {"wbraid": user.wbraid}
    return {}


def build_click_conversion(
    conversion: Conversion, destination: GoogleAdsDestination
) -> dict[str, Any]:
    user = conversion.user
    row: dict[str, Any] = {
        "conversionAction": conversion_action_resource(destination),
        "conversionDateTime": conversion_date_time(conversion.event_time),
        # One conversion per order id per action (capi.md §6.2): our deterministic id when the
        # event has no order id, so a re-send is refused as ORDER_ID_ALREADY_IN_USE.
        "orderId": conversion.order_id or conversion.event_id,
    }
    row.update(click_id(user))
    identifiers = user_identifiers(user, destination.default_region)
    if identifiers:
        row["userIdentifiers"] = identifiers
    if conversion.value is not None:
        row["conversionValue"] = conversion.value
    if conversion.currency:
        row["currencyCode"] = conversion.currency.upper()
    if conversion.ad_user_data is not None:
        # Click conversions take `adUserData` only; `adPersonalization` is refused (§6.4).
        row["consent"] = {"adUserData": "GRANTED" if conversion.ad_user_data else "DENIED"}
    return row


def build_google_ads_request(
    conversions: Sequence[Conversion], destination: GoogleAdsDestination
) -> dict[str, Any]:
    return wrap_google_ads_request(
        [build_click_conversion(c, destination) for c in conversions], destination
    )


def wrap_google_ads_request(
    rows: Sequence[Any], destination: GoogleAdsDestination
) -> dict[str, Any]:
    """The request around conversions already built (dicts, or `msgspec.Raw` JSON of them)."""
    if not rows:
        raise ValueError("a request needs at least one event")
    if len(rows) > MAX_CONVERSIONS:
        raise ValueError(f"google_ads accepts at most {MAX_CONVERSIONS} conversions per request")
    body: dict[str, Any] = {
        "conversions": rows,
        "partialFailure": True,  # required: the API refuses uploads without it
    }
    if destination.validate_only:
        body["validateOnly"] = True
    return body


def upload_url(destination: GoogleAdsDestination) -> str:
    base = destination.base_url.rstrip("/")
    return f"{base}/{destination.api_version}/customers/{destination.customer_id}:uploadClickConversions"


def request_headers(
    destination: GoogleAdsDestination, access_token: str, developer_token: str
) -> dict[str, str]:
    headers = {"authorization": f"Bearer {access_token}", "developer-token": developer_token}
    if destination.login_customer_id:
        headers["login-customer-id"] = destination.login_customer_id
    return headers


# --- response -----------------------------------------------------------------------------------


def row_errors(status: dict[str, Any] | None) -> list[RowError]:
    """The errors of a `google.rpc.Status` (a `partialFailureError`, or the `error` of a failed
    request): every `GoogleAdsFailure` detail's errors; a status without one gives a single
    error for the whole request, from its own `status` and `message`."""
    if not isinstance(status, dict) or not status:
        return []
    found: list[RowError] = []
    for detail in status.get("details") or []:
        if not isinstance(detail, dict) or "GoogleAdsFailure" not in str(detail.get("@type", "")):
            continue
        for error in detail.get("errors") or []:
            if isinstance(error, dict):
                found.append(_row_error(error))
    if not found and (status.get("message") or status.get("status")):
        code = str(status.get("status") or status.get("code") or "")
        found.append(RowError(index=None, kind="", code=code, message=str(status.get("message"))))
    return found


def _row_error(error: dict[str, Any]) -> RowError:
    codes = error.get("errorCode")
    kind, code = "", ""
    if isinstance(codes, dict) and codes:
        kind, value = next(iter(codes.items()))
        code = str(value)
    index: int | None = None
    location = error.get("location")
    elements = location.get("fieldPathElements") if isinstance(location, dict) else None
    for element in elements or []:
        if isinstance(element, dict) and element.get("fieldName") == "conversions":
            raw = element.get("index")
            # proto3 JSON writes int32 as a number; int64 would be a string.
            if isinstance(raw, int) and not isinstance(raw, bool):
                index = raw
            elif isinstance(raw, str) and raw.isascii() and raw.isdigit():  # not "²", "١"
                index = int(raw)
            break
    return RowError(index=index, kind=str(kind), code=code, message=str(error.get("message", "")))
