"""Audience members hash as the same person's conversions do.

The audience sender reads the profile's `email` trait as typed; the conversions stage hashes
the identity graph's form of it (`normalize_email`). A member added as
`anna@xn--bcher-kva.example` was another person to Meta and Google than the buyer
`anna@bücher.example` the conversions named."""

from __future__ import annotations

import unicodedata

import pytest

from leadloop.channels.audiences import google_body, meta_payload
from leadloop.channels.settings import AudienceSettings
from leadloop.conversions.normalize import (
    normalize_email_google,
    normalize_email_meta,
    sha256_hex,
)

SPELLINGS = [
    "anna@xn--bcher-kva.example",
    "anna@bücher.example.",
    unicodedata.normalize("NFD", "Anna@Bücher.example"),
]
IDENTITY = "anna@bücher.example"


@pytest.mark.parametrize("typed", SPELLINGS)
def test_a_meta_member_hashes_as_the_identity_email(typed: str) -> None:
    payload = meta_payload(typed, None, None)
    assert payload is not None
    expected = sha256_hex(normalize_email_meta(IDENTITY) or "")
    assert payload["payload"]["data"] == [[expected, ""]]


@pytest.mark.parametrize("typed", SPELLINGS)
def test_a_google_member_hashes_as_the_identity_email(typed: str) -> None:
    settings = AudienceSettings(id="hot", type="google", audience_id="1", operating_account="2")
    body = google_body(settings, typed, None, None, True)
    assert body is not None
    identifiers = body["audienceMembers"][0]["userData"]["userIdentifiers"]
    assert identifiers == [{"emailAddress": sha256_hex(normalize_email_google(IDENTITY) or "")}]


def test_an_email_the_identity_graph_refuses_keeps_the_platforms_rule() -> None:
    payload = meta_payload("ana silva@example.com", None, None)
    assert payload is not None
    assert payload["payload"]["data"] == [[sha256_hex("ana silva@example.com"), ""]]


@pytest.mark.parametrize(
    "typed", ["٠٧٧٠٠٩٠٠١٢٣", "۰۷۷۰۰۹۰۰۱۲۳", "०७७००९००१२३", "０７７００９００１２３"]
)
def test_a_phone_typed_in_other_digits_hashes_as_the_ascii_one(typed: str) -> None:
    assert meta_payload(None, typed, "GB") == meta_payload(None, "07700900123", "GB")
    settings = AudienceSettings(id="hot", type="google", audience_id="1", operating_account="2")
    ascii_body = google_body(settings, None, "07700900123", "GB", True)
    assert ascii_body is not None
    assert google_body(settings, None, typed, "GB", True) == ascii_body
    assert google_body(settings, None, "077009००123", "GB", True) is None  # mixed: no member
