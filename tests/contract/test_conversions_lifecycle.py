"""A conversion's life across batches and after delivery, end to end on both backends: match
keys kept on the profile between batches, a dead letter re-driven by `leadloop conversions
replay`, what `GET /api/v1/conversions` counts when deliveries fail, skip and lack match keys,
and request-level settings read from the playbook (the harness and helpers are those of
`test_conversions_pipeline`)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from leadloop.config import Settings
from leadloop.conversions import cli
from leadloop.conversions.payloads import compute_appsecret_proof
from tests.contract import test_conversions_pipeline as pipeline
from tests.contract.test_conversions_pipeline import (
    ENV,
    PLAYBOOK,
    UA,
    Rig,
    api_summary,
    open_rig,
    order,
    person,
    refuse_order,
    someone,
    visit,
)

rig = pipeline.rig
"""The pipeline tests' fixture: every destination configured, pointed at the fake."""
CLICKS = "fbclid=FbClick.AbC&gclid=GcLiD-1&ttclid=TtClick1"


def test_keys_captured_in_one_batch_reach_a_checkout_in_a_later_one(rig: Rig) -> None:
    # The landing page names its click ids only in `context.page.search` and its cookies only
    # in `context.cookies`; the checkout comes an hour later, server side, in another batch, so
    # its keys can only come from what the first batch stored on the profile.
    h = rig.h
    landed = rig.clock.now()
    landing = {
        "type": "page",
        "userId": "u1",
        "context": {
            "userAgent": UA,
            "ip": "203.0.113.9",
            "page": {"path": "/pricing", "search": f"?{CLICKS}"},
            "cookies": {"_fbp": "fb.1.1700000000000.42", "_ttp": "ttp-cookie-1"},
        },
    }
    h.send(person(), landing)
    h.settle()
    fbc = f"fb.1.{int(landed * 1000)}.FbClick.AbC"
    stored = {
        "fbc": fbc,
        "fbc_at": landed,
        "fbp": "fb.1.1700000000000.42",
        "fbp_at": landed,
        "gclid": "GcLiD-1",
        "gclid_at": landed,
        "ttclid": "TtClick1",
        "ttclid_at": landed,
        "ttp": "ttp-cookie-1",
        "ttp_at": landed,
        "ip": "203.0.113.9",
        "user_agent": UA,
        "web_at": landed,
    }
    assert [json.loads(str(s)) for (s,) in h.sql("SELECT state FROM conversion_keys")] == [stored]

    rig.clock.advance(3600)
    checkout = {
        "type": "track",
        "userId": "u1",
        "event": "Checkout Completed",
        "properties": {"checkout_id": "chk-9", "revenue": 20, "currency": "EUR"},
    }
    h.send(checkout)
    h.settle()
    rig.drain()

    (meta,) = rig.fake.meta.accepted
    assert meta["event_name"] == "Purchase" and meta["event_id"] == "order-chk-9-purchase"
    assert meta["action_source"] == "other"  # no page URL on a server-side checkout
    assert meta["custom_data"] == {"value": 20, "currency": "eur", "order_id": "chk-9"}
    assert meta["user_data"]["fbc"] == fbc and meta["user_data"]["fbp"] == "fb.1.1700000000000.42"
    assert meta["user_data"]["client_ip_address"] == "203.0.113.9"
    assert meta["user_data"]["client_user_agent"] == UA
    (google,) = rig.fake.google.accepted
    assert google["transactionId"] == "chk-9"
    assert google["adIdentifiers"]["gclid"] == "GcLiD-1"
    (tiktok,) = rig.fake.tiktok.accepted
    assert tiktok["event"] == "CompletePayment" and tiktok["event_id"] == "order-chk-9-purchase"
    assert tiktok["user"]["ttclid"] == "TtClick1" and tiktok["user"]["ttp"] == "ttp-cookie-1"
    # The checkout carried no keys: what is stored still dates from the landing page.
    assert [json.loads(str(s)) for (s,) in h.sql("SELECT state FROM conversion_keys")] == [stored]


