"""Numbers typed in another script's digits read as numbers; mixed or digit-like ones do not."""

from __future__ import annotations

import pytest

from leadloop.scoring.match import to_number


@pytest.mark.parametrize(
    ("typed", "number"),
    [
        ("٥٠٠", 500.0),
        ("５００", 500.0),
        ("١,٠٠٠", 1000.0),
        ("٢٠١-٥٠٠", 201.0),
        ("۵۰۰+", 500.0),
        ("५००", 500.0),
    ],
)
def test_one_scripts_digits_are_a_number(typed: str, number: float) -> None:
    assert to_number(typed) == number


@pytest.mark.parametrize("typed", ["5٠٠", "٥۰۰", "1,٠٠٠", "201-٥٠٠", "5²", "①", "²"])
def test_mixed_digits_are_no_number(typed: str) -> None:
    assert to_number(typed) is None
