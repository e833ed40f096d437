"""The Google Ads API path (research/capi.md §2.3): the `uploadClickConversions` body, Google's
hashing rules, and what a partial-failure answer means per row (§6.1)."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import pytest

from leadloop.conversions.decide import (
    TOO_RECENT_DELAY,
    Bisect,
    Delivered,
    PerEvent,
    Reject,
    Retry,
    classify_response,
)
from leadloop.conversions.google_ads import (
    build_click_conversion,
    build_google_ads_request,
    conversion_date_time,
    request_headers,
    row_errors,
    upload_url,
)
from leadloop.conversions.identifiers import hash_for_platform
from leadloop.conversions.model import Conversion, GoogleAdsDestination, UserIdentifiers
from leadloop.conversions.payloads import MAX_EVENTS, build_request, check_conversion, request_url

NOW = 1_780_000_000.0  # 2026-05-28 20:26:40 UTC
DESTINATION = GoogleAdsDestination(customer_id="1234567890", conversion_action_id="555")
RAW = UserIdentifiers(
    email="Jane.Doe+crm@GoogleMail.com",
    phone="(650) 555-1212",
    phone_region="US",
    first_name="Jane",
    last_name="Doe",
    zip="62704",
    country="US",
    gclid="CjwKCAiA",
    ip="198.51.100.4",
)
RAW_STRINGS = ["Jane", "Doe", "jane", "doe", "555-1212", "6505551212", "GoogleMail", "62704"]


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def conversion(**changes: Any) -> Conversion:
    values: dict[str, Any] = {
        "event_name": "Lead",
        "event_time": NOW - 3600,
        "event_id": "leadloop-p1-lead_mql",
        "user": RAW,
        "value": 120.5,
        "currency": "eur",
        "ad_user_data": True,
        "ad_personalization": True,
    }
    values.update(changes)
    return Conversion(**values)


# --- the request -------------------------------------------------------------------------------


def test_click_conversion_fields_are_the_rest_names() -> None:
    row = build_click_conversion(conversion(order_id="D-7"), DESTINATION)
    assert row["conversionAction"] == "customers/1234567890/conversionActions/555"
    assert row["conversionDateTime"] == "2026-05-28 19:26:40+00:00"
    assert row["orderId"] == "D-7"
    assert row["gclid"] == "CjwKCAiA"
    assert row["conversionValue"] == 120.5 and row["currencyCode"] == "EUR"
    assert row["consent"] == {"adUserData": "GRANTED"}


def test_date_time_has_a_signed_offset() -> None:
    assert conversion_date_time(0) == "1970-01-01 00:00:00+00:00"
    assert conversion_date_time(NOW + 0.9) == "2026-05-28 20:26:40+00:00"


def test_identifiers_follow_googles_rules_and_no_raw_pii_leaves() -> None:
    body = build_google_ads_request([conversion()], DESTINATION)
    identifiers = body["conversions"][0]["userIdentifiers"]
    # capi.md §2.4: googlemail.com loses the dots and the +suffix (the Data Manager rule, not the
    # older Ads API examples that drop only the dots); phone in E.164 with `+`.
    assert identifiers == [
        {"hashedEmail": sha("janedoe@googlemail.com")},
        {"hashedPhoneNumber": sha("+16505551212")},
    ]
    assert sha("jane.doe+crm@googlemail.com") not in json.dumps(body)
    wire = json.dumps(body)
    for raw in RAW_STRINGS:
        assert raw not in wire, raw
    # Only hashed email and phone are accepted for conversion uploads (§2.3): no names, no address.
    assert all(set(i) <= {"hashedEmail", "hashedPhoneNumber"} for i in identifiers)


def test_identifiers_hashed_at_enqueue_pass_through_unchanged() -> None:
    hashed = hash_for_platform(RAW, "google_ads", "US", True)
    assert hashed.first_name is None and hashed.zip is None and hashed.country is None
    assert hashed.email == sha("janedoe@googlemail.com") and hashed.gclid == "CjwKCAiA"
    direct = build_click_conversion(conversion(), DESTINATION)
    again = build_click_conversion(conversion(user=hashed), DESTINATION)
    assert again["userIdentifiers"] == direct["userIdentifiers"]


def test_request_has_partial_failure_and_optional_validate_only() -> None:
    body = build_google_ads_request([conversion()], DESTINATION)
    assert body["partialFailure"] is True and "validateOnly" not in body
    dry = GoogleAdsDestination(customer_id="1", conversion_action_id="2", validate_only=True)
    assert build_request([conversion()], dry)["validateOnly"] is True


@pytest.mark.parametrize(
    ("consent", "expected"),
    [(True, {"adUserData": "GRANTED"}), (False, {"adUserData": "DENIED"}), (None, None)],
)
def test_consent_carries_ad_user_data_only(consent: bool | None, expected: Any) -> None:
    row = build_click_conversion(conversion(ad_user_data=consent), DESTINATION)
    assert row.get("consent") == expected


def test_one_click_id_at_most_and_order_id_falls_back_to_the_event_id() -> None:
    user = UserIdentifiers(gbraid="gb", wbraid="wb", email="a@b.co")
    row = build_click_conversion(conversion(user=user, value=None, currency=None), DESTINATION)
    assert row["gbraid"] == "gb" and "wbraid" not in row and "gclid" not in row
    assert row["orderId"] == "leadloop-p1-lead_mql"
    assert "conversionValue" not in row and "currencyCode" not in row


def test_batch_limit_and_url_and_headers() -> None:
    assert MAX_EVENTS["google_ads"] == 2000
    assert len(build_google_ads_request([conversion()] * 2000, DESTINATION)["conversions"]) == 2000
    with pytest.raises(ValueError, match="at most 2000"):
        build_google_ads_request([conversion()] * 2001, DESTINATION)
    with pytest.raises(ValueError):
        build_google_ads_request([], DESTINATION)
    url = "https://googleads.googleapis.com/v26/customers/1234567890:uploadClickConversions"
    assert request_url(DESTINATION) == upload_url(DESTINATION) == url
    assert request_headers(DESTINATION, "tok", "dev") == {
        "authorization": "Bearer tok",
        "developer-token": "dev",
    }
    managed = GoogleAdsDestination(
        customer_id="1234567890", conversion_action_id="5", login_customer_id="9998887776"
    )
    assert request_headers(managed, "tok", "dev")["login-customer-id"] == "9998887776"


def test_a_conversion_without_click_id_email_or_phone_is_not_sent() -> None:
    nameless = UserIdentifiers(first_name="Jane", last_name="Doe", zip="62704", country="US")
    reason = check_conversion(conversion(user=nameless), DESTINATION, NOW)
    assert reason == "google_ads: no click id and no usable email or phone"
    assert check_conversion(conversion(), DESTINATION, NOW) is None
    old = check_conversion(conversion(event_time=NOW - 91 * 86_400), DESTINATION, NOW)
    assert old == "google_ads: event is outside the 90-day click-through window"


# --- the answer --------------------------------------------------------------------------------


def failure(*errors: tuple[int | None, str, str]) -> dict[str, Any]:
    """A `google.rpc.Status` with a GoogleAdsFailure: (row index or None, errorCode kind, code)."""
    entries = []
    for index, kind, code in errors:
        entry: dict[str, Any] = {"errorCode": {kind: code}, "message": code.lower()}
        if index is not None:
            path = [{"fieldName": "conversions", "index": index}, {"fieldName": "gclid"}]
            entry["location"] = {"fieldPathElements": path}
        entries.append(entry)
    detail = {
        "@type": "type.googleapis.com/google.ads.googleads.v26.errors.GoogleAdsFailure",
        "errors": entries,
    }
    return {"code": 3, "message": "partial", "details": [detail]}


def classify(status: int, body: Any, size: int = 1, headers: Any = None) -> Any:
    return classify_response("google_ads", status, headers or {}, json.dumps(body), batch_size=size)


def test_success_without_partial_failure() -> None:
    assert isinstance(classify(200, {"results": [{}, {}]}, 2), Delivered)


def test_partial_failure_is_one_outcome_per_row() -> None:
    body = {
        "results": [{}, {}, {}, {}, {}],
        "partialFailureError": failure(
            (1, "conversionUploadError", "INVALID_USER_IDENTIFIER"),
            (2, "conversionUploadError", "TOO_RECENT_EVENT"),
            (3, "conversionUploadError", "ORDER_ID_ALREADY_IN_USE"),
            (4, "internalError", "INTERNAL_ERROR"),
        ),
    }
    verdict = classify(200, body, 5)
    assert isinstance(verdict, PerEvent)
    first, bad, recent, duplicate, internal = verdict.outcomes
    assert isinstance(first, Delivered)
    assert isinstance(bad, Reject) and "INVALID_USER_IDENTIFIER" in bad.reason
    assert isinstance(recent, Retry) and recent.retry_after == TOO_RECENT_DELAY == 6 * 3600
    assert isinstance(duplicate, Delivered)  # §6.1: an idempotent duplicate is a success
    assert isinstance(internal, Retry)


def test_a_row_with_two_errors_takes_the_permanent_one_and_unnamed_errors_hit_every_row() -> None:
    body = {
        "partialFailureError": failure(
            (0, "conversionUploadError", "TOO_RECENT_EVENT"),
            (0, "conversionUploadError", "EXPIRED_EVENT"),
        )
    }
    verdict = classify(200, body, 2)
    assert isinstance(verdict, PerEvent)
    assert isinstance(verdict.outcomes[0], Reject) and isinstance(verdict.outcomes[1], Delivered)
    everyone = classify(200, {"partialFailureError": failure((None, "quotaError", "X"))}, 2)
    assert isinstance(everyone, PerEvent)
    assert all(isinstance(o, Retry) for o in everyone.outcomes)


def test_not_allowlisted_is_permanent_and_points_to_data_manager() -> None:
    body = {
        "error": {
            "code": 400,
            "status": "INVALID_ARGUMENT",
            "message": "Request contains an invalid argument.",
            **failure((None, "conversionUploadError", "CUSTOMER_NOT_ALLOWLISTED_FOR_THIS_FEATURE")),
        }
    }
    verdict = classify(400, body, 3)
    assert isinstance(verdict, Reject)
    assert "CUSTOMER_NOT_ALLOWLISTED_FOR_THIS_FEATURE" in verdict.reason
    assert "Data Manager" in verdict.reason and "type: google" in verdict.reason
    # The same code per row (inside a partial failure) is as permanent and as clear.
    rows = classify(
        200,
        {"partialFailureError": failure((0, "x", "CUSTOMER_NOT_ALLOWLISTED_FOR_THIS_FEATURE"))},
    )
    assert isinstance(rows, PerEvent) and isinstance(rows.outcomes[0], Reject)
    assert "Data Manager" in rows.outcomes[0].reason


@pytest.mark.parametrize(
    ("status", "grpc"), [(500, "INTERNAL"), (503, "UNAVAILABLE"), (504, "DEADLINE_EXCEEDED")]
)
def test_server_errors_retry(status: int, grpc: str) -> None:
    assert isinstance(classify(status, {"error": {"code": status, "status": grpc}}, 4), Retry)


def test_rate_limit_honours_retry_after() -> None:
    body = {"error": {"code": 429, "status": "RESOURCE_EXHAUSTED"}}
    verdict = classify(429, body, 2, {"Retry-After": "30"})
    assert isinstance(verdict, Retry) and verdict.retry_after == 30


def test_auth_errors_are_permanent_and_say_what_to_check() -> None:
    body = {"error": {"code": 401, "status": "UNAUTHENTICATED", **failure((None, "a", "DEV"))}}
    verdict = classify(401, body, 2)
    assert isinstance(verdict, Reject) and "developer token" in verdict.reason


def test_request_refused_for_a_named_row_is_bisected_around_it() -> None:
    body = {"error": {"code": 400, "status": "INVALID_ARGUMENT", **failure((2, "a", "BAD"))}}
    verdict = classify(400, body, 4)
    assert isinstance(verdict, Bisect) and verdict.bad_index == 2
    assert isinstance(classify(400, body, 1), Reject)
    unnamed = {"error": {"code": 400, "status": "INVALID_ARGUMENT", "message": "bad"}}
    assert isinstance(classify(400, unnamed, 4), Reject)


def test_row_errors_reads_indices_written_as_strings_and_ignores_other_details() -> None:
    status = failure((7, "conversionUploadError", "EXPIRED_EVENT"))
    status["details"][0]["errors"][0]["location"]["fieldPathElements"][0]["index"] = "7"
    status["details"].append({"@type": "type.googleapis.com/google.rpc.DebugInfo"})
    (error,) = row_errors(status)
    assert (error.index, error.kind, error.code) == (7, "conversionUploadError", "EXPIRED_EVENT")
    assert row_errors(None) == [] and row_errors({}) == []
    (plain,) = row_errors({"code": 13, "status": "INTERNAL", "message": "boom"})
    assert plain.index is None and plain.code == "INTERNAL"


@pytest.mark.parametrize("index", ["²", "١"])
def test_a_row_index_in_other_digits_names_no_row(index: str) -> None:
    # `"²".isdigit()` is true and `int("²")` raised out of the sender; "١" was row 1.
    body = failure((0, "conversionUploadError", "UNPARSEABLE_GCLID"))
    body["details"][0]["errors"][0]["location"]["fieldPathElements"][0]["index"] = index
    assert [error.index for error in row_errors(body)] == [None]
