"""Digits in values people type: numbers, phones, ZIP codes and dates.

Python reads any script's decimal digits as numbers (`\\d`, `int`, `float`: "٥٠٠" is 500,
full-width "５００" too), and people in Arabic, Persian, Devanagari or CJK locales do type them.
What leaves for a platform must be ASCII (E.164 phones, ZIP codes, and the hashes made of
them), and the same person must hash the same whichever digits they typed. So one policy, here:

- a value whose digits all come from one script reads as the ASCII digits (`ascii_digits`);
- a value mixing two sets of digits (`5٠٠`, or Arabic-Indic with Persian ones, which look
  alike) is no number: no reading of it is the one its writer meant for sure;
- a value holding a character that is numeric but no decimal digit (`²`, `①`, `½`: `isdigit`
  takes the first two, `int` refuses all three) is no number either.

Machine formats (ISO 8601 times, HTTP headers, platform answers) stay ASCII-only where they
are read; this is for values a person typed.
"""

from __future__ import annotations

import unicodedata


def ascii_digits(text: str) -> str | None:
    """`text` with its decimal digits as ASCII ones and everything else as it was, or None
    when its digits mix scripts or it holds a digit-like character that is no decimal digit."""
    if text.isascii():  # the usual case, and ASCII has no other numeric characters
        return text
    zero = None
    out = []
    for char in text:
        if not char.isnumeric():
            out.append(char)
            continue
        if not char.isdecimal():
            return None
        value = unicodedata.decimal(char)
        # Unicode encodes every decimal digit set as ten consecutive code points, 0 to 9.
        start = ord(char) - value
        if zero is None:
            zero = start
        elif start != zero:
            return None
        out.append(chr(48 + value))
    return "".join(out)
