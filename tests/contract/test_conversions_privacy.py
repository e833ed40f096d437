"""Consent and privacy flags end to end on both backends, from the playbook's `conversions`
section through the processor and the outbox to the local fakes: what `consent:` lets through,
what Google's consent fields say (capi.md §6.4), and Meta LDU / TikTok `limited_data_use` from
the profile (the harness and helpers are those of `test_conversions_pipeline`)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.contract.test_conversions_pipeline import (
    ENV,
    PLAYBOOK,
    Rig,
    api_summary,
    open_rig,
    order,
    someone,
    visit,
)

SECTION = "conversions:\n  default_region: US\n"
GOOGLE_ADS = """    - id: google_ads
      type: google_ads
      customer_id: ${LEADLOOP_GOOGLE_ADS_CUSTOMER_ID:-}
      conversion_action: ${LEADLOOP_GOOGLE_ADS_CONVERSION_ACTION:-}
      developer_token: ${LEADLOOP_GOOGLE_ADS_DEVELOPER_TOKEN:-}
      access_token: ${LEADLOOP_GOOGLE_ADS_ACCESS_TOKEN:-}
      base_url: ${LEADLOOP_GOOGLE_ADS_API_BASE:-https://googleads.googleapis.com}
"""
GOOGLE_ADS_ENV = {
    "LEADLOOP_GOOGLE_ADS_CUSTOMER_ID": "123-456-7890",
    "LEADLOOP_GOOGLE_ADS_CONVERSION_ACTION": "987654",
    "LEADLOOP_GOOGLE_ADS_DEVELOPER_TOKEN": "developer-token",
    "LEADLOOP_GOOGLE_ADS_ACCESS_TOKEN": "google-ads-token",
    "LEADLOOP_GOOGLE_ADS_API_BASE": "{fake}",
}


def playbook(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "playbook.yaml"
    path.write_text(text)
    return path


def skipped(rig: Rig) -> dict[tuple[str, str], str]:
    rows = rig.h.sql(
        "SELECT destination, event_id, reason FROM conversion_log WHERE status = 'skipped'"
    )
    return {(str(d), str(e)): str(r) for d, e, r in rows}


def test_no_consent_signal_with_required_false_leaves_google_consent_unset(
    backend_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # `required: false` forwards a profile that gave no consent signal at all, and Google's
    # consent fields then say nothing: unset is how Data Manager says "unknown" (it has no such
    # value), and Google treats it as not consented for EEA users (capi.md §6.4). They say
    # GRANTED only for a real signal; an explicit denial is not forwarded anywhere.
    text = PLAYBOOK.replace(SECTION, SECTION + "  consent:\n    required: false\n").replace(
        "    - id: tiktok\n", GOOGLE_ADS + "    - id: tiktok\n"
    )
    env = {**ENV, **GOOGLE_ADS_ENV}
    with open_rig(backend_url, playbook(tmp_path, text), env, monkeypatch) as rig:
        h = rig.h
        h.send(someone("u1", consent=None), visit("u1"), order("o-1", user="u1"))
        h.send(someone("u2", consent=False), visit("u2"), order("o-2", user="u2"))
        h.send(someone("u3"), visit("u3"), order("o-3", user="u3"))
        h.settle()
        rig.drain()
        reasons = skipped(rig)

    google = {e["transactionId"]: e for e in rig.fake.google.accepted}
    assert sorted(google) == ["o-1", "o-3"]
    assert "consent" not in google["o-1"]
    assert google["o-3"]["consent"] == {
        "adUserData": "CONSENT_GRANTED",
        "adPersonalization": "CONSENT_GRANTED",
    }
    ads = {c["orderId"]: c for c in rig.fake.google_ads.accepted}
    assert sorted(ads) == ["o-1", "o-3"]
    assert "consent" not in ads["o-1"]
    assert ads["o-3"]["consent"] == {"adUserData": "GRANTED"}
    for platform in (rig.fake.meta, rig.fake.tiktok):
        ids = sorted(e["event_id"] for e in platform.accepted)
        assert ids == ["order-o-1-purchase", "order-o-3-purchase"]
    assert reasons == {
        (dest, "order-o-2-purchase"): "advertising consent withdrawn"
        for dest in ("meta", "google", "google_ads", "tiktok")
    }


def test_the_consent_block_decides_what_is_forwarded(
    backend_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Custom traits and context paths replace the defaults: `ad_consent` and
    # `categoryPreferences.advertising` no longer count, `marketing_ok` and `ads.allowed` do.
    block = (
        "  consent:\n    traits: [marketing_ok]\n    context: [ads.allowed]\n    required: true\n"
    )
    text = PLAYBOOK.replace(SECTION, SECTION + block)
    with open_rig(backend_url, playbook(tmp_path, text), ENV, monkeypatch) as rig:
        h = rig.h
        h.send(someone("u1"), order("o-1", user="u1"))  # ad_consent: true, not configured
        h.send(someone("u2", consent=None, marketing_ok=True), order("o-2", user="u2"))
        allowed = {"consent": {"ads": {"allowed": True}}}
        h.send(someone("u3", consent=None), order("o-3", user="u3", **allowed))
        default = {"consent": {"categoryPreferences": {"advertising": True}}}
        h.send(someone("u4", consent=None), order("o-4", user="u4", **default))
        h.settle()
        rig.drain()
        reasons = skipped(rig)

    for platform in (rig.fake.meta, rig.fake.tiktok):
        ids = sorted(e["event_id"] for e in platform.accepted)
        assert ids == ["order-o-2-purchase", "order-o-3-purchase"]
    assert sorted(e["transactionId"] for e in rig.fake.google.accepted) == ["o-2", "o-3"]
    why = "no advertising consent (trait marketing_ok or context.consent.ads.allowed is not true)"
    assert reasons == {
        (dest, f"order-{o}-purchase"): why
        for dest in ("meta", "google", "tiktok")
        for o in ("o-1", "o-4")
    }


def test_limited_data_use_from_the_profile_reaches_meta_and_tiktok(
    backend_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # capi.md §6.4: an LDU profile gets Meta `["LDU"]` with the configured country and state
    # (1/1000: California) and TikTok `limited_data_use: true`; others get `[]` and false.
    text = PLAYBOOK.replace(
        "      app_secret: app-secret\n",
        "      app_secret: app-secret\n      ldu_country: 1\n      ldu_state: 1000\n",
    )
    with open_rig(
        backend_url, playbook(tmp_path, text), ENV, monkeypatch, meta_app_secret="app-secret"
    ) as rig:
        h = rig.h
        h.send(someone("u1", limited_data_use=True), visit("u1"), order("o-1", user="u1"))
        h.send(someone("u2"), visit("u2"), order("o-2", user="u2"))
        # A CRM's flag arrives as text (HubSpot's property values are strings): read like a
        # consent trait. Before, only the JSON `true` counted, so `"true"` went out without LDU.
        h.send(someone("u3", limited_data_use="true"), visit("u3"), order("o-3", user="u3"))
        h.send(someone("u4", limited_data_use="false"), visit("u4"), order("o-4", user="u4"))
        h.settle()
        rig.drain()

    meta = {e["custom_data"]["order_id"]: e for e in rig.fake.meta.accepted}
    assert meta["o-3"]["data_processing_options"] == ["LDU"]
    assert meta["o-3"]["data_processing_options_state"] == 1000
    assert meta["o-4"]["data_processing_options"] == []
    assert meta["o-1"]["data_processing_options"] == ["LDU"]
    assert meta["o-1"]["data_processing_options_country"] == 1
    assert meta["o-1"]["data_processing_options_state"] == 1000
    assert meta["o-2"]["data_processing_options"] == []
    assert "data_processing_options_country" not in meta["o-2"]
    assert "data_processing_options_state" not in meta["o-2"]
    tiktok = {e["properties"]["order_id"]: e for e in rig.fake.tiktok.accepted}
    assert tiktok["o-1"]["limited_data_use"] is True
    assert tiktok["o-2"]["limited_data_use"] is False
    assert tiktok["o-3"]["limited_data_use"] is True
    assert tiktok["o-4"]["limited_data_use"] is False


def test_withdrawn_consent_stops_the_conversions_still_waiting(
    backend_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Consent is checked when a conversion is queued; one waiting for a retry (the platform
    was down) went out after the person withdrew it. Now the withdrawal skips it, and what the
    same batch queued before the withdrawal is never queued; other people's rows are left."""
    with open_rig(backend_url, playbook(tmp_path, PLAYBOOK), ENV, monkeypatch) as rig:
        h = rig.h
        rig.fake.meta.plan_server_error(500)
        h.send(*(m for u in ("u1", "u3", "u4") for m in (someone(u), order(f"o-{u[1]}", user=u))))
        h.settle()
        rig.dispatcher.run_once()  # google and tiktok take them; meta's request fails
        assert meta_statuses(rig) == {"o-1": "pending", "o-3": "pending", "o-4": "pending"}

        rig.clock.advance(1)  # a later signal wins over the trait set with the order
        h.send(someone("u1", consent=False))  # the trait, from a CRM or a preference centre
        denial = {"consent": {"categoryPreferences": {"advertising": False}}}
        h.send({**visit("u3"), "context": denial})  # a consent banner's answer on an event
        h.send(someone("u2"), order("o-2", user="u2"), someone("u2", consent=False))
        h.settle()
        assert meta_statuses(rig) == {"o-1": "skipped", "o-3": "skipped", "o-4": "pending"}
        why = h.sql("SELECT DISTINCT last_error FROM outbox WHERE status = 'skipped'")
        assert why == [("advertising consent withdrawn",)]
        assert not [k for (k,) in h.sql("SELECT idempotency_key FROM outbox") if "o-2" in str(k)]
        assert {key: r for key, r in skipped(rig).items() if "o-2" in key[1]} == {
            (dest, "order-o-2-purchase"): "advertising consent withdrawn"
            for dest in ("meta", "google", "tiktok")
        }
        rig.drain()
        assert [e["event_id"] for e in rig.fake.meta.accepted] == ["order-o-4-purchase"]
        reasons = api_summary(h)["destinations"]["meta"]["skipped_reasons"]
        assert reasons == [{"reason": "advertising consent withdrawn", "count": 3}]


def meta_statuses(rig: Rig) -> dict[str, str]:
    rows = rig.h.sql("SELECT idempotency_key, status FROM outbox WHERE destination = 'meta'")
    return {str(k).removeprefix("meta:order-").removesuffix("-purchase"): str(s) for k, s in rows}


def test_withdrawn_consent_also_stops_dead_conversions_from_being_replayed(
    backend_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A dead letter is waiting too: `leadloop conversions replay` sends it again. The
    withdrawal skipped only pending rows, so a replay after it sent the person's hashed email
    and phone to the platform they had just said no to."""
    from leadloop.conversions import queries

    with open_rig(backend_url, playbook(tmp_path, PLAYBOOK), ENV, monkeypatch) as rig:
        h = rig.h
        rig.fake.meta.plan_graph_error(400, 190)  # a revoked token: dead at once
        h.send(someone("u1"), order("o-1", user="u1"))
        h.settle()
        rig.dispatcher.run_once()
        assert meta_statuses(rig) == {"o-1": "dead"}

        rig.clock.advance(1)
        h.send(someone("u1", consent=False))
        h.settle()
        assert meta_statuses(rig) == {"o-1": "skipped"}
        count = h.engine.writer.submit(
            lambda c: queries.replay_dead(c, "default", rig.clock.now(), "meta")
        ).result()
        assert count == 0
        rig.drain()
        assert rig.fake.meta.accepted == []
