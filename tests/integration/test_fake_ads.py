"""Bodies from `conversions.payloads` sent over HTTP (httpx2) to the local platform fakes, and the
answers read back with `conversions.decide.classify_response`."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from typing import Any

import httpx2
import pytest

from leadloop.clock import ManualClock
from leadloop.conversions.decide import (
    Bisect,
    Delivered,
    Outcome,
    PerEvent,
    Reject,
    Retry,
    classify_response,
)
from leadloop.conversions.google_ads import build_google_ads_request, request_headers
from leadloop.conversions.model import (
    Conversion,
    Destination,
    GoogleAdsDestination,
    GoogleDestination,
    MetaDestination,
    TikTokDestination,
    UserIdentifiers,
    platform_of,
)
from leadloop.conversions.payloads import (
    build_google_request,
    build_request,
    compute_appsecret_proof,
    derive_event_id,
    request_url,
)
from leadloop.testing_fakes.ads import FakeAdsServer

NOW = 1_780_000_000.0
DAY = 86_400.0
TOKENS = {
    "meta": "meta-token",
    "google": "google-token",
    "google_ads": "google-ads-token",
    "tiktok": "tiktok-token",
}

USER = UserIdentifiers(
    email="Ana.Silva+crm@Gmail.com",
    phone="(11) 96123-4567",
    phone_region="BR",
    first_name="Ana",
    last_name="Silva",
    zip="01310-100",
    country="BR",
    external_id="contact-9",
    gclid="gclid-1",
    ttclid="tt-1",
    ip="203.0.113.5",
    user_agent="Mozilla/5.0",
)
RAW_PII = ["Ana.Silva", "ana.silva", "96123", "Silva"]


def milestone(n: int, *, age_days: float = 0.1, **changes: Any) -> Conversion:
    values: dict[str, Any] = {
        "event_name": "Lead",
        "event_time": NOW - age_days * DAY,
        "event_id": derive_event_id("hubspot", str(n), "Lead"),
        "user": USER,
        "ad_user_data": True,
        "ad_personalization": True,
    }
    values.update(changes)
    return Conversion(**values)


@pytest.fixture
def fake() -> Iterator[FakeAdsServer]:
    with FakeAdsServer(clock=ManualClock(start=NOW), meta_app_secret="app-secret") as server:
        yield server


@pytest.fixture
def client() -> Iterator[httpx2.Client]:
    with httpx2.Client(timeout=5.0) as http:
        yield http


def send(
    http: httpx2.Client,
    destination: Destination,
    conversions: Sequence[Conversion],
    *,
    token: str | None = None,
    body: dict[str, Any] | None = None,
) -> tuple[Outcome, httpx2.Response]:
    """What the outbox dispatcher will do for one batch: build, authenticate, POST, classify."""
    platform = platform_of(destination)
    secret = token or TOKENS[platform]
    params: dict[str, str] = {}
    headers: dict[str, str] = {}
    proof = None
    if platform == "meta":
        params["access_token"] = secret
        proof = compute_appsecret_proof("app-secret", secret)
    elif isinstance(destination, GoogleAdsDestination):
        headers.update(request_headers(destination, secret, "developer-token"))
    elif platform == "google":
        headers["Authorization"] = f"Bearer {secret}"
    else:
        headers["Access-Token"] = secret
    payload = body or build_request(conversions, destination, appsecret_proof=proof)
    url = request_url(destination)
    response = http.post(url, json=payload, params=params, headers=headers)
    outcome = classify_response(
        platform,
        response.status_code,
        dict(response.headers),
        response.content,
        batch_size=len(conversions),
    )
    return outcome, response


def send_bisecting(
    http: httpx2.Client, destination: Destination, conversions: Sequence[Conversion]
) -> list[tuple[str, Outcome]]:
    """Bisect on a batch-level data error until every event is delivered or rejected alone."""
    outcome, _ = send(http, destination, conversions)
    if isinstance(outcome, Bisect):
        middle = len(conversions) // 2
        return send_bisecting(http, destination, conversions[:middle]) + send_bisecting(
            http, destination, conversions[middle:]
        )
    return [(c.event_id, outcome) for c in conversions]


# --- Meta --------------------------------------------------------------------------------------


def meta(fake: FakeAdsServer, **changes: Any) -> MetaDestination:
    return MetaDestination(pixel_id="555", base_url=fake.base_url, **changes)


def test_meta_accepts_hashed_batch_and_dedups_resends(
    fake: FakeAdsServer, client: httpx2.Client
) -> None:
    destination = meta(fake, lead_event_source="HubSpot")
    batch = [milestone(n) for n in range(3)]
    outcome, _ = send(client, destination, batch)
    assert outcome == Delivered(note="events_received=3")
    assert len(fake.meta.accepted) == 3
    wire = json.dumps(fake.meta.requests[0].body)
    assert not any(raw in wire for raw in RAW_PII)
    outcome, _ = send(client, destination, batch)  # a retry after a lost response
    assert isinstance(outcome, Delivered)
    assert len(fake.meta.accepted) == 3 and len(fake.meta.duplicates) == 3


def test_meta_test_events_are_kept_apart(fake: FakeAdsServer, client: httpx2.Client) -> None:
    outcome, _ = send(client, meta(fake, test_event_code="TEST123"), [milestone(1)])
    assert isinstance(outcome, Delivered)
    assert fake.meta.accepted == [] and len(fake.meta.test_events) == 1


def test_meta_one_old_event_fails_the_batch_and_bisection_isolates_it(
    fake: FakeAdsServer, client: httpx2.Client
) -> None:
    # The shell filters with check_conversion first; this is the fake enforcing §1.1 anyway.
    batch = [milestone(n) for n in range(8)]
    batch[5] = milestone(5, age_days=8)
    results = dict(send_bisecting(client, meta(fake), batch))
    assert isinstance(results[batch[5].event_id], Reject)
    delivered = [event_id for event_id, o in results.items() if isinstance(o, Delivered)]
    assert len(delivered) == 7 and len(fake.meta.accepted) == 7


def test_meta_planned_failures(fake: FakeAdsServer, client: httpx2.Client) -> None:
    fake.meta.plan_server_error()
    fake.meta.plan_rate_limit(retry_after=30)
    fake.meta.plan_bad_event(index=1)
    batch = [milestone(n) for n in range(2)]
    first, _ = send(client, meta(fake), batch)
    second, _ = send(client, meta(fake), batch)
    third, _ = send(client, meta(fake), batch)
    assert isinstance(first, Retry)
    assert isinstance(second, Retry) and second.retry_after == 30.0
    assert isinstance(third, Bisect) and third.bad_index == 1
    assert isinstance(send(client, meta(fake), batch)[0], Delivered)


def test_meta_auth_failures(fake: FakeAdsServer, client: httpx2.Client) -> None:
    outcome, response = send(client, meta(fake), [milestone(1)], token="stolen")
    assert isinstance(outcome, Reject) and response.json()["error"]["code"] == 190
    body = build_request([milestone(1)], meta(fake), appsecret_proof="0" * 64)
    outcome, _ = send(client, meta(fake), [milestone(1)], body=body)
    assert isinstance(outcome, Reject)


def test_meta_fake_refuses_raw_pii(fake: FakeAdsServer, client: httpx2.Client) -> None:
    body = build_request([milestone(1)], meta(fake), appsecret_proof=None)
    body["data"][0]["user_data"]["em"] = ["ana.silva@gmail.com"]
    body["appsecret_proof"] = compute_appsecret_proof("app-secret", TOKENS["meta"])
    outcome, response = send(client, meta(fake), [milestone(1)], body=body)
    assert isinstance(outcome, Reject)
    assert "em not hashed" in response.json()["error"]["message"]


def test_meta_website_events_need_url_and_user_agent(
    fake: FakeAdsServer, client: httpx2.Client
) -> None:
    bare = milestone(1, action_source="website", user=UserIdentifiers(email="a@example.com"))
    outcome, _ = send(client, meta(fake), [bare])
    assert isinstance(outcome, Reject)


# --- Google Data Manager -----------------------------------------------------------------------


def google(fake: FakeAdsServer, **changes: Any) -> GoogleDestination:
    return GoogleDestination(
        operating_account_id="123", conversion_action_id="987", base_url=fake.base_url, **changes
    )


def test_google_ingests_and_dedups_by_transaction_id(
    fake: FakeAdsServer, client: httpx2.Client
) -> None:
    batch = [milestone(n, value=10.0 * n, currency="brl") for n in range(4)]
    outcome, _ = send(client, google(fake), batch)
    assert isinstance(outcome, Delivered) and outcome.note.startswith("requestId=")
    event = fake.google.accepted[0]
    assert event["userData"]["userIdentifiers"][2]["address"]["postalCode"] == "01310-100"
    assert event["consent"] == {
        "adUserData": "CONSENT_GRANTED",
        "adPersonalization": "CONSENT_GRANTED",
    }
    send(client, google(fake), batch)
    assert len(fake.google.accepted) == 4 and len(fake.google.duplicates) == 4
    assert not any(raw in json.dumps(fake.google.requests[0].body) for raw in RAW_PII)


def test_google_validate_only_records_nothing(fake: FakeAdsServer, client: httpx2.Client) -> None:
    outcome, _ = send(client, google(fake, validate_only=True), [milestone(1)])
    assert isinstance(outcome, Delivered)
    assert fake.google.accepted == [] and len(fake.google.validated) == 1


def test_google_rejects_oversized_batches_and_hashed_postal_codes(
    fake: FakeAdsServer, client: httpx2.Client
) -> None:
    body = build_google_request([milestone(n) for n in range(2000)], google(fake))
    body["events"].append(body["events"][0])
    outcome, _ = send(client, google(fake), [milestone(1)], body=body)
    assert isinstance(outcome, Reject)
    body = build_google_request([milestone(1), milestone(2)], google(fake))
    body["events"][1]["userData"]["userIdentifiers"][2]["address"]["postalCode"] = "a" * 64
    outcome, response = send(client, google(fake), [milestone(1), milestone(2)], body=body)
    assert isinstance(outcome, Bisect) and outcome.bad_index == 1
    assert response.json()["error"]["status"] == "INVALID_ARGUMENT"


def test_google_planned_failures_and_auth(fake: FakeAdsServer, client: httpx2.Client) -> None:
    fake.google.plan_server_error(503)
    fake.google.plan_rate_limit(retry_after=7)
    fake.google.plan_invalid_argument(index=2)
    batch = [milestone(n) for n in range(3)]
    assert isinstance(send(client, google(fake), batch)[0], Retry)
    limited, _ = send(client, google(fake), batch)
    assert isinstance(limited, Retry) and limited.retry_after == 7.0
    invalid, _ = send(client, google(fake), batch)
    assert isinstance(invalid, Bisect) and invalid.bad_index == 2
    assert isinstance(send(client, google(fake), batch, token="nope")[0], Reject)


# --- Google Ads API ----------------------------------------------------------------------------


def google_ads(fake: FakeAdsServer, **changes: Any) -> GoogleAdsDestination:
    values: dict[str, Any] = {
        "customer_id": "1234567890",
        "conversion_action_id": "555",
        "base_url": fake.base_url,
        **changes,
    }
    return GoogleAdsDestination(**values)


def test_google_ads_takes_hashed_rows_and_refuses_reused_order_ids(
    fake: FakeAdsServer, client: httpx2.Client
) -> None:
    batch = [milestone(n, value=10.0, currency="brl", order_id=f"D-{n}") for n in range(3)]
    outcome, response = send(client, google_ads(fake), batch)
    assert isinstance(outcome, Delivered) and len(response.json()["results"]) == 3
    row = fake.google_ads.accepted[0]
    assert row["conversionAction"] == "customers/1234567890/conversionActions/555"
    assert row["gclid"] == "gclid-1" and row["currencyCode"] == "BRL"
    assert row["consent"] == {"adUserData": "GRANTED"}
    assert not any(raw in json.dumps(fake.google_ads.requests[0].body) for raw in RAW_PII)
    # capi.md §6.2: one conversion per order id per action; a re-send is refused per row, and
    # that refusal means the conversion is already there.
    again, _ = send(client, google_ads(fake), batch)
    assert isinstance(again, PerEvent) and all(isinstance(o, Delivered) for o in again.outcomes)
    assert len(fake.google_ads.accepted) == 3 and len(fake.google_ads.duplicates) == 3


def test_google_ads_fake_checks_rows_and_answers_with_a_partial_failure(
    fake: FakeAdsServer, client: httpx2.Client
) -> None:
    batch = [milestone(n) for n in range(5)]
    body = build_google_ads_request(batch, google_ads(fake))
    rows = body["conversions"]
    rows[0]["userIdentifiers"][0]["hashedEmail"] = "ana.silva@gmail.com"  # not hashed
    rows[1]["conversionDateTime"] = "2026-05-28T19:26:40Z"  # RFC 3339 is not the Ads format
    rows[2]["consent"]["adPersonalization"] = "GRANTED"  # not for click conversions (§6.4)
    rows[3]["gbraid"], rows[3]["wbraid"] = "gb", "wb"
    outcome, response = send(client, google_ads(fake), batch, body=body)
    assert response.status_code == 200
    assert isinstance(outcome, PerEvent)
    assert [type(o) for o in outcome.outcomes] == [Reject] * 4 + [Delivered]
    assert [code for _, code in fake.google_ads.failed] == [
        "INVALID_USER_IDENTIFIER",
        "INVALID_CONVERSION_DATE_TIME",
        "INVALID_CONSENT",
        "GBRAID_WBRAID_BOTH_SET",
    ]
    assert response.json()["results"][:4] == [{}, {}, {}, {}]
    assert len(fake.google_ads.accepted) == 1


def test_google_ads_fake_refuses_bad_requests_whole(
    fake: FakeAdsServer, client: httpx2.Client
) -> None:
    body = build_google_ads_request([milestone(1)], google_ads(fake))
    outcome, response = send(
        client, google_ads(fake), [milestone(1)], body={**body, "partialFailure": False}
    )
    assert isinstance(outcome, Reject) and "PARTIAL_FAILURE_MODE_REQUIRED" in outcome.reason
    many = {**body, "conversions": body["conversions"] * 2001}
    outcome, response = send(client, google_ads(fake), [milestone(1)], body=many)
    assert isinstance(outcome, Reject) and "TOO_MANY_CONVERSIONS_IN_REQUEST" in outcome.reason
    outcome, response = send(client, google_ads(fake), [milestone(1)], token="nope")
    assert response.status_code == 401 and isinstance(outcome, Reject)
    bad_login = google_ads(fake, login_customer_id="123-456-7890")  # dashes are not accepted
    outcome, _ = send(client, bad_login, [milestone(1)])
    assert isinstance(outcome, Reject) and "LOGIN_CUSTOMER_ID" in outcome.reason
    assert fake.google_ads.accepted == []


def test_google_ads_planned_failures_and_validate_only(
    fake: FakeAdsServer, client: httpx2.Client
) -> None:
    fake.google_ads.plan_server_error(503)
    fake.google_ads.plan_rate_limit(retry_after=9)
    fake.google_ads.plan_not_allowlisted()
    batch = [milestone(n) for n in range(3)]
    assert isinstance(send(client, google_ads(fake), batch)[0], Retry)
    limited, _ = send(client, google_ads(fake), batch)
    assert isinstance(limited, Retry) and limited.retry_after == 9.0
    refused, _ = send(client, google_ads(fake), batch)
    assert isinstance(refused, Reject) and "Data Manager" in refused.reason
    outcome, _ = send(client, google_ads(fake, validate_only=True), batch)
    assert isinstance(outcome, Delivered)
    assert fake.google_ads.accepted == [] and len(fake.google_ads.validated) == 3


# --- TikTok ------------------------------------------------------------------------------------


def tiktok(fake: FakeAdsServer) -> TikTokDestination:
    return TikTokDestination(pixel_code="CPX", event_source="crm", base_url=fake.base_url)


def test_tiktok_accepts_and_dedups(fake: FakeAdsServer, client: httpx2.Client) -> None:
    batch = [milestone(n, event_name="SubmitForm") for n in range(2)]
    outcome, response = send(client, tiktok(fake), batch)
    assert isinstance(outcome, Delivered) and response.json()["code"] == 0
    assert fake.tiktok.accepted[0]["user"]["ttclid"] == "tt-1"
    send(client, tiktok(fake), batch)
    assert len(fake.tiktok.accepted) == 2 and len(fake.tiktok.duplicates) == 2


def test_tiktok_errors_arrive_as_http_200(fake: FakeAdsServer, client: httpx2.Client) -> None:
    fake.tiktok.plan_error_code(40100, "Too many requests")
    outcome, response = send(client, tiktok(fake), [milestone(1)])
    assert response.status_code == 200 and isinstance(outcome, Retry)
    outcome, response = send(client, tiktok(fake), [milestone(1)], token="wrong")
    assert response.status_code == 200 and isinstance(outcome, Reject)
    body = build_request([milestone(1), milestone(2)], tiktok(fake))
    body["data"][0]["user"]["email"] = "ana@example.com"
    outcome, _ = send(client, tiktok(fake), [milestone(1), milestone(2)], body=body)
    assert isinstance(outcome, Bisect) and outcome.bad_index == 0


def test_unknown_route_is_404(fake: FakeAdsServer, client: httpx2.Client) -> None:
    assert client.post(f"{fake.base_url}/nowhere", json={}).status_code == 404
