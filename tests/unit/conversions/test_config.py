"""The playbook's `conversions` section: parsed values, disabled destinations, located errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from leadloop.conversions.config import (
    ConsentConfig,
    ConversionsConfig,
    conversions_config,
    parse_conversions,
)
from leadloop.conversions.model import GoogleDestination, MetaDestination
from leadloop.errors import PlaybookError
from leadloop.playbook.load import parse_playbook

BASE = """
version: 1
conversions:
  default_region: gb
  destinations:
    - id: meta
      type: meta
      pixel_id: ${PIXEL:-}
      access_token: ${TOKEN:-}
      base_url: ${BASE:-}
    - id: google
      type: google
      access_token: g-token
      destination: customers/123-456-7890/conversionActions/987
  mappings:
    - id: purchase
      track: Order Completed
      where:
        - { field: properties.revenue, op: gt, value: 0 }
      event: Purchase
      event_names: { tiktok: CompletePayment }
      value: properties.revenue
      currency: properties.currency
      default_currency: eur
      contents: properties.products
    - id: mql
      stage: MQL
      event: Lead
      destinations: [meta]
      identifiers: [email, phone, click_ids]
"""


def load(text: str, **env: str) -> object:
    return parse_playbook(text, "pb.yaml", env)


def section(text: str, **env: str):  # type: ignore[no-untyped-def]
    playbook = parse_playbook(text, "pb.yaml", env)
    return parse_conversions(playbook.sections.get("conversions"))


def test_full_section_parses() -> None:
    config = section(BASE, PIXEL="123", TOKEN="tok", BASE="http://127.0.0.1:9/")
    meta = config.destination("meta")
    assert meta is not None and isinstance(meta.destination, MetaDestination)
    assert meta.destination.pixel_id == "123" and meta.access_token == "tok"
    assert meta.destination.base_url == "http://127.0.0.1:9"
    assert meta.destination.default_region == "GB"
    google = config.destination("google")
    assert google is not None and isinstance(google.destination, GoogleDestination)
    assert google.destination.operating_account_id == "1234567890"
    assert google.destination.conversion_action_id == "987"
    purchase, mql = config.mappings
    assert purchase.track == ("Order Completed",) and len(purchase.where) == 1
    assert (
        purchase.name_for("tiktok") == "CompletePayment" and purchase.name_for("meta") == "Purchase"
    )
    assert purchase.default_currency == "EUR" and purchase.destinations == ()
    assert mql.stage == "MQL" and mql.destinations == ("meta",)
    assert mql.identifiers == frozenset({"email", "phone", "click_ids"})
    assert config.warnings == ()
    assert "tok" not in repr(meta)


def test_destination_with_missing_settings_is_disabled_with_a_warning() -> None:
    config = section(BASE)
    meta = config.destination("meta")
    assert meta is not None and not meta.enabled
    assert meta.disabled_reason == "access_token, pixel_id not set"
    assert len(config.warnings) == 1
    warning = str(config.warnings[0])
    assert warning.startswith("pb.yaml:6: conversions.destinations[0]")
    assert "disabled" in warning


def test_a_meta_purchase_mapping_with_a_value_and_no_currency_is_warned_about() -> None:
    """Each of its events would be skipped for Meta (it requires a currency with a Purchase's
    value): said when the playbook is applied, not found later in the conversion log."""
    bare = BASE.replace("      currency: properties.currency\n", "").replace(
        "      default_currency: eur\n", ""
    )
    config = section(bare, PIXEL="123", TOKEN="tok")
    assert [str(w) for w in config.warnings] == [
        "pb.yaml:16: conversions.mappings[0]: mapping 'purchase' sends Meta a Purchase with a "
        "value and no currency (neither `currency` nor `default_currency`): Meta requires one, "
        "so its events are skipped for Meta"
    ]
    for kept in ("      currency: properties.currency\n", "      default_currency: eur\n"):
        one = BASE.replace(kept, "")
        assert section(one, PIXEL="123", TOKEN="tok").warnings == ()
    # Sent only to Google, which takes a value without a currency.
    google_only = bare.replace("      contents:", "      destinations: [google]\n      contents:")
    assert section(google_only, PIXEL="123", TOKEN="tok").warnings == ()


def test_empty_list_section_means_nothing_configured() -> None:
    assert section("version: 1\nconversions: []\n").mappings == ()
    assert conversions_config(None).destinations == ()


@pytest.mark.parametrize(
    ("text", "line", "field", "message"),
    [
        (
            "version: 1\nconversions:\n  mappings:\n    - id: x\n      event: Lead\n",
            4,
            "conversions.mappings[0].track",
            "exactly one of",
        ),
        (
            "version: 1\nconversions:\n  destinations:\n    - id: x\n      type: snap\n",
            5,
            "conversions.destinations[0].type",
            "expected one of",
        ),
        (
            "version: 1\nconversions:\n  mappings:\n    - id: x\n      stage: MQL\n"
            "      event: Lead\n      destinations: [meta]\n",
            7,
            "conversions.mappings[0].destinations",
            "no destination 'meta'",
        ),
        (
            "version: 1\nconversions:\n  bogus: 1\n",
            3,
            "conversions.bogus",
            "unknown key",
        ),
        (
            "version: 1\nconversions:\n  mappings:\n    - id: x\n      track: A\n      event: B\n"
            "      where:\n        - { field: properties.a, op: matches, value: '(' }\n",
            8,
            "conversions.mappings[0].where[0].value",
            "bad regex",
        ),
        (
            "version: 1\nconversions:\n  destinations:\n    - id: g\n      type: google\n"
            "      destination: nope\n",
            6,
            "conversions.destinations[0].destination",
            "operating account",
        ),
    ],
)
def test_errors_name_file_line_and_field(text: str, line: int, field: str, message: str) -> None:
    with pytest.raises(PlaybookError) as caught:
        section(text)
    error = caught.value
    assert (error.file, error.line, error.field) == ("pb.yaml", line, field)
    assert message in str(error)


def test_invalid_section_is_refused_when_the_playbook_is_loaded() -> None:
    # The loader validates the conversions section, so a broken one never goes live.
    with pytest.raises(PlaybookError) as caught:
        parse_playbook("version: 1\nconversions:\n  bogus: 1\n", "pb.yaml", {})
    assert caught.value.file == "pb.yaml" and caught.value.line == 3
    assert "bogus" in caught.value.field
    assert conversions_config(None).mappings == ()


EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "playbook.yaml"


def example_section(env: dict[str, str]) -> ConversionsConfig:
    playbook = parse_playbook(EXAMPLE.read_text(encoding="utf-8"), str(EXAMPLE), env)
    return parse_conversions(playbook.sections.get("conversions"))


def test_the_example_playbook_without_environment_disables_every_destination() -> None:
    # `make run` on a laptop without ad accounts: it loads, and says why nothing is sent.
    config = example_section({})
    assert [(d.id, d.enabled) for d in config.destinations] == [
        ("meta", False),
        ("google", False),
        ("google_ads", False),
        ("tiktok", False),
    ]
    reasons = {d.id: d.disabled_reason for d in config.destinations}
    assert reasons["meta"] == "access_token, pixel_id not set"
    assert reasons["tiktok"] == "access_token, pixel_code not set"
    assert (
        reasons["google_ads"]
        == "access_token (or service_account_file), customer_id, conversion_action, "
        "developer_token not set"
    )
    google = reasons["google"] or ""
    assert google.endswith("operating_account, conversion_action not set")
    warnings = [str(w) for w in config.warnings]
    assert len(warnings) == 4
    for warning, dest in zip(warnings, ("meta", "google", "google_ads", "tiktok"), strict=True):
        assert f"conversion destination {dest!r} is disabled" in warning


REAL_HOSTS = {
    "meta": "https://graph.facebook.com",
    "google": "https://datamanager.googleapis.com",
    "google_ads": "https://googleads.googleapis.com",
    "tiktok": "https://business-api.tiktok.com",
}


def hosts(config: ConversionsConfig) -> dict[str, str]:
    return {d.id: d.destination.base_url for d in config.destinations if d.destination is not None}


def test_a_destination_without_base_url_goes_to_the_platforms_real_host() -> None:
    text = """
