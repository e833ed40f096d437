"""The Google Ads API destination end to end on both backends: a checkout and a CRM stage change
through the processor and the outbox to the local fake, with per-row partial failures recorded
per conversion (the harness and helpers are those of `test_conversions_pipeline`)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.contract.test_conversions_pipeline import (
    PLAYBOOK,
    RAW_PII,
    Rig,
    crm_stage,
    open_rig,
    order,
    person,
    sha,
    visit,
)

GOOGLE_ADS_PLAYBOOK = (
    PLAYBOOK.split("conversions:")[0]
    + """conversions:
  default_region: US
  destinations:
    - id: google_ads
      type: google_ads
      customer_id: ${LEADLOOP_GOOGLE_ADS_CUSTOMER_ID:-}
      conversion_action: ${LEADLOOP_GOOGLE_ADS_CONVERSION_ACTION:-}
      developer_token: ${LEADLOOP_GOOGLE_ADS_DEVELOPER_TOKEN:-}
      access_token: ${LEADLOOP_GOOGLE_ADS_ACCESS_TOKEN:-}
      login_customer_id: ${LEADLOOP_GOOGLE_ADS_LOGIN_CUSTOMER_ID:-}
      base_url: ${LEADLOOP_GOOGLE_ADS_API_BASE:-https://googleads.googleapis.com}
  mappings:
    - id: purchase
      track: [Order Completed, Checkout Completed]
      event: Purchase
      value: properties.revenue
      currency: properties.currency
    - id: mql
      stage: MQL
      event: Lead
"""
)


@pytest.fixture
def rig(backend_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Rig]:
    env = {
        "LEADLOOP_GOOGLE_ADS_CUSTOMER_ID": "123-456-7890",
        "LEADLOOP_GOOGLE_ADS_CONVERSION_ACTION": "987654",
        "LEADLOOP_GOOGLE_ADS_DEVELOPER_TOKEN": "developer-token",
        "LEADLOOP_GOOGLE_ADS_ACCESS_TOKEN": "google-ads-token",
        "LEADLOOP_GOOGLE_ADS_LOGIN_CUSTOMER_ID": "1112223333",
        "LEADLOOP_GOOGLE_ADS_API_BASE": "{fake}",
    }
    path = tmp_path / "playbook.yaml"
    path.write_text(GOOGLE_ADS_PLAYBOOK)
    with open_rig(backend_url, path, env, monkeypatch) as rig:
        yield rig


def last_error(rig: Rig, key: str) -> str:
    rows = rig.h.sql(f"SELECT last_error FROM outbox WHERE idempotency_key = '{key}'")
    return str(rows[0][0])


def test_checkout_and_stage_change_reach_the_ads_api_hashed(rig: Rig) -> None:
    rig.h.send(person(), visit(), order("o-1"), crm_stage("MQL"))
    rig.h.settle()
    rig.drain()
    rows = {row["orderId"]: row for row in rig.fake.google_ads.accepted}
    assert len(rows) == 2 and "o-1" in rows
    purchase = rows["o-1"]
    assert purchase["conversionAction"] == "customers/1234567890/conversionActions/987654"
    assert purchase["gclid"] == "GcLiD-1"
    assert purchase["conversionValue"] == 99.5 and purchase["currencyCode"] == "USD"
    assert purchase["consent"] == {"adUserData": "GRANTED"}
    assert purchase["userIdentifiers"] == [
        {"hashedEmail": sha("ana.silva@example.com")},
        {"hashedPhoneNumber": sha("+16505551212")},
    ]
    (lead,) = [r for key, r in rows.items() if key != "o-1"]
    assert lead["orderId"].startswith("leadloop-") and lead["orderId"].endswith("-lead_mql")
    request = rig.fake.google_ads.requests[0]
    assert request.headers["login-customer-id"] == "1112223333"
    wire = [json.dumps(r.body) for r in rig.fake.google_ads.requests]
    stored = [
        str(p) for (p,) in rig.h.sql("SELECT payload FROM outbox JOIN outbox_payloads USING (id)")
    ]
    for text in wire + stored:
        for raw in RAW_PII:
            assert raw not in text, raw
    assert set(rig.statuses().values()) == {"delivered"}


def test_partial_failure_fails_only_the_named_row(rig: Rig) -> None:
    rig.fake.google_ads.plan_row_errors({1: "INVALID_USER_IDENTIFIER"})
    rig.h.send(person(), visit(), order("o-1"), order("o-2"), order("o-3"))
    rig.h.settle()
    rig.drain()
    (upload,) = [r.body["conversions"] for r in rig.fake.google_ads.requests]
    assert len(upload) == 3  # one request, no bisection: Google named the failed row
    bad = upload[1]["orderId"]
    assert rig.statuses() == {
        f"google_ads:order-{o}-purchase": "dead" if o == bad else "delivered"
        for o in ("o-1", "o-2", "o-3")
    }
    assert "INVALID_USER_IDENTIFIER" in last_error(rig, f"google_ads:order-{bad}-purchase")
    accepted = sorted(r["orderId"] for r in rig.fake.google_ads.accepted)
    assert accepted == sorted({"o-1", "o-2", "o-3"} - {bad})


def test_a_500_is_retried_and_each_conversion_accepted_once(rig: Rig) -> None:
    rig.fake.google_ads.plan_server_error(500)
    rig.h.send(person(), visit(), order("o-1"), order("o-2"))
    rig.h.settle()
    start = rig.clock.now()
    rig.dispatcher.run_once()
    pending = rig.h.sql("SELECT next_attempt_at FROM outbox WHERE status = 'pending'")
    assert len(pending) == 2 and all(at > start for (at,) in pending)
    rig.drain()
    assert sorted(r["orderId"] for r in rig.fake.google_ads.accepted) == ["o-1", "o-2"]
    assert rig.fake.google_ads.duplicates == []
    assert set(rig.statuses().values()) == {"delivered"}


def test_an_account_that_is_not_allowlisted_is_told_to_use_data_manager(rig: Rig) -> None:
    rig.fake.google_ads.allowlisted = False
    rig.h.send(person(), visit(), order("o-1"))
    rig.h.settle()
    rig.drain()
    assert rig.statuses() == {"google_ads:order-o-1-purchase": "dead"}
    error = last_error(rig, "google_ads:order-o-1-purchase")
    assert "CUSTOMER_NOT_ALLOWLISTED_FOR_THIS_FEATURE" in error and "Data Manager" in error
    assert len(rig.fake.google_ads.requests) == 1
