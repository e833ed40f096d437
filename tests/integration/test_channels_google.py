"""Google Customer Match through the Data Manager API, against the local fake, through a running
engine: add and remove send only hashes normalised by Google's rules (the fake files each hash
under the person it belongs to); 429 and 500 are retried; a documented 400 is recorded as failed
with Google's reason."""

from __future__ import annotations

import hashlib
import json
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from leadloop.testing import eventually
from leadloop.testing_fakes.messaging import FakeMessagingServer
from leadloop.testing_fakes.messaging_base import google_error
from tests.integration.test_channels_providers import Harness, identify, start_engine, stop

RAW_EMAIL = "Ada.Lovelace+News@GMail.com"
RAW_PHONE = "020 7946 0958"  # national format: the audience's default_region gives +44


def google_playbook(base: str) -> str:
    return textwrap.dedent(
        f"""
        version: 1
        channels:
          public_url: http://testserver
          audiences:
            - id: google-hot
              type: google
              api_base: {base}
              audience_id: "3333"
              operating_account: "1234567890"
              token: google-token
              default_region: GB
        """
    )


@pytest.fixture
def g(tmp_path: Path) -> Iterator[Harness]:
    with FakeMessagingServer() as fake:
        # Whom Google knows, by the raw identifiers: the fake normalises them by Google's own
        # rules (gmail: no dots, no +tag; phone: E.164).
        fake.google_person("ada", email="adalovelace@gmail.com", phone="+44 20 7946 0958")
        engine, client, write_key, token = start_engine(tmp_path, google_playbook(fake.base_url))
        try:
            with client:
                profile = identify(
                    engine,
                    client,
                    write_key,
                    {"email": RAW_EMAIL, "phone": RAW_PHONE, "ad_consent": True},
                )
                yield Harness(engine, client, fake, token, profile)
        finally:
            stop(engine)


def test_add_and_remove_send_normalised_hashes_only(g: Harness) -> None:
    g.queue("gm-add", "audience", audience="google-hot", action="add")
    assert g.settled("gm-add")[0] == "delivered"
    assert g.fake.google_members == {"ada:email", "ada:phone"}
    assert g.fake.google_unmatched == []

    g.queue("gm-remove", "audience", audience="google-hot", action="remove")
    assert g.settled("gm-remove")[0] == "delivered"
    assert g.fake.google_members == set()
    assert g.fake.google_unmatched == []

    add, remove = g.fake.google.requests
    assert (add.method, add.path) == ("POST", "/v1/audienceMembers:ingest")
    assert (remove.method, remove.path) == ("POST", "/v1/audienceMembers:remove")
    assert add.headers["authorization"] == "Bearer google-token"
    body = json.loads(add.body)
    assert body["destinations"] == [
        {
            "operatingAccount": {"accountType": "GOOGLE_ADS", "accountId": "1234567890"},
            "productDestinationId": "3333",
        }
    ]
    assert body["encoding"] == "HEX"
    assert body["termsOfService"] == {"customerMatchTermsOfServiceStatus": "ACCEPTED"}
    member = body["audienceMembers"][0]
    assert member["consent"] == {
        "adUserData": "CONSENT_GRANTED",
        "adPersonalization": "CONSENT_GRANTED",
    }
    assert member["userData"]["userIdentifiers"] == [
        {"emailAddress": hashlib.sha256(b"adalovelace@gmail.com").hexdigest()},
        {"phoneNumber": hashlib.sha256(b"+442079460958").hexdigest()},
    ]
    removed = json.loads(remove.body)
    assert "termsOfService" not in removed and "consent" not in removed
    raw = add.body + remove.body
    assert b"lovelace+news" not in raw.lower() and b"7946" not in raw
    assert [g.record(m)["status"] for m in ("gm-add", "gm-remove")] == ["sent", "sent"]


def test_the_official_formatter_agrees_with_the_fakes_rules() -> None:
    formatter = pytest.importorskip("google.ads.datamanager_util.format").Formatter()
    assert formatter.format_email_address(RAW_EMAIL) == "adalovelace@gmail.com"
    assert formatter.format_phone_number("+44 20 7946 0958") == "+442079460958"


def test_429_and_500_are_retried_then_added(g: Harness) -> None:
    g.fake.google.plan_rate_limit(retry_after=30)
    g.fake.google.plan_server_error(500)
    g.queue("gm-retry", "audience", audience="google-hot", action="add")
    eventually(lambda: g.outbox("gm-retry")[1] == 1)
    status, _, error = g.outbox("gm-retry")
    assert status == "pending" and "RESOURCE_EXHAUSTED" in (error or "")
    g.retry_due()
    eventually(lambda: g.outbox("gm-retry")[1] == 2)
    assert "INTERNAL" in (g.outbox("gm-retry")[2] or "")
    g.retry_due()
    assert g.settled("gm-retry")[:2] == ("delivered", 3)
    assert g.fake.google_members == {"ada:email", "ada:phone"}
    history = [t["status"] for t in g.record("gm-retry")["history"]]
    assert history == ["queued", "queued", "queued", "sent"]


def test_a_documented_400_is_failed_with_googles_reason(g: Harness) -> None:
    g.fake.google_user_list = "4444"  # the configured list is not (any longer) valid
    g.queue("gm-bad", "audience", audience="google-hot", action="add")
    status, attempts, error = g.settled("gm-bad")
    assert (status, attempts) == ("dead", 1)
    assert "INVALID_USER_LIST_ID" in (error or "")
    record = g.record("gm-bad")
    assert record["status"] == "failed"
    assert "INVALID_ARGUMENT INVALID_USER_LIST_ID" in record["reason"]
    assert "The user list is not valid." in record["reason"]
    assert "destinations[0].productDestinationId" in record["reason"]
    failed = g.events("Message Failed")
    assert [e["properties"]["message_id"] for e in failed] == ["gm-bad"]
    assert g.fake.google_members == set()


def test_a_planned_terms_of_service_refusal_is_not_retried(g: Harness) -> None:
    g.fake.google.plan(
        400,
        google_error(
            400,
            "The Customer Match terms of service have not been accepted.",
            "TERMS_AND_CONDITIONS_NOT_SIGNED",
        ),
    )
    g.queue("gm-tos", "audience", audience="google-hot", action="add")
    status, attempts, error = g.settled("gm-tos")
    assert (status, attempts) == ("dead", 1)
    assert "TERMS_AND_CONDITIONS_NOT_SIGNED" in (error or "")
