"""Conversions end to end on both backends: events and CRM stage changes through the processor
(capture, consent, mapping, hashing, outbox) and the sender to the local platform fakes.

The stage and sender are attached to a harness engine here (the composition root wires them in
app.py). A dispatcher of our own, never started, is driven step by step with the manual clock, so
retries happen exactly when the test moves time.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from starlette.testclient import TestClient

from leadloop.clock import Clock
from leadloop.conversions import queries
from leadloop.conversions.config import conversions_config
from leadloop.conversions.sender import ConversionSender
from leadloop.conversions.service import ConversionStage
from leadloop.outbox import service as outbox_service
from leadloop.outbox.dispatcher import Dispatcher
from leadloop.scoring.service import ScoringStage
from leadloop.storage import workspaces
from leadloop.testing_fakes.ads import FakeAdsServer
from leadloop.testing_fakes.base import Invalid
from tests.contract.conftest import Harness, make_harness

PLAYBOOK = """
version: 1
scoring:
  models:
    - id: lead
      engagement:
        - { id: pricing, type: page, points: 10 }
      stages:
        - name: subscriber
        - name: lead
          at: 10
        - name: MQL
          at: 50
      stage_rules:
        - id: crm_stage
          type: track
          event: CRM Stage Changed
          stage_field: properties.stage
