"""Email identities: one mailbox is one identity, however its domain is written.

`anna@bücher.example`, the same with `ü` decomposed (NFD, as macOS file names and some
keyboards give it) and `anna@xn--bcher-kva.example` (the form DNS and SMTP use) were three
identities, so one person became three profiles that never merged."""

from __future__ import annotations

import unicodedata

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from leadloop.conversions.normalize import (
    hash_identifier,
    normalize_email_google,
    normalize_email_meta,
    normalize_email_tiktok,
)
from leadloop.identity import decide
from leadloop.identity.model import Identity
from leadloop.identity.normalize import normalize_email
from leadloop.log.model import Event

NFC = "anna@bücher.example"
NFD = unicodedata.normalize("NFD", NFC)
PUNYCODE = "anna@xn--bcher-kva.example"


def test_the_three_spellings_of_one_mailbox_are_one_identity() -> None:
    assert NFD != NFC
    forms = {NFC, NFD, PUNYCODE, "  Anna@BÜCHER.example ", "anna@XN--BCHER-KVA.EXAMPLE"}
    assert {normalize_email(form) for form in forms} == {NFC}


def test_an_event_with_any_of_them_carries_the_same_identity() -> None:
    def identify(email: str) -> list[Identity]:
        event = Event(
            seq=1,
            workspace_id="w",
            message_id="m",
            type="identify",
            anonymous_id="a",
            timestamp=1.0,
            received_at=1.0,
            body={"traits": {"email": email}},
        )
        return [k for k in decide.identities_of(event, None) if k.type == "email"]

    assert identify(NFC) == identify(NFD) == identify(PUNYCODE) == [Identity("email", NFC)]


def test_the_domain_keeps_its_unicode_form_so_ad_platform_hashes_do_not_change() -> None:
    # The conversions stage hashes the identity's email (trim, lowercase, NFC for Meta and
    # TikTok): the canonical form must hash as the address typed in Unicode always has.
    for normalise in (normalize_email_meta, normalize_email_tiktok, normalize_email_google):
        typed = hash_identifier(NFC, normalise, memo=False)
        for form in (NFC, NFD, PUNYCODE):
            canonical = normalize_email(form)
            assert canonical is not None
            assert hash_identifier(canonical, normalise, memo=False) == typed, (normalise, form)


def test_idna_mapping_applies_to_the_domain_only() -> None:
    # Full-width letters and the ideographic full stop are the same domain (UTS #46); the
    # local part is the mailbox's own business: lowercased as before and nothing more.
    assert normalize_email("Ａnna@ＢÜcher。example") == "ａnna@bücher.example"
    assert normalize_email("ANNA.ß+x@faß.example") == "anna.ß+x@faß.example"
    local_nfd = unicodedata.normalize("NFD", "josé") + "@example.com"
    assert normalize_email(local_nfd) == local_nfd


def test_ascii_addresses_are_unchanged() -> None:
    for email in ("ada@example.com", "a_b+tag@mail_relay.example.co.uk", "x@1.2.3.4"):
        assert normalize_email(email) == email


@pytest.mark.parametrize(
    "email",
    [
        "anna@xn--zz.example",  # not valid punycode
        "anna@xn--.example",
        "anna@-bücher.example",  # a label may not start with a hyphen
        "anna@" + "ü" * 70 + ".example",  # a label over 63 characters
        "anna@mail_relay.bücher.example",  # `_` is not allowed in IDNA 2008
        "anna@\u200dbücher.example",  # a joiner out of context
        "anna@bücher..example",
        "anna@b@ücher.example",
    ],
)
def test_a_domain_idna_refuses_is_kept_in_nfc(email: str) -> None:
    # It is no delivery address, but it identified the person before: keep doing so rather than
    # split or drop them, and never raise out of the processor.
    assert normalize_email(email) == unicodedata.normalize("NFC", email.strip().lower())


@settings(max_examples=300)
@given(
    st.text(min_size=1, max_size=12).filter(lambda s: "@" not in s),
    st.text(min_size=1, max_size=40),
)
def test_no_domain_raises(local: str, domain: str) -> None:
    email = normalize_email(f"{local}@{domain}.example")
    assert email is None or "@" in email


@pytest.mark.parametrize(
    "email",
    [
        "anna@example.com.",
        "Anna@Example.COM. ",
        "anna@bücher.example.",
        "anna@xn--bcher-kva.example.",
        "anna@bücher.example。",  # the ideographic full stop is a dot (UTS #46)
    ],
)
def test_a_fully_qualified_trailing_dot_names_the_same_domain(email: str) -> None:
    # `example.com.` is `example.com` written relative to the DNS root: one mailbox, one
    # identity, not a second profile that never merges with the first.
    expected = "anna@bücher.example" if "bücher" in email or "xn--" in email else "anna@example.com"
    assert normalize_email(email) == expected


@pytest.mark.parametrize("email", ["anna@.", "anna@", "anna@com.", "@example.com."])
def test_a_trailing_dot_alone_does_not_make_an_address(email: str) -> None:
    assert normalize_email(email) is None
