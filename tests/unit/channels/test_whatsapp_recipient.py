"""WhatsApp's `to` is the number's ASCII digits whatever script it was typed in."""

from __future__ import annotations

from leadloop.channels.whatsapp import recipient


def test_the_recipient_is_ascii_digits() -> None:
    assert recipient("+44 7700 900123") == "447700900123"
    assert recipient("+٤٤ ٧٧٠٠ ٩٠٠١٢٣") == "447700900123"
    assert recipient("+４４７７００９００１２３") == "447700900123"


def test_a_number_mixing_digit_sets_or_with_a_superscript_has_no_recipient() -> None:
    assert recipient("+44 7700 ٩٠٠١٢٣") == ""
    assert recipient("+44 7700 900²123") == ""
