"""How an SMS will be encoded and how many segments (billed messages) it takes.

A text that fits the GSM 03.38 alphabet goes as GSM-7: 160 septets in one message, 153 per part
once it is split (the user data header takes the rest). Extension-table characters (`€ [ ] { } ~
^ | \\` and form feed) are sent as ESC + char and cost two septets. Any other character switches
the whole message to UCS-2: 70 UTF-16 code units, 67 per part; characters outside the BMP
(most emoji) are surrogate pairs and cost two.

Senders never split an escape pair or a surrogate pair across parts, so segments are counted by
packing characters greedily, not by dividing the total.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

# GSM 03.38 default alphabet, in code order, without ESC (0x1B), which only introduces the
# extension table. "\n" and "\r" are real members of the alphabet.
GSM7_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM7_EXTENSION = frozenset("\f^{}\\[~]|€")

SINGLE = {"gsm7": 160, "ucs2": 70}
MULTI = {"gsm7": 153, "ucs2": 67}


class Encoding(StrEnum):
    GSM7 = "gsm7"
    UCS2 = "ucs2"


@dataclass(frozen=True, slots=True)
class SmsCount:
    encoding: Encoding
    units: int
    """Septets (GSM-7) or UTF-16 code units (UCS-2) of the whole text."""
    segments: int
    """Messages the carrier bills; 0 for an empty text."""
    per_segment: int
    """Capacity of one segment at this length: 160/70 when single, 153/67 when split."""


def is_gsm7(text: str) -> bool:
    return all(ch in GSM7_BASIC or ch in GSM7_EXTENSION for ch in text)


def detect_encoding(text: str) -> Encoding:
    return Encoding.GSM7 if is_gsm7(text) else Encoding.UCS2


def _cost(ch: str, encoding: Encoding) -> int:
    if encoding is Encoding.GSM7:
        return 2 if ch in GSM7_EXTENSION else 1
    return 2 if ord(ch) > 0xFFFF else 1


def count_segments(text: str) -> SmsCount:
    encoding = detect_encoding(text)
    costs = [_cost(ch, encoding) for ch in text]
    units = sum(costs)
    single = SINGLE[encoding.value]
    if units <= single:
        return SmsCount(encoding, units, 1 if units else 0, single)
    capacity = MULTI[encoding.value]
    segments, used = 1, 0
    for cost in costs:
        if used + cost > capacity:  # the pair moves whole to the next part
            segments, used = segments + 1, 0
        used += cost
    return SmsCount(encoding, units, segments, capacity)
