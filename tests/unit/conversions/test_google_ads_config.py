"""A `type: google_ads` destination in the playbook: parsed values, `${ENV}` settings, disabled
with a warning when a setting is empty, located errors for malformed ids."""

from __future__ import annotations

from pathlib import Path

import pytest

from leadloop.conversions.config import ConversionsConfig, parse_conversions
from leadloop.conversions.google_ads import conversion_action_resource
from leadloop.conversions.model import GoogleAdsDestination
from leadloop.errors import PlaybookError
from leadloop.playbook.load import parse_playbook

ENV_VARS = (
    "LEADLOOP_GOOGLE_ADS_CUSTOMER_ID",
    "LEADLOOP_GOOGLE_ADS_CONVERSION_ACTION",
    "LEADLOOP_GOOGLE_ADS_DEVELOPER_TOKEN",
    "LEADLOOP_GOOGLE_ADS_ACCESS_TOKEN",
    "LEADLOOP_GOOGLE_ADS_LOGIN_CUSTOMER_ID",
    "LEADLOOP_GOOGLE_ADS_API_BASE",
)
FROM_ENV = """
version: 1
conversions:
  destinations:
    - id: google_ads
      type: google_ads
      customer_id: ${LEADLOOP_GOOGLE_ADS_CUSTOMER_ID:-}
      conversion_action: ${LEADLOOP_GOOGLE_ADS_CONVERSION_ACTION:-}
      developer_token: ${LEADLOOP_GOOGLE_ADS_DEVELOPER_TOKEN:-}
      access_token: ${LEADLOOP_GOOGLE_ADS_ACCESS_TOKEN:-}
      login_customer_id: ${LEADLOOP_GOOGLE_ADS_LOGIN_CUSTOMER_ID:-}
      base_url: ${LEADLOOP_GOOGLE_ADS_API_BASE:-https://googleads.googleapis.com}
"""
EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "playbook.yaml"


def section(text: str, **env: str) -> ConversionsConfig:
    playbook = parse_playbook(text, "pb.yaml", env)
    return parse_conversions(playbook.sections.get("conversions"))


def one(**keys: str) -> str:
    lines = "".join(f"      {key}: {value}\n" for key, value in keys.items())
    return (
        "version: 1\nconversions:\n  destinations:\n    - id: ads\n      type: google_ads\n" + lines
    )


def test_settings_from_the_environment() -> None:
    config = section(
        FROM_ENV,
        LEADLOOP_GOOGLE_ADS_CUSTOMER_ID="123-456-7890",
        LEADLOOP_GOOGLE_ADS_CONVERSION_ACTION="987654",
        LEADLOOP_GOOGLE_ADS_DEVELOPER_TOKEN="dev-token",
        LEADLOOP_GOOGLE_ADS_ACCESS_TOKEN="ya29.token",
        LEADLOOP_GOOGLE_ADS_LOGIN_CUSTOMER_ID="111-222-3333",
        LEADLOOP_GOOGLE_ADS_API_BASE="http://127.0.0.1:9/",
    )
    dest = config.destination("google_ads")
    assert dest is not None and dest.enabled and dest.platform == "google_ads"
    target = dest.destination
    assert isinstance(target, GoogleAdsDestination)
    assert target.customer_id == "1234567890" and target.conversion_action_id == "987654"
    assert target.login_customer_id == "1112223333"
    assert target.base_url == "http://127.0.0.1:9" and target.api_version == "v26"
    assert dest.access_token == "ya29.token" and dest.developer_token == "dev-token"
    assert "dev-token" not in repr(dest) and "ya29" not in repr(dest)
    assert config.warnings == ()


def test_a_resource_name_gives_the_action_and_its_owner() -> None:
    config = section(
        one(
            customer_id="1234567890",
            conversion_action="customers/999-888-7777/conversionActions/42",
            developer_token="d",
            access_token="t",
        )
    )
    dest = config.destination("ads")
    assert dest is not None and isinstance(dest.destination, GoogleAdsDestination)
    assert dest.destination.conversion_action_id == "42"
    resource = conversion_action_resource(dest.destination)
    assert resource == "customers/9998887777/conversionActions/42"


def test_unset_environment_disables_it_with_a_warning_naming_what_is_missing() -> None:
    config = section(FROM_ENV)
    dest = config.destination("google_ads")
    assert dest is not None and not dest.enabled
    reason = (
        "access_token (or service_account_file), customer_id, conversion_action, "
        "developer_token not set"
    )
    assert dest.disabled_reason == reason
    (warning,) = config.warnings
    assert str(warning).startswith("pb.yaml:5: conversions.destinations[0]")
    assert "'google_ads' is disabled" in str(warning) and "customer_id" in str(warning)


def test_missing_customer_id_alone_disables_it() -> None:
    config = section(one(conversion_action="42", developer_token="d", access_token="t"))
    dest = config.destination("ads")
    assert dest is not None and dest.disabled_reason == "customer_id not set"
    assert "customer_id not set" in str(config.warnings[0])


@pytest.mark.parametrize(
    ("keys", "field", "message"),
    [
        (
            {"conversion_action": "customers/123/conversion/42"},
            "conversion_action",
            "customers/<customer id>/conversionActions/<id>",
        ),
        ({"conversion_action": "purchase"}, "conversion_action", "conversion action id"),
        ({"customer_id": "12345"}, "customer_id", "10-digit Google Ads customer id"),
        ({"customer_id": "abc-def-ghij"}, "customer_id", "123-456-7890"),
        ({"login_customer_id": "x"}, "login_customer_id", "manager account"),
        ({"api_version": "'26'"}, "api_version", "v26"),
        ({"base_url": "googleads.googleapis.com"}, "base_url", "http:// or https://"),
    ],
)
def test_malformed_settings_are_errors_at_file_line_field(
    keys: dict[str, str], field: str, message: str
) -> None:
    values = {"customer_id": "1234567890", "conversion_action": "42", **keys}
    with pytest.raises(PlaybookError) as caught:
        section(one(**values))
    error = caught.value
    assert (error.file, error.line) == ("pb.yaml", 6 + list(values).index(field))
    assert error.field == f"conversions.destinations[0].{field}"
    assert message in str(error)


def test_the_example_playbook_lists_it_disabled_unless_the_environment_sets_it() -> None:
    text = EXAMPLE.read_text(encoding="utf-8")
    assert all(f"${{{name}" in text for name in ENV_VARS)
    off = section(text).destination("google_ads")
    assert off is not None and not off.enabled
    on = section(
        text,
        LEADLOOP_GOOGLE_ADS_CUSTOMER_ID="1234567890",
        LEADLOOP_GOOGLE_ADS_CONVERSION_ACTION="42",
        LEADLOOP_GOOGLE_ADS_DEVELOPER_TOKEN="d",
        LEADLOOP_GOOGLE_ADS_ACCESS_TOKEN="t",
    ).destination("google_ads")
    assert on is not None and on.enabled
