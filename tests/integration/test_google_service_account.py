"""Google destinations with a service-account key file, against the local fakes: the sender gets
its bearer token from the fake token endpoint (which verifies the signed JWT with google-auth),
reuses it across batches, replaces it after expiry and after a 401, and settles a token
endpoint's failure like an API failure (retry, or a dead letter with the reason)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from leadloop.clock import ManualClock
from leadloop.conversions.destinations import DestinationConfig
from leadloop.conversions.google_credentials import load_service_account
from leadloop.conversions.model import Destination, GoogleAdsDestination, GoogleDestination
from leadloop.conversions.sender import ConversionSender
from leadloop.outbox.service import Claimed
from leadloop.testing_fakes.ads import FakeAdsServer
from tests.google_service_accounts import EMAIL, KeyFile, rsa_key, write_key_file
from tests.integration.test_conversions_sender import NOW, rows

START = NOW
"""The rows' events are a minute old at START."""
DATAMANAGER = "https://www.googleapis.com/auth/datamanager"
ADWORDS = "https://www.googleapis.com/auth/adwords"


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(START)


@pytest.fixture
def fake(clock: ManualClock) -> Iterator[FakeAdsServer]:
    with FakeAdsServer(clock=clock) as server:
        yield server


@pytest.fixture
def key(tmp_path: Path, fake: FakeAdsServer) -> KeyFile:
    """A key file whose public key the fake token endpoint trusts."""
    written = write_key_file(tmp_path / "sa.json", fake.token_uri)
    fake.google_token.trust(written.key_id, written.public_pem, written.email)
    return written


def sender_with(
    fake: FakeAdsServer, key_path: Path, *, ads: bool = False, parallel: int = 1
) -> ConversionSender:
    account = load_service_account(str(key_path))
    target: Destination
    if ads:
        target = GoogleAdsDestination(
            customer_id="1234567890", conversion_action_id="555", base_url=fake.base_url
        )
        config = DestinationConfig(
            "google_ads",
            "google_ads",
            target,
            developer_token="developer-token",
            service_account=account,
        )
    else:
        target = GoogleDestination(
            operating_account_id="1", conversion_action_id="2", base_url=fake.base_url
        )
        config = DestinationConfig("google", "google", target, service_account=account)
    return ConversionSender(lambda ws, name: config, parallel=parallel)


def batch(count: int, start: int = 0) -> list[Claimed]:
    return rows("google", "google", count, start)


def bearer(fake: FakeAdsServer, index: int = -1) -> str:
    return fake.google.requests[index].headers["authorization"]


def test_the_data_manager_request_carries_the_token_granted_for_a_verified_jwt(
    fake: FakeAdsServer, key: KeyFile
) -> None:
    sender = sender_with(fake, key.path)
    outcomes = sender.send_batch(batch(3), START)
    assert [o.status for o in outcomes] == ["delivered"] * 3
    (grant,) = fake.google_token.grants  # verified by google.auth.jwt.decode in the fake
    assert grant["iss"] == EMAIL and grant["scope"] == DATAMANAGER
    assert grant["aud"] == fake.token_uri and grant["exp"] - grant["iat"] <= 3600
    (token_request,) = fake.google_token.requests
    assert token_request.body["grant_type"] == "urn:ietf:params:oauth:grant-type:jwt-bearer"
    assert token_request.headers["content-type"].startswith("application/x-www-form-urlencoded")
    # The key itself never leaves: only the signed assertion, and only to the token URI.
    sent = repr([r.body for r in fake.google_token.requests + fake.google.requests])
    assert key.private_pem.splitlines()[1] not in sent
    assert bearer(fake) == "Bearer ya29.fake-1"
    assert len(fake.google.accepted) == 3
    sender.close()


def test_the_token_is_reused_until_shortly_before_it_expires(
    fake: FakeAdsServer, key: KeyFile, clock: ManualClock
) -> None:
    sender = sender_with(fake, key.path)
    for n in range(3):
        outcomes = sender.send_batch(batch(2, 10 * n), clock.now())
        assert {o.status for o in outcomes} == {"delivered"}
        clock.advance(600)
    assert sender.tokens.fetches == 1
    assert {bearer(fake, i) for i in range(3)} == {"Bearer ya29.fake-1"}
    # 3,300 s after the grant (expires_in 3,600 less the 300 s margin) a new one is fetched,
    # while the old one would still be accepted: no request leaves with a dying token.
    clock.set(START + 3300)
    assert fake.google_token.valid("ya29.fake-1")
    sender.send_batch(batch(1, 100), clock.now())
    assert sender.tokens.fetches == 2 and bearer(fake) == "Bearer ya29.fake-2"
    assert len(fake.google.accepted) == 7
    sender.close()


