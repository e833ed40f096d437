"""GSM-7 / UCS-2 detection and segment counting."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from leadloop.personalization.sms import (
    GSM7_BASIC,
    GSM7_EXTENSION,
    Encoding,
    count_segments,
    detect_encoding,
)


def test_alphabet_sizes() -> None:
    assert len(GSM7_BASIC) == 127  # 128 code points minus ESC
    assert len(GSM7_EXTENSION) == 10
    assert not GSM7_BASIC & GSM7_EXTENSION


@pytest.mark.parametrize(
    ("text", "encoding", "units", "segments"),
    [
        ("", Encoding.GSM7, 0, 0),
        ("Hello @ £5 Ünal", Encoding.GSM7, 15, 1),
        ("a" * 160, Encoding.GSM7, 160, 1),
        ("a" * 161, Encoding.GSM7, 161, 2),
        ("a" * 306, Encoding.GSM7, 306, 2),
        ("a" * 307, Encoding.GSM7, 307, 3),
        ("€" * 80, Encoding.GSM7, 160, 1),  # extension chars cost two septets
        ("€" * 81, Encoding.GSM7, 162, 2),
        ("Commande passée ç", Encoding.UCS2, 17, 1),  # ç (lowercase) is not GSM-7, Ç is
        ("ж" * 70, Encoding.UCS2, 70, 1),
        ("ж" * 71, Encoding.UCS2, 71, 2),
        ("ж" * 134, Encoding.UCS2, 134, 2),
        ("🎉" * 35, Encoding.UCS2, 70, 1),  # surrogate pairs cost two units
        ("🎉" * 36, Encoding.UCS2, 72, 2),
    ],
)
def test_counts(text: str, encoding: Encoding, units: int, segments: int) -> None:
    count = count_segments(text)
    assert (count.encoding, count.units, count.segments) == (encoding, units, segments)


def test_escape_pairs_are_not_split_across_segments() -> None:
    # 306 septets would fill two 153-septet parts exactly, but the euro's ESC pair cannot start
    # at septet 153 of part one: it moves whole, and the last septet spills into a third part.
    text = "a" * 152 + "€" + "a" * 152
    assert count_segments(text).units == 306
    assert count_segments(text).segments == 3
    assert count_segments("a" * 151 + "€" + "a" * 153).segments == 2


def test_surrogates_are_not_split_across_segments() -> None:
    assert count_segments("ж" * 66 + "🎉" + "ж" * 66).segments == 3
    assert count_segments("ж" * 65 + "🎉" + "ж" * 67).segments == 2


@given(st.text(max_size=600))
def test_segments_cover_units(text: str) -> None:
    count = count_segments(text)
    assert count.encoding is detect_encoding(text)
    if count.segments <= 1:
        assert count.units <= count.per_segment
    else:
        # at most one unit lost per part to an unsplittable pair
        assert count.units <= count.segments * count.per_segment
        assert count.units > (count.segments - 1) * (count.per_segment - 1) - count.per_segment