version: 1
conversions:
  destinations:
    - { id: meta, type: meta, pixel_id: "1", access_token: m }
    - { id: google, type: google, destination: 1234567890/987654, access_token: g }
    - id: google_ads
      type: google_ads
      customer_id: 123-456-7890
      conversion_action: "555"
      developer_token: d
      access_token: a
    - { id: tiktok, type: tiktok, pixel_code: TT, access_token: t }
"""
    assert hosts(section(text)) == REAL_HOSTS


def test_the_example_playbook_defaults_to_the_platforms_real_hosts() -> None:
    # Credentials alone turn each destination on, pointed at the platform itself: only the
    # `*_API_BASE` variables move it (tests point them at the local fake).
    config = example_section(
        {
            "LEADLOOP_META_PIXEL_ID": "123",
            "LEADLOOP_META_ACCESS_TOKEN": "m",
            "LEADLOOP_GOOGLE_ACCESS_TOKEN": "g",
            "LEADLOOP_GOOGLE_DESTINATION": "1234567890/987654",
            "LEADLOOP_GOOGLE_ADS_CUSTOMER_ID": "123-456-7890",
            "LEADLOOP_GOOGLE_ADS_CONVERSION_ACTION": "555",
            "LEADLOOP_GOOGLE_ADS_DEVELOPER_TOKEN": "d",
            "LEADLOOP_GOOGLE_ADS_ACCESS_TOKEN": "a",
            "LEADLOOP_TIKTOK_PIXEL_CODE": "TT",
            "LEADLOOP_TIKTOK_ACCESS_TOKEN": "t",
        }
    )
    assert config.warnings == ()
    assert hosts(config) == REAL_HOSTS
    # And the example forwards what the issue asks: the checkout and the MQL stage.
    purchase, mql = config.mappings
    assert (purchase.track, purchase.event_name) == (("Order Completed",), "Purchase")
    assert (mql.stage, mql.event_name) == ("MQL", "Lead")


def test_a_consent_block_replaces_the_defaults() -> None:
    block = (
        "  consent:\n    traits: [marketing_ok]\n    context: [ads.allowed]\n    required: false\n"
    )
    config = section(BASE.replace("  default_region: gb\n", "  default_region: gb\n" + block))
    assert config.consent == ConsentConfig(
        traits=("marketing_ok",), context=("ads.allowed",), required=False
    )
    assert section(BASE).consent == ConsentConfig(
        traits=("ad_consent",), context=("categoryPreferences.advertising",), required=True
    )
