"""`leadloop.digits.ascii_digits`: the one reading of other scripts' digits in typed values."""

from __future__ import annotations

import pytest

from leadloop.digits import ascii_digits


@pytest.mark.parametrize(
    ("typed", "read"),
    [
        ("07700900123", "07700900123"),
        ("٠٧٧٠٠٩٠٠١٢٣", "07700900123"),  # Arabic-Indic
        ("۰۷۷۰۰۹۰۰۱۲۳", "07700900123"),  # Extended Arabic-Indic (Persian, Urdu)
        ("०७७००९००१२३", "07700900123"),  # Devanagari
        ("０７７００９００１２３", "07700900123"),  # full-width
        ("+٤٤ ٧٧٠٠ ٩٠٠١٢٣", "+44 7700 900123"),  # what is not a digit is kept
        ("١,٢٣٤.٥", "1,234.5"),
        ("SW1A 1AA", "SW1A 1AA"),
        ("Straße 5", "Straße 5"),
        ("", ""),
    ],
)
def test_one_scripts_digits_read_as_ascii_ones(typed: str, read: str) -> None:
    assert ascii_digits(typed) == read


@pytest.mark.parametrize(
    "typed",
    [
        "5٠٠",  # ASCII and Arabic-Indic
        "٥۰۰",  # Arabic-Indic and Extended Arabic-Indic: two digit sets look alike
        "07700900१23",
        "1０",
        "5²",  # `isdigit` and `\d`-free, `int` refuses
        "①②",
        "²",
        "3½",
        "Ⅻ",
    ],
)
def test_mixed_scripts_and_digit_like_characters_are_no_number(typed: str) -> None:
    assert ascii_digits(typed) is None


def test_every_decimal_digit_reads_as_its_value() -> None:
    import sys
    import unicodedata

    decimals = [chr(c) for c in range(sys.maxunicode + 1) if chr(c).isdecimal()]
    for char in decimals:
        assert ascii_digits(char) == str(unicodedata.decimal(char))