def test_replay_re_drives_a_dead_letter_and_the_platform_takes_it_once(
    rig: Rig, backend_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    h = rig.h
    rig.fake.meta.plan_graph_error(400, 190)  # token invalidated: not retried, a dead letter
    h.send(person(), visit(), order("o-1"))
    h.settle()
    rig.drain()
    key = "meta:order-o-1-purchase"
    assert rig.statuses() == {
        key: "dead",
        "google:order-o-1-purchase": "delivered",
        "tiktok:order-o-1-purchase": "delivered",
    }
    assert rig.fake.meta.accepted == [] and len(rig.fake.meta.requests) == 1

    # The token is fixed; `leadloop conversions replay --destination meta`, on the engine's
    # clock (the CLI reads the system one).
    monkeypatch.setattr(cli, "SystemClock", lambda: rig.clock)
    args = argparse.Namespace(destination="meta", workspace="default")
    assert cli.cmd_replay(args, Settings(database_url=backend_url)) == 0
    assert capsys.readouterr().out == "re-driving 1 dead conversion(s) for meta\n"
    row = h.sql("SELECT status, attempts FROM outbox WHERE idempotency_key = ?", key)
    assert row == [("pending", 0)]

    rig.drain()
    assert rig.statuses()[key] == "delivered"
    assert [e["event_id"] for e in rig.fake.meta.accepted] == ["order-o-1-purchase"]
    assert rig.fake.meta.duplicates == [] and len(rig.fake.meta.requests) == 2
    # Only the dead letter went again.
    assert len(rig.fake.google.requests) == len(rig.fake.tiktok.requests) == 1


def test_visibility_api_with_dead_letters_send_time_skips_and_partial_coverage(rig: Rig) -> None:
    h = rig.h
    refuse_order(rig, "bad")
    rig.fake.tiktok.plan_server_error(503)
    cookies_only = {
        "type": "page",
        "userId": "u2",
        "properties": {"_fbp": "fb.1.1700000000000.43", "_ttp": "ttp-2"},
        "context": {"userAgent": UA},
    }
    # u1: every key, two orders (one Meta refuses); u2: no phone, browser ids but no click id;
    # u3: phone, no click or browser id; u4: no consent.
    h.send(someone("u1"), visit("u1"), order("o-1", user="u1"), order("bad", user="u1"))
    h.send(someone("u2", phone=None), cookies_only, order("o-2", user="u2"))
    h.send(someone("u3"), order("o-3", user="u3"))
    h.send(someone("u4", consent=None), order("o-4", user="u4"))
    h.settle()
    rig.dispatcher.run_once()  # Meta and Google answer; TikTok is down
    rig.clock.advance(8 * 86400)  # and comes back after its 7-day window
    rig.drain()
    dead = h.sql("SELECT last_error FROM outbox WHERE idempotency_key = 'meta:order-bad-purchase'")
    assert "Invalid parameter" in str(dead[0][0])

    found = api_summary(h)["destinations"]
    no_consent = (
        "no advertising consent (trait ad_consent or "
        "context.consent.categoryPreferences.advertising is not true)"
    )
    # Of four queued: every one with an email hash; u2 without a phone; u1's two with click
    # ids; u1's and u2's three with browser ids.
    coverage = {"events": 4, "email_hash": 1.0, "phone_hash": 0.75, "click_id": 0.5}
    assert found["meta"] == {
        "sent": 3,
        "pending": 0,
        "failed": 1,
        "skipped": 1,
        "failed_reasons": [{"reason": dead[0][0], "count": 1}],
        "skipped_reasons": [{"reason": no_consent, "count": 1}],
        "coverage": {**coverage, "browser_id": 0.75},
    }
    # Google takes no browser id: none is counted for it.
    assert found["google"]["sent"] == 4 and found["google"]["failed"] == 0
    assert found["google"]["coverage"] == {**coverage, "browser_id": 0.0}
    # TikTok's four ran out of time after a failed attempt: failed, not skipped by design.
    expired = "tiktok: event_time is older than 7 days; not delivered in 1 attempt"
    assert found["tiktok"] == {
        "sent": 0,
        "pending": 0,
        "failed": 4,
        "skipped": 1,
        "failed_reasons": [{"reason": expired, "count": 4}],
        "skipped_reasons": [{"reason": no_consent, "count": 1}],
        "coverage": {**coverage, "browser_id": 0.75},
    }


def test_test_event_codes_validate_only_and_app_secret_from_the_playbook_reach_the_requests(
    backend_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    text = (
        PLAYBOOK.replace(
            "      app_secret: app-secret\n",
            "      app_secret: app-secret\n      test_event_code: TEST-META\n",
        )
        .replace(
            "      destination: ${LEADLOOP_GOOGLE_DESTINATION:-}\n",
            "      destination: ${LEADLOOP_GOOGLE_DESTINATION:-}\n      validate_only: true\n",
        )
        .replace(
            "      pixel_code: ${LEADLOOP_TIKTOK_PIXEL_CODE:-}\n",
            "      pixel_code: ${LEADLOOP_TIKTOK_PIXEL_CODE:-}\n      test_event_code: TEST-TT\n",
        )
    )
    path = tmp_path / "playbook.yaml"
    path.write_text(text)
    with open_rig(backend_url, path, ENV, monkeypatch, meta_app_secret="app-secret") as rig:
        rig.h.send(person(), visit(), order("o-1"))
        rig.h.settle()
        rig.drain()
        assert set(rig.statuses().values()) == {"delivered"}

    fake = rig.fake
    (meta,) = fake.meta.requests
    assert meta.body["test_event_code"] == "TEST-META"
    assert meta.body["appsecret_proof"] == compute_appsecret_proof("app-secret", "meta-token")
    assert fake.meta.accepted == [] and len(fake.meta.test_events) == 1
    (google,) = fake.google.requests
    assert google.body["validateOnly"] is True
    assert fake.google.accepted == [] and len(fake.google.validated) == 1
    (tiktok,) = fake.tiktok.requests
    assert tiktok.body["test_event_code"] == "TEST-TT"
    assert fake.tiktok.accepted == [] and len(fake.tiktok.test_events) == 1
