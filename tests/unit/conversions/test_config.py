"""The playbook's `conversions` section: parsed values, disabled destinations, located errors."""

from __future__ import annotations

import pytest

from leadloop.conversions.config import conversions_config, parse_conversions
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
