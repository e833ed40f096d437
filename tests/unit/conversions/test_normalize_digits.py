"""Identifiers typed in another script's digits reach the platforms as ASCII digits (their
E.164 phones and ZIP codes are ASCII, and a hash of other bytes matches nobody); values that
mix digit sets, or hold digit-like characters (`²`, `①`), are not sent."""

from __future__ import annotations

import json
from typing import Any

import pytest

from leadloop.conversions.capture import MatchKeys
from leadloop.conversions.config import IDENTIFIERS, Mapping
from leadloop.conversions.destinations import DestinationConfig
from leadloop.conversions.fields import finite_number
from leadloop.conversions.identifiers import for_destination, user_identifiers
from leadloop.conversions.model import (
    Conversion,
    GoogleDestination,
    MetaDestination,
    TikTokDestination,
)
from leadloop.conversions.normalize import (
    normalize_date_of_birth_meta,
    normalize_phone_e164,
    normalize_phone_meta,
    normalize_zip_google,
    normalize_zip_meta,
)
from leadloop.conversions.payloads import build_request
from leadloop.digest import sha256_hex
from leadloop.identity.model import Profile

ASCII_PHONE = "07700900123"
ARABIC_PHONE = "٠٧٧٠٠٩٠٠١٢٣"


@pytest.mark.parametrize(
    "typed",
    [ARABIC_PHONE, "۰۷۷۰۰۹۰۰۱۲۳", "०७७००९००१२३", "０７７００９００１２３", "+٤٤ ٧٧٠٠ ٩٠٠١٢٣"],
)
def test_a_phone_in_one_scripts_digits_is_the_ascii_number(typed: str) -> None:
    assert normalize_phone_e164(typed, "GB") == "+447700900123"
    assert normalize_phone_meta(typed, "GB") == "447700900123"


@pytest.mark.parametrize("typed", ["077009००123", "07700900١23", "07700900²123", "0770090012③"])
def test_a_phone_mixing_digit_sets_or_digit_like_characters_is_not_sent(typed: str) -> None:
    assert normalize_phone_e164(typed, "GB") is None
    assert normalize_phone_e164("+44" + typed[1:], None) is None


def test_a_zip_in_one_scripts_digits_is_ascii_and_a_mixed_one_is_not_sent() -> None:
    assert normalize_zip_meta("٠٢١٣٩", "us") == "02139"
    assert normalize_zip_meta("٢١٣٩", "us") == "02139"  # a US ZIP that lost its zero
    assert normalize_zip_meta("٩٠٢١٠-١٢٣٤", None) == "90210"
    assert normalize_zip_google("１０１１５", "DE") == "10115"
    for mixed in ("0213٩", "1011⁵"):
        assert normalize_zip_meta(mixed, "us") is None
        assert normalize_zip_google(mixed, "US") is None


def test_a_date_of_birth_in_one_scripts_digits_is_ascii() -> None:
    assert normalize_date_of_birth_meta("١٩٩٧-٠٢-١٦") == "19970216"
    assert normalize_date_of_birth_meta("199٧-02-16") is None


def test_an_order_value_in_one_scripts_digits_is_a_number() -> None:
    assert finite_number("١,٢٣٤.٥٠") == 1234.5
    assert finite_number("1,٢٣٤.50") is None
    assert finite_number("٤٢,٥٠") is None  # a decimal comma, as in ASCII


def _phone_sent(phone: str) -> dict[str, Any]:
    """The phone hash each platform's request body carries for a profile with this trait."""
    person = Profile(
        id="p",
        workspace_id="w",
        traits={"phone": phone, "country": "GB"},
        first_seen=1,
        last_seen=1,
        last_activity=1,
    )
    user = user_identifiers(person, [], MatchKeys(), frozenset(IDENTIFIERS))
    base = Conversion(event_name="Lead", event_time=1.0, event_id="e1", user=user)
    sent: dict[str, Any] = {}
    for platform, target in (
        ("meta", MetaDestination(pixel_id="1")),
        ("google", GoogleDestination(operating_account_id="1", conversion_action_id="2")),
        ("tiktok", TikTokDestination(pixel_code="PX1")),
    ):
        dest = DestinationConfig(id=platform, platform=platform, destination=target)  # type: ignore[arg-type]
        conversion, _ = for_destination(base, dest, Mapping(id="m", event_name="Lead"), None)
        body = build_request([conversion], target)
        json.dumps(body).encode("ascii")  # nothing but ASCII leaves for a platform
        sent[platform] = body
    return sent


def test_the_platforms_get_one_hash_for_one_phone_in_any_script() -> None:
    ascii_sent = _phone_sent(ASCII_PHONE)
    assert sha256_hex("447700900123") in json.dumps(ascii_sent["meta"])
    assert sha256_hex("+447700900123") in json.dumps(ascii_sent["google"])
    for typed in (ARABIC_PHONE, "۰۷۷۰۰۹۰۰۱۲۳", "+٤٤٧٧٠٠٩٠٠١٢٣"):
        assert _phone_sent(typed) == ascii_sent, typed


def test_a_mixed_script_phone_reaches_no_platform() -> None:
    sent = _phone_sent("+44770090०123")
    for platform, body in sent.items():
        assert sha256_hex("+447700900123") not in json.dumps(body), platform
        assert sha256_hex("447700900123") not in json.dumps(body), platform
