"""The figures a line of copy states: numbers with what they count (a percentage, a price in a
currency, a multiple), read the same however they are written, so that a copy variant can be
held to the figures of its brief.

"30 teams" does not make "30 per cent off" true, nor "49 partners" a price of $49: a figure is
its number and its unit together. The same figure written otherwise (full-width or Arabic-Indic
digits, `USD 49` for `$49`, `30 per cent` for `30%`, `thirty percent`, `half` for `50%`) is
the same figure.
"""

from __future__ import annotations

import re
import unicodedata

Figure = tuple[str, str, str]
"""(currency, number, unit): `("$", "49", "")`, `("", "30", "%")`; the number as a decimal,
however it was grouped."""

_SIGNS = "$€£¥₹₽₩₪₫₴₦₱฿₺₸₡₲₵₭₮₾¢"
_CURRENCIES = {
    **dict.fromkeys(["$", "usd", "dollar", "dollars", "buck", "bucks"], "$"),
    **dict.fromkeys(["€", "eur", "euro", "euros"], "€"),
    **dict.fromkeys(["£", "gbp", "pound", "pounds"], "£"),
    **dict.fromkeys(["¥", "jpy", "yen"], "¥"),
    **dict.fromkeys(["₹", "inr", "rupee", "rupees"], "₹"),
    **dict.fromkeys(["¢", "cent", "cents"], "¢"),
    **dict.fromkeys(["chf", "franc", "francs"], "chf"),
}
_UNITS = {
    **dict.fromkeys(["%", "percent", "per cent", "pct"], "%"),
    "‰": "‰",
    **dict.fromkeys(["x", "×"], "x"),
}
_CODES = "usd|eur|gbp|jpy|inr|chf|cad|aud|cny|brl|mxn|sek|nok|dkk|pln|zar"
_NAMES = "dollars?|bucks?|euros?|pounds?|yen|rupees?|cents?|francs?"
_PRE = rf"(?:(?P<pre>[{_SIGNS}]|\b(?:{_CODES})\b)\s*)?"
_POST = rf"(?:\s*(?P<post>[%‰×{_SIGNS}]|(?:per\s?cent|percent|pct|x|{_CODES}|{_NAMES})(?![^\W_])))?"
_NUMBER = re.compile(rf"{_PRE}(?P<number>\d+(?:[.,]\d+)*){_POST}", re.IGNORECASE)

_ONES = (  # noqa: SIM905
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
    "fifteen sixteen seventeen eighteen nineteen"
).split()
_TENS = "twenty thirty forty fifty sixty seventy eighty ninety".split()  # noqa: SIM905
_SCALES = {"hundred": 100, "thousand": 10**3, "million": 10**6, "billion": 10**9}
_VALUES = {
    **{word: n for n, word in enumerate(_ONES)},
    **{word: 20 + 10 * n for n, word in enumerate(_TENS)},
    "dozen": 12,
}
NUMBER_WORDS = frozenset([*_VALUES, *_SCALES])
"""Words that count: `five`, `twenty`, `hundred`..."""
_WORD = "|".join(sorted(NUMBER_WORDS, key=len, reverse=True))
_WORDS = re.compile(
    rf"{_PRE}\b(?P<number>(?:{_WORD})(?:[\s-]+(?:and[\s-]+)?(?:{_WORD}))*)\b{_POST}",
    re.IGNORECASE,
)
_SAYINGS: dict[str, Figure] = {
    "half": ("", "50", "%"),
    "quarter": ("", "25", "%"),
    **dict.fromkeys(["twice", "double"], ("", "2", "x")),
    **dict.fromkeys(["triple", "thrice", "treble"], ("", "3", "x")),
}
"""Words that state a share or a multiple: "half price" is 50% off, "twice" 2x."""
_SAYING = re.compile(rf"\b(?:{'|'.join(_SAYINGS)})\b", re.IGNORECASE)
_SPACES = re.compile(r"\s+")


def plain(text: str) -> str:
    """`text` as it reads: compatibility forms folded (full-width `３０％`, `𝐅𝐑𝐄𝐄`), any
    script's digits as ASCII ones, invisible formatting characters (zero-width space, soft
    hyphen) dropped."""
    folded = unicodedata.normalize("NFKC", text)
    return "".join(
        str(unicodedata.decimal(c)) if c.isdecimal() else c
        for c in folded
        if unicodedata.category(c) != "Cf"
    )


def figures(text: str) -> dict[Figure, str]:
    """Each figure of `text`, with one way it is written there."""
    found: dict[Figure, str] = {}
    text = plain(text)
    for pattern, number in ((_NUMBER, _number), (_WORDS, _spelled)):
        for match in pattern.finditer(text):
            pre, post = (match.group(k) or "" for k in ("pre", "post"))
            if not pre and not post and match.group("number").casefold() == "one":
                continue  # "quick one", "the one": a word, not a count
            currency = _currency(pre) or _currency(post)
            unit = _UNITS.get(_SPACES.sub(" ", post.casefold()), "")
            written = _SPACES.sub(" ", match.group(0)).strip()
            found.setdefault((currency, number(match.group("number")), unit), written)
    for match in _SAYING.finditer(text):
        found.setdefault(_SAYINGS[match.group(0).casefold()], match.group(0))
    return found


def _spelled(words: str) -> str:
    """`twenty-five` as `25`, `two thousand and ten` as `2010`."""
    total = current = 0
    for word in re.split(r"[\s-]+", words.casefold()):
        if word in _VALUES:
            current += _VALUES[word]
        elif word == "hundred":
            current = max(current, 1) * 100
        elif word in _SCALES:
            total += max(current, 1) * _SCALES[word]
            current = 0
    return str(total + current)


_GROUPED = re.compile(r"\d{1,3}(?:,\d{3})+(?:\.\d+)?")


def _number(written: str) -> str:
    """`1,200` and `1200` as one number, `49.00` as `49`; a lone comma is a decimal one (`4,5`)."""
    digits = written.replace(",", "") if _GROUPED.fullmatch(written) else written
    if digits.count(",") == 1 and "." not in digits:
        digits = digits.replace(",", ".")
    if not re.fullmatch(r"\d+(?:\.\d+)?", digits):
        return written  # a list of numbers (`1.2.3`, `1,2,3`): compared as written
    # By its digits, not as a Decimal: rounding to a context's precision would make two long
    # numbers one.
    whole, _, fraction = digits.partition(".")
    fraction = fraction.rstrip("0")
    return (whole.lstrip("0") or "0") + (f".{fraction}" if fraction else "")


def _currency(word: str) -> str:
    folded = _SPACES.sub(" ", word.casefold())
    return _CURRENCIES.get(folded, folded if folded not in _UNITS else "")
