"""The identity graph reads a phone typed in one script's digits as the ASCII number, so the
person typing `٠٧٧٠٠٩٠٠١٢٣` is the person typing `07700900123`; a phone mixing digit sets or
holding a digit-like character (`²`) identifies nobody."""

from __future__ import annotations

import pytest

from leadloop.identity.normalize import normalize_phone, phone_identity


@pytest.mark.parametrize(
    "typed",
    ["٠٧٧٠٠٩٠٠١٢٣", "۰۷۷۰۰۹۰۰۱۲۳", "०७७००९००१२३", "０７７００９００１２３", "+٤٤٧٧٠٠٩٠٠١٢٣"],
)
def test_one_scripts_digits_are_the_ascii_phone(typed: str) -> None:
    assert normalize_phone(typed, "GB") == "+447700900123"
    assert phone_identity(typed, "GB") == "+447700900123"


@pytest.mark.parametrize("typed", ["077009००123", "+4477009001٢3", "07700900²123", "0770090012③"])
def test_mixed_digit_sets_and_digit_like_characters_are_no_phone(typed: str) -> None:
    assert normalize_phone(typed, "GB") is None
    assert phone_identity(typed, "GB") is None


def test_an_extension_typed_in_arabic_digits_is_still_an_extension() -> None:
    assert phone_identity("٠٢٠٧٩٤٦٠٩٥٨ ext. ١٢", "GB") is None
    assert normalize_phone("٠٢٠٧٩٤٦٠٩٥٨ ext. ١٢", "GB") == "+442079460958"