conversions:
  default_region: US
  destinations:
    - id: meta
      type: meta
      pixel_id: ${LEADLOOP_META_PIXEL_ID:-}
      access_token: ${LEADLOOP_META_ACCESS_TOKEN:-}
      base_url: ${LEADLOOP_META_API_BASE:-https://graph.facebook.com}
      app_secret: app-secret
      lead_event_source: HubSpot
    - id: google
      type: google
      base_url: ${LEADLOOP_GOOGLE_DM_API_BASE:-https://datamanager.googleapis.com}
      access_token: ${LEADLOOP_GOOGLE_ACCESS_TOKEN:-}
      destination: ${LEADLOOP_GOOGLE_DESTINATION:-}
    - id: tiktok
      type: tiktok
      pixel_code: ${LEADLOOP_TIKTOK_PIXEL_CODE:-}
      access_token: ${LEADLOOP_TIKTOK_ACCESS_TOKEN:-}
      base_url: ${LEADLOOP_TIKTOK_API_BASE:-https://business-api.tiktok.com}
  mappings:
    - id: purchase
      track: [Order Completed, Checkout Completed]
      event: Purchase
      event_names: { tiktok: CompletePayment }
      value: properties.revenue
      currency: properties.currency
      contents: properties.products
    - id: mql
      stage: MQL
      event: Lead
"""

EMAIL, PHONE, FIRST, LAST = "Ana.Silva@Example.com", "(650) 555-1212", "Ana", "Silva"
RAW_PII = [EMAIL, EMAIL.lower(), "ana.silva", "650) 555", "6505551212", FIRST, LAST]
UA = "Mozilla/5.0 (X11; Linux x86_64)"


class _Follow:
    """The fake's clock follows the engine's manual clock once the engine exists."""

    def __init__(self) -> None:
        self.target: Clock | None = None

    def now(self) -> float:
        assert self.target is not None
        return self.target.now()


class Rig:
    def __init__(self, h: Harness, fake: FakeAdsServer, sender: ConversionSender) -> None:
        self.h = h
        self.fake = fake
        self.sender = sender
        self.dispatcher = Dispatcher(h.engine.writer, h.engine.clock, {"conversion": sender})

    @property
    def clock(self) -> Any:
        return self.h.engine.manual_clock

    def drain(self, rounds: int = 60) -> None:
        """Deliver every pending conversion, moving the manual clock to each retry."""
        for _ in range(rounds):
            self.dispatcher.run_once()
            due = self.h.sql(
                "SELECT MIN(next_attempt_at) FROM outbox WHERE kind = 'conversion' "
                "AND status = 'pending'"
            )[0][0]
            if due is None:
                return
            now = self.clock.now()
            if due > now:
                self.clock.advance(due - now)
        raise AssertionError("conversions still pending")

    def statuses(self) -> dict[str, str]:
        rows = self.h.sql("SELECT idempotency_key, status FROM outbox WHERE kind = 'conversion'")
        return {str(k): str(s) for k, s in rows}


@contextlib.contextmanager
def open_rig(
    backend_url: str,
    playbook: Path,
    env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    default_region: str | None = None,
    **fake_options: Any,
) -> Iterator[Rig]:
    """A harness engine on `playbook` (its `${ENV}` from `env`, with `{fake}` standing for the
    fake's base URL; `default_region` is `LEADLOOP_DEFAULT_REGION`) whose conversions go to a
    local fake, one dispatcher step at a time."""
    follow = _Follow()
    with FakeAdsServer(clock=follow, **fake_options) as fake:
        for name, value in env.items():
            monkeypatch.setenv(name, value.format(fake=fake.base_url))
        h = make_harness(backend_url, str(playbook), default_region=default_region)
        engine = h.engine
        follow.target = engine.clock

        def config(ws: str) -> Any:
            return conversions_config(engine.playbooks.get(ws))

        # Tests drive delivery themselves, step by step: the engine's own dispatcher leaves
        # conversions alone unless a test hands it the sender again.
        engine.dispatcher.senders.pop("conversion", None)
        engine.processor.set_stages([ScoringStage(engine.scoring_models), ConversionStage(config)])
        sender = ConversionSender(lambda ws, dest: config(ws).destination(dest))
        rig = Rig(h, fake, sender)
        try:
            yield rig
        finally:
            rig.dispatcher.stop()
            sender.close()
            engine.stop()


ENV = {
    "LEADLOOP_META_PIXEL_ID": "123456",
    "LEADLOOP_META_ACCESS_TOKEN": "meta-token",
    "LEADLOOP_META_API_BASE": "{fake}",
    "LEADLOOP_GOOGLE_DM_API_BASE": "{fake}",
    "LEADLOOP_GOOGLE_ACCESS_TOKEN": "google-token",
    "LEADLOOP_GOOGLE_DESTINATION": "1234567890/987654",
    "LEADLOOP_TIKTOK_PIXEL_CODE": "TTPIXEL",
    "LEADLOOP_TIKTOK_ACCESS_TOKEN": "tiktok-token",
    "LEADLOOP_TIKTOK_API_BASE": "{fake}",
}
"""Every destination configured, pointed at the fake (`{fake}`: its base URL)."""


@pytest.fixture
def rig(backend_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Rig]:
    path = tmp_path / "playbook.yaml"
    path.write_text(PLAYBOOK)
    with open_rig(backend_url, path, ENV, monkeypatch, meta_app_secret="app-secret") as rig:
        yield rig


def person(user: str = "u1", *, consent: bool | None = True, **traits: Any) -> dict[str, Any]:
    values: dict[str, Any] = {
        "email": EMAIL,
        "phone": PHONE,
        "firstName": FIRST,
        "lastName": LAST,
        **traits,
    }
    if consent is not None:
        values["ad_consent"] = consent
    return {"type": "identify", "userId": user, "traits": values}


def someone(user: str, *, consent: bool | None = True, **traits: Any) -> dict[str, Any]:
    """`person` with an email and phone of their own, so profiles never share an identity."""
    number = sum(map(ord, user))
    own = {"email": f"{user}@example.com", "phone": f"+1650555{number:04d}", **traits}
    return person(user, consent=consent, **own)


def visit(user: str = "u1") -> dict[str, Any]:
    url = "https://shop.test/pricing?fbclid=FbClick.AbC&gclid=GcLiD-1&ttclid=TtClick1"
    return {
        "type": "page",
        "userId": user,
        "properties": {"url": url, "_fbp": "fb.1.1700000000000.42", "_ttp": "ttp-cookie-1"},
        "context": {"userAgent": UA, "ip": "203.0.113.9", "page": {"url": url}},
    }


def order(order_id: str, user: str = "u1", **context: Any) -> dict[str, Any]:
    return {
        "type": "track",
        "userId": user,
        "event": "Order Completed",
        "properties": {
            "order_id": order_id,
            "revenue": 99.5,
            "currency": "usd",
            "products": [
                {"product_id": "sku-1", "quantity": 2, "price": 30},
                {"sku": "sku-2", "price": 39.5},
            ],
        },
        "context": {"userAgent": UA, "page": {"url": "https://shop.test/checkout"}, **context},
    }


def crm_stage(stage: str, user: str = "u1") -> dict[str, Any]:
    return {
        "type": "track",
        "userId": user,
        "event": "CRM Stage Changed",
        "properties": {"stage": stage, "deal_id": "D-7"},
    }


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def assert_no_raw_pii(rig: Rig) -> None:
    bodies = [json.dumps(r.body) + json.dumps(r.query) for p in _platforms(rig) for r in p.requests]
    payloads = [
        str(p) for (p,) in rig.h.sql("SELECT payload FROM outbox JOIN outbox_payloads USING (id)")
    ]
    for text in bodies + payloads:
        for raw in RAW_PII:
            assert raw not in text, f"{raw!r} leaked: {text[:300]}"


def _platforms(rig: Rig) -> list[Any]:
    return [rig.fake.meta, rig.fake.google, rig.fake.tiktok]


def test_checkout_and_crm_stage_change_reach_every_platform(rig: Rig) -> None:
    h = rig.h
    h.send(person(), visit(), order("o-1"), crm_stage("MQL"))
    h.settle()
    rig.drain()

    meta = {e["event_name"]: e for e in rig.fake.meta.accepted}
    assert set(meta) == {"Purchase", "Lead"}
    purchase = meta["Purchase"]
    assert purchase["event_id"] == "order-o-1-purchase"
    assert purchase["action_source"] == "website"
    assert purchase["event_source_url"] == "https://shop.test/checkout"
    assert purchase["custom_data"]["value"] == 99.5
    assert purchase["custom_data"]["currency"] == "usd"
    assert purchase["custom_data"]["content_ids"] == ["sku-1", "sku-2"]
    user = purchase["user_data"]
    assert user["em"] == [sha("ana.silva@example.com")]
    assert user["ph"] == [sha("16505551212")]  # Meta: digits only, country code added
    assert user["fn"] == [sha("ana")] and user["ln"] == [sha("silva")]
    assert user["fbc"].startswith("fb.1.") and user["fbc"].endswith(".FbClick.AbC")
    assert user["fbp"] == "fb.1.1700000000000.42"
    assert user["client_user_agent"] == UA and user["client_ip_address"] == "203.0.113.9"
    lead = meta["Lead"]
    assert lead["action_source"] == "system_generated"
    # Conversion Leads fields mark the CRM stage event, not the website checkout (§1.4).
    assert lead["custom_data"] == {"lead_event_source": "HubSpot", "event_source": "crm"}
    assert "lead_event_source" not in purchase["custom_data"]
    assert "event_source" not in purchase["custom_data"]
    assert lead["event_id"].startswith("leadloop-") and lead["event_id"].endswith("-lead_mql")

    google = {e["transactionId"]: e for e in rig.fake.google.accepted}
    assert "o-1" in google and len(google) == 2
    g = google["o-1"]
    assert g["adIdentifiers"]["gclid"] == "GcLiD-1"
    assert {"emailAddress": sha("ana.silva@example.com")} in g["userData"]["userIdentifiers"]
    assert {"phoneNumber": sha("+16505551212")} in g["userData"]["userIdentifiers"]
    assert g["consent"] == {"adUserData": "CONSENT_GRANTED", "adPersonalization": "CONSENT_GRANTED"}
    assert g["conversionValue"] == 99.5 and g["currency"] == "USD"

    tiktok = {e["event"]: e for e in rig.fake.tiktok.accepted}
    assert set(tiktok) == {"CompletePayment", "Lead"}
    assert tiktok["CompletePayment"]["user"]["ttclid"] == "TtClick1"
    assert tiktok["CompletePayment"]["user"]["ttp"] == "ttp-cookie-1"
    assert tiktok["CompletePayment"]["user"]["phone"] == sha("+16505551212")

    # Meta's request carried the token in the query and the appsecret_proof in the body.
    assert rig.fake.meta.requests[0].query["access_token"] == "meta-token"
    assert_no_raw_pii(rig)
    assert set(rig.statuses().values()) == {"delivered"}

    # The same order again (a client retry with a new messageId) is not enqueued twice, and
    # the same stage reached again (down and up) is not forwarded again either.
    h.send(order("o-1"), crm_stage("lead"), crm_stage("MQL"))
    h.settle()
    rig.drain()
    assert len(rig.fake.meta.accepted) == 2 and len(rig.fake.meta.requests) == 1
    assert len(rig.statuses()) == 6


def test_a_national_phone_is_read_in_the_conversions_region_before_the_engines(
    backend_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The identity graph reads `(650) 555-1212` in LEADLOOP_DEFAULT_REGION (GB: +44 650…);
    # that reading was sent, over the section's `default_region: US`. With no region in the
    # playbook, the engine's is still the last resort.
    no_region = PLAYBOOK.replace("  default_region: US\n", "")
    cases = (("u1", PLAYBOOK, "16505551212"), ("u2", no_region, "446505551212"))
    for user, text, expected in cases:  # one database: a person and an order each
        path = tmp_path / "playbook.yaml"
        path.write_text(text)
        with open_rig(backend_url, path, ENV, monkeypatch, default_region="GB") as rig:
            rig.h.send(person(user, email=f"{user}@example.com"), order(f"o-{user}", user))
            rig.h.settle()
            rig.drain()
            (event,) = rig.fake.meta.accepted
            (tiktok,) = rig.fake.tiktok.accepted
        assert event["user_data"]["ph"] == [sha(expected)]
        assert tiktok["user"]["phone"] == sha("+" + expected)


def test_stage_move_conversions_carry_the_lead_creation_time(rig: Rig) -> None:
    # capi.md §1.4: a CRM stage event dated before the lead's creation may be discarded. The
    # profile's first-seen time (a lower bound of the lead's creation) travels with stage moves.
    h = rig.h
    h.send(person(), visit(), order("o-1"), crm_stage("MQL"))
    h.settle()
    states = [json.loads(str(s)) for (s,) in h.sql("SELECT state FROM profiles")]
    first_seen = states[0]["first_seen"]
    rows = h.sql(
        "SELECT idempotency_key, payload FROM outbox JOIN outbox_payloads USING (id) WHERE kind = 'conversion'"
    )
    conversions = {str(k): json.loads(str(p)) for k, p in rows}
    stage = [c for k, c in conversions.items() if k.endswith("-lead_mql")]
    orders = [c for k, c in conversions.items() if "order-o-1" in k]
    assert len(stage) == 3 and len(orders) == 3  # one per destination
    for conversion in stage:
        assert conversion["lead_created_at"] == first_seen <= conversion["event_time"]
    assert all(c.get("lead_created_at") is None for c in orders)
    rig.drain()
    assert set(rig.statuses().values()) == {"delivered"}


def api_summary(h: Harness) -> dict[str, Any]:
    """`GET /api/v1/conversions` as an admin sees it (and refused without a token)."""
    token = h.engine.writer.submit(
        lambda c: workspaces.create_admin_token(c, "default", "t", h.engine.clock.now())
    ).result()
    from leadloop.api.admin import install_error_handlers
    from leadloop.api.conversions import conversions_router

    app = FastAPI()
    install_error_handlers(app)
    app.include_router(conversions_router(h.engine))
    with TestClient(app) as client:
        assert client.get("/api/v1/conversions").status_code == 401
        body = client.get("/api/v1/conversions", headers={"Authorization": f"Bearer {token}"})
    assert body.status_code == 200
    summary: dict[str, Any] = body.json()
    return summary


def test_visibility_api_counts_sent_skipped_and_coverage(rig: Rig) -> None:
    h = rig.h
    h.send(person(), visit(), order("o-1"))
    h.send(person("u2", consent=None), order("o-2", user="u2"))
    h.settle()
    rig.drain()
    meta = api_summary(h)["destinations"]["meta"]
    assert meta["sent"] == 1 and meta["failed"] == 0 and meta["skipped"] == 1
    assert "no advertising consent" in meta["skipped_reasons"][0]["reason"]
    assert meta["coverage"] == {
        "events": 1,
        "email_hash": 1.0,
        "phone_hash": 1.0,
        "click_id": 1.0,
        "browser_id": 1.0,
    }


def test_no_consent_sends_nothing_and_records_why(rig: Rig) -> None:
    h = rig.h
    h.send(person(consent=None), visit(), order("o-1"), crm_stage("MQL"))
    h.send(person("u2", consent=False), order("o-2", user="u2"))
    h.settle()
    rig.drain()
    assert h.sql("SELECT COUNT(*) FROM outbox WHERE kind = 'conversion'") == [(0,)]
    assert all(not p.requests for p in _platforms(rig))
    reasons = h.sql("SELECT destination, reason FROM conversion_log WHERE status = 'skipped'")
    assert len(reasons) == 3 * 3  # (order + stage move) for u1, order for u2, per destination
    assert all("consent" in str(reason) for _, reason in reasons)

    # Consent given on an event's context counts from then on.
    consent: dict[str, Any] = {"consent": {"categoryPreferences": {"advertising": True}}}
    h.send(order("o-3", **consent))
    h.settle()
    rig.drain()
    assert [e["event_id"] for e in rig.fake.meta.accepted] == ["order-o-3-purchase"]


def test_retries_500_429_and_tiktok_http_200_error_each_accepted_once(rig: Rig) -> None:
    h = rig.h
    rig.fake.meta.plan_server_error(500)
    rig.fake.google.plan_rate_limit(retry_after=30)
    rig.fake.tiktok.plan_error_code(40100, "rate limited")
    h.send(person(), visit(), order("o-1"))
    h.settle()
    start = rig.clock.now()
    rig.dispatcher.run_once()
    rows = dict(h.sql("SELECT destination, next_attempt_at FROM outbox WHERE status = 'pending'"))
    assert set(rows) == {"meta", "google", "tiktok"}
    assert rows["google"] >= start + 30  # Retry-After is a floor
    rig.drain()
    for platform in _platforms(rig):
        assert len(platform.accepted) == 1 and len(platform.requests) == 2
    assert set(rig.statuses().values()) == {"delivered"}


def refuse_order(rig: Rig, order_id: str) -> None:
    """From now on the fake Meta refuses, as a whole-batch 400 naming it, any request that
    holds the order `order_id` (one bad event in a batch, capi.md §1.1)."""
    check = rig.fake.meta._check

    def refuse(body: dict[str, Any]) -> list[dict[str, Any]]:
        events = check(body)
        for i, event in enumerate(events):
            if event.get("custom_data", {}).get("order_id") == order_id:
                raise Invalid("Invalid parameter", i)
        return events

    rig.fake.meta._check = refuse  # type: ignore[method-assign]


def test_whole_batch_400_for_one_bad_event_is_bisected(rig: Rig) -> None:
    h = rig.h
    meta = rig.fake.meta
    refuse_order(rig, "bad")
    h.send(person(), visit(), order("o-1"), order("bad"), order("o-3"), order("o-4"))
    h.settle()
    rig.drain()
    accepted = sorted(e["custom_data"]["order_id"] for e in meta.accepted)
    assert accepted == ["o-1", "o-3", "o-4"]
    # Bisection re-sends only the parts that were refused: no platform saw an event twice.
    assert [p.duplicates for p in _platforms(rig)] == [[], [], []]
    assert len(rig.fake.google.accepted) == len(rig.fake.tiktok.accepted) == 4
    statuses = rig.statuses()
    assert statuses["meta:order-bad-purchase"] == "dead"
    assert statuses["google:order-bad-purchase"] == "delivered"
    error = h.sql("SELECT last_error FROM outbox WHERE idempotency_key = 'meta:order-bad-purchase'")
    assert "Invalid parameter" in str(error[0][0])

    # The dead letter is re-driven with the same event id; Meta refuses it again.
    from leadloop.conversions import queries

    count = h.engine.writer.submit(
        lambda c: queries.replay_dead(c, "default", rig.clock.now(), "meta")
    ).result()
    assert count == 1
    rig.drain()
    assert rig.statuses()["meta:order-bad-purchase"] == "dead"
    assert len(meta.accepted) == 3 and meta.duplicates == []


def test_crash_between_send_and_mark_resends_the_same_id(rig: Rig) -> None:
    h = rig.h
    h.send(person(), visit(), order("o-1"))
    h.settle()
    now = rig.clock.now()
    claimed = h.engine.writer.submit(
        lambda c: outbox_service.claim_due(c, now, 100, ("conversion",))
    ).result()
    outcomes = rig.sender.send_batch(claimed, now)  # sent, then "crash": nothing recorded
    assert {o.status for o in outcomes} == {"delivered"}
    assert len(rig.fake.meta.accepted) == 1
    rig.clock.advance(outbox_service.LEASE_SECONDS + 1)
    rig.drain()
    for platform in _platforms(rig):
        assert len(platform.accepted) == 1
    assert len(rig.fake.meta.duplicates) == 1 and len(rig.fake.tiktok.duplicates) == 1
    assert rig.fake.meta.duplicates[0]["event_id"] == rig.fake.meta.accepted[0]["event_id"]
    assert set(rig.statuses().values()) == {"delivered"}


def test_too_old_at_send_time_after_a_failed_attempt_is_a_dead_letter(rig: Rig) -> None:
    # It never got through: a failure to see among dead letters, not a skip by design.
    h = rig.h
    rig.fake.meta.plan_server_error(503)
    h.send(person(), visit(), order("o-1"))
    h.settle()
    rig.dispatcher.run_once()
    rig.clock.advance(8 * 86400)  # the retry comes after Meta's 7-day window
    rig.drain()
    statuses = rig.statuses()
    assert statuses["meta:order-o-1-purchase"] == "dead"
    reason = h.sql(
        "SELECT last_error FROM outbox WHERE idempotency_key = 'meta:order-o-1-purchase'"
    )
    assert "older than 7 days; not delivered in 1 attempt" in str(reason[0][0])
    assert rig.fake.meta.accepted == []


def test_a_meta_event_dated_ahead_waits_until_it_is_due(rig: Rig) -> None:
    # A CRM milestone stamped an hour ahead (clock skew) was skipped for good for Meta, which
    # refuses an event_time more than a minute ahead: it waits in the outbox until its time.
    # Eight days ahead is a wrong date, not skew: skipped, with the reason.
    h = rig.h
    now = rig.clock.now()
    soon, late = order("o-1"), order("o-2")
    soon["timestamp"] = dt.datetime.fromtimestamp(now + 3600, dt.UTC).isoformat()
    late["timestamp"] = dt.datetime.fromtimestamp(now + 8 * 86400, dt.UTC).isoformat()
    h.send(person(), visit(), soon, late)
    h.settle()
    reasons = h.sql(
        "SELECT reason FROM conversion_log WHERE destination = 'meta' AND status = 'skipped'"
    )
    assert reasons == [("meta: event_time is more than 7 days in the future",)]
    due = "SELECT next_attempt_at FROM outbox WHERE idempotency_key = 'meta:order-o-1-purchase'"
    assert h.sql(due) == [(now + 3600,)]  # queued for its own time, not claimed before it
    rig.dispatcher.run_once()
    assert rig.statuses()["meta:order-o-1-purchase"] == "pending"
    assert rig.fake.meta.requests == []
    rig.drain()
    assert rig.clock.now() >= now + 3600
    assert [e["event_id"] for e in rig.fake.meta.accepted] == ["order-o-1-purchase"]
    assert rig.statuses()["meta:order-o-1-purchase"] == "delivered"


def test_the_engines_own_dispatcher_delivers_conversions(rig: Rig) -> None:
    from leadloop.testing import eventually

    h = rig.h
    h.engine.dispatcher.senders["conversion"] = rig.sender
    h.send(person(), visit(), order("o-1"))
    h.settle()
    h.engine.dispatcher.wake()
    eventually(lambda: set(rig.statuses().values()) == {"delivered"}, timeout=20)
    assert len(rig.fake.meta.accepted) == 1


def test_a_disabled_destination_is_counted_per_reason_not_logged_per_conversion(
    backend_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # TikTok's settings are missing, so the destination is disabled: its conversions add to
    # one counter per reason (the API shows them as skipped) instead of a log row each.
    env = {k: v for k, v in ENV.items() if not k.startswith("LEADLOOP_TIKTOK_")}
    for name in ENV.keys() - env.keys():
        monkeypatch.delenv(name, raising=False)
    path = tmp_path / "playbook.yaml"
    path.write_text(PLAYBOOK)
    with open_rig(backend_url, path, env, monkeypatch, meta_app_secret="app-secret") as rig:
        h = rig.h
        h.send(person(), visit(), order("o-1"), crm_stage("MQL"))
        h.settle()
        h.send(order("o-2"))  # a later batch adds to the same counter
        h.settle()
        rig.drain()
        summary = h.engine.read_sync(lambda c: queries.summary(c, "default"))
    assert not rig.fake.tiktok.requests
    assert len(rig.fake.meta.accepted) == 3 and len(rig.fake.google.accepted) == 3
    reason = "destination tiktok is disabled: access_token, pixel_code not set"
    assert h.sql("SELECT destination, reason, count FROM conversion_skips") == [
        ("tiktok", reason, 3)
    ]
    assert h.sql("SELECT COUNT(*) FROM conversion_log WHERE destination = 'tiktok'") == [(0,)]
    assert h.sql("SELECT COUNT(*) FROM conversion_log WHERE destination = 'meta'") == [(3,)]
    tiktok = summary["destinations"]["tiktok"]
    assert tiktok["sent"] == 0 and tiktok["skipped"] == 3
    assert tiktok["skipped_reasons"] == [{"reason": reason, "count": 3}]
    assert summary["destinations"]["meta"]["sent"] == 3


@pytest.mark.parametrize("settle_between", [False, True], ids=["one_batch", "two_batches"])
def test_a_merged_visitors_click_ids_reach_the_contacts_conversions(
    rig: Rig, settle_between: bool
) -> None:
    """The ad click lands on an anonymous web profile; the purchase is the CRM contact's. Once
    the visitor logs in as the contact (the contact's profile survives the merge), the order
    carries the click id and cookies the visitor brought."""
    h = rig.h
    click = {k: v for k, v in visit().items() if k != "userId"} | {"anonymousId": "web-9"}
    h.send(person("u9"), click)
    if settle_between:
        h.settle()
    h.send({"type": "identify", "userId": "u9", "anonymousId": "web-9"})
    h.send(order("o-9", "u9"))
    h.settle()
    rig.drain()
    web, crm = h.profile("anonymous_id", "web-9"), h.profile("user_id", "u9")
    assert web is not None and crm is not None and web["id"] == crm["id"]
    assert h.sql("SELECT COUNT(*) FROM profiles WHERE merged_into = ?", crm["id"]) == [(1,)]
    (purchase,) = [e for e in rig.fake.meta.accepted if e["event_name"] == "Purchase"]
    user = purchase["user_data"]
    assert user["fbc"].endswith(".FbClick.AbC") and user["fbp"] == "fb.1.1700000000000.42"
    (google,) = [e for e in rig.fake.google.accepted if e.get("transactionId") == "o-9"]
    assert google["adIdentifiers"]["gclid"] == "GcLiD-1"
    (tiktok,) = [e for e in rig.fake.tiktok.accepted if e["event"] == "CompletePayment"]
    assert tiktok["user"]["ttclid"] == "TtClick1"
    assert h.sql("SELECT profile_id FROM conversion_keys") == [(crm["id"],)]


def test_an_order_id_of_kilobytes_does_not_stall_the_processor(rig: Rig) -> None:
    # 16,000 characters fit in a 32 KB message; as part of the event id they were more than a
    # PostgreSQL index entry holds, so the processor's batch failed on every retry and the log
    # stopped for every workspace. Such an id is shortened to a digest of it.
    h = rig.h
    huge = "o" + "".join(f"{i:x}" for i in range(4000))
    h.send(person(), order(huge), order("o-2"))
    h.settle()
    rows = h.sql("SELECT idempotency_key FROM outbox WHERE kind = 'conversion'")
    keys = sorted(str(r[0]) for r in rows)
    assert len(keys) == 6  # both orders, for each of the three platforms
    assert max(len(k) for k in keys) <= 300
    assert "meta:order-o-2-purchase" in keys


def test_an_order_id_that_holds_an_email_is_not_sent_raw(rig: Rig) -> None:
    """Some shops number orders by the buyer's email (`ana@example.com-7`): it went out in clear
    as Meta's and TikTok's `order_id` and Google's `transactionId`, which Google refuses
    (ORDER_ID_CONTAINS_PII) and the others keep. Such an id is sent as a digest of itself, the
    same on every retry and replay, so dedup still holds."""
    h = rig.h
    h.send(person(), visit(), order("buyer.one@example.com-7"))
    h.settle()
    rig.drain()
    assert set(rig.statuses().values()) == {"delivered"}
    sent = [json.dumps(r.body) for p in _platforms(rig) for r in p.requests]
    stored = [
        str(p) for (p,) in h.sql("SELECT payload FROM outbox JOIN outbox_payloads USING (id)")
    ]
    assert sent and all("buyer.one@example.com" not in text for text in sent + stored)
    digest = sha("buyer.one@example.com-7")[:32]
    [purchase] = rig.fake.meta.accepted
    assert purchase["custom_data"]["order_id"] == digest
    assert [e["transactionId"] for e in rig.fake.google.accepted] == [digest]
    [payment] = rig.fake.tiktok.accepted
    assert payment["properties"]["order_id"] == digest