def test_requests_in_parallel_share_one_token_fetch(fake: FakeAdsServer, key: KeyFile) -> None:
    sender = sender_with(fake, key.path, parallel=4)
    outcomes = sender.send_batch(batch(4500), START)  # three Data Manager requests at once
    assert {o.status for o in outcomes} == {"delivered"}
    assert len(fake.google.requests) == 3
    assert sender.tokens.fetches == 1 and len(fake.google_token.requests) == 1
    sender.close()


def test_a_401_gets_a_new_token_and_one_more_try(
    fake: FakeAdsServer, key: KeyFile, clock: ManualClock
) -> None:
    sender = sender_with(fake, key.path)
    sender.send_batch(batch(1), START)
    fake.google_token.revoke_all()  # e.g. the key was rotated: the API now answers 401
    outcomes = sender.send_batch(batch(2, 10), clock.advance(60))
    assert [o.status for o in outcomes] == ["delivered"] * 2
    assert [r.headers["authorization"] for r in fake.google.requests] == [
        "Bearer ya29.fake-1",
        "Bearer ya29.fake-1",
        "Bearer ya29.fake-2",
    ]
    assert sender.tokens.fetches == 2
    sender.close()


def test_a_second_401_stands_and_dead_letters(fake: FakeAdsServer, key: KeyFile) -> None:
    sender = sender_with(fake, key.path)
    unauthenticated = {"error": {"code": 401, "status": "UNAUTHENTICATED", "message": "no"}}
    fake.google.plan(401, unauthenticated)
    fake.google.plan(401, unauthenticated)
    outcomes = sender.send_batch(batch(2), START)
    assert [o.status for o in outcomes] == ["dead", "dead"]
    assert "HTTP 401 UNAUTHENTICATED" in str(outcomes[0].error)
    assert len(fake.google.requests) == 2 and sender.tokens.fetches == 2
    sender.close()


def test_a_key_google_does_not_know_is_a_dead_letter_with_the_reason(
    fake: FakeAdsServer, tmp_path: Path
) -> None:
    # A well-formed key that was never registered (or was deleted): Google's `invalid_grant`.
    stranger = write_key_file(tmp_path / "other.json", fake.token_uri, key=rsa_key("other"))
    sender = sender_with(fake, stranger.path)
    outcomes = sender.send_batch(batch(2), START)
    assert [o.status for o in outcomes] == ["dead", "dead"]
    reason = str(outcomes[0].error)
    assert f"google: service account {EMAIL}: token endpoint {fake.token_uri}" in reason
    assert "HTTP 400 invalid_grant: Invalid JWT Signature." in reason
    assert "deleted or disabled in Google Cloud" in reason
    assert fake.google.requests == []  # nothing is sent without a token
    sender.close()


def test_a_key_signed_for_another_account_is_refused(
    fake: FakeAdsServer, key: KeyFile, tmp_path: Path
) -> None:
    """The fake checks `iss` against the key's owner, not only the signature."""
    other = write_key_file(tmp_path / "x.json", fake.token_uri, email="someone@else.iam.test")
    sender = sender_with(fake, other.path)
    outcomes = sender.send_batch(batch(1), START)
    assert outcomes[0].status == "dead" and "invalid_grant" in str(outcomes[0].error)
    sender.close()


def test_token_endpoint_trouble_is_retried_with_backoff(fake: FakeAdsServer, key: KeyFile) -> None:
    sender = sender_with(fake, key.path)
    fake.google_token.plan(503, {"error": "internal_failure"}, {"Retry-After": "30"})
    outcomes = sender.send_batch(batch(2), START)
    assert [o.status for o in outcomes] == ["pending", "pending"]
    assert "token endpoint" in str(outcomes[0].error) and "HTTP 503" in str(outcomes[0].error)
    assert outcomes[0].next_attempt_at is not None
    assert outcomes[0].next_attempt_at >= START + 30  # Retry-After is a floor
    assert fake.google.requests == []
    # The next attempt gets a token and delivers.
    assert {o.status for o in sender.send_batch(batch(2), START + 30)} == {"delivered"}
    sender.close()


def test_an_unreachable_token_endpoint_is_retried(tmp_path: Path, fake: FakeAdsServer) -> None:
    closed = write_key_file(tmp_path / "sa.json", "http://127.0.0.1:9/token")
    sender = sender_with(fake, closed.path)
    outcomes = sender.send_batch(batch(1), START)
    assert outcomes[0].status == "pending"
    assert "token endpoint: network error" in str(outcomes[0].error)
    sender.close()


def test_the_ads_api_gets_an_adwords_token(fake: FakeAdsServer, key: KeyFile) -> None:
    sender = sender_with(fake, key.path, ads=True)
    outcomes = sender.send_batch(rows("google_ads", "google_ads", 2), START)
    assert [o.status for o in outcomes] == ["delivered"] * 2
    (grant,) = fake.google_token.grants
    assert grant["scope"] == ADWORDS
    (request,) = fake.google_ads.requests
    assert request.headers["authorization"] == "Bearer ya29.fake-1"
    assert request.headers["developer-token"] == "developer-token"
    sender.close()
