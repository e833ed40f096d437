"""Country names → ISO-3166-1 alpha-2 (`Germany`, `USA`, `U.K.` → `de`, `us`, `gb`).

Meta hashes and Google sends the alpha-2 code only (research/capi.md §0.1, §1.3, §2.4), while
CRMs and forms often hold a name. Names come from `pycountry` (the list Meta's SDK validates
codes with): each country's name, official and common name and alpha-3 code, plus the short
table below of what people write that ISO does not list. A text that matches nothing is no
country: the caller leaves the field out rather than guess.
"""

from __future__ import annotations

import functools
import re
import unicodedata

_WORDS = re.compile(r"[^\W\d_]+")
_CODE = re.compile(r"[A-Za-z]\.?\s?[A-Za-z]\.?")

_ALIASES = {
    "us": ("America", "United States America", "US of A"),
    "gb": (
        "UK", "Great Britain", "Britain", "England", "Scotland", "Wales", "Northern Ireland",
        "United Kingdom of Great Britain", "Grossbritannien", "Royaume Uni", "Reino Unido",
    ),
    "nl": ("Holland", "Nederland"),
    "de": ("Deutschland", "Allemagne", "Alemania", "Germania"),
    "at": ("Österreich",),
    "ch": ("Schweiz", "Suisse", "Svizzera"),
    "fr": ("Frankreich",),
    "es": ("España", "Spanien", "Espagne"),
    "it": ("Italia", "Italien", "Italie"),
    "be": ("België", "Belgique", "Belgien"),
    "br": ("Brasil",),
    "mx": ("México",),
    "pl": ("Polska",),
    "se": ("Sverige",),
    "no": ("Norge",),
    "dk": ("Danmark",),
    "fi": ("Suomi",),
    "ie": ("Éire",),
    "cz": ("Česko",),
    "ru": ("Russia",),
    "tr": ("Turkey", "Türkiye"),
    "kr": ("Republic of Korea",),
    "ae": ("UAE", "Emirates"),
    "ci": ("Ivory Coast",),
    "cv": ("Cape Verde",),
    "sz": ("Swaziland",),
    "mk": ("Macedonia",),
    "cd": ("DR Congo", "DRC", "Democratic Republic of the Congo", "Congo Kinshasa"),
    "cg": ("Congo Brazzaville", "Republic of the Congo"),
    "bn": ("Brunei",),
    "ps": ("Palestine",),
    "fm": ("Micronesia",),
    "va": ("Vatican", "Vatican City", "Holy See"),
    "mm": ("Burma",),
    "la": ("Lao",),
    "tl": ("East Timor",),
}  # fmt: skip
"""Names ISO does not list, each checked to name one country only."""

_AMBIGUOUS = frozenset({"congo"})
"""Keys of names that people use for two countries, left unmapped as `Korea` is: ISO's short
name `Congo` is the Republic, but many who write it mean the DR Congo."""


def name_key(text: str) -> str:
    """`text` as a lookup key: letters only, lowercase, accents and a leading `the` dropped,
    so that `U.S.A.`, `usa` and `U S A` are one key and `Côte d'Ivoire` is `cotedivoire`."""
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    plain = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    words = _WORDS.findall(plain)
    if len(words) > 1 and words[0] == "the":
        words = words[1:]
    return "".join(words)


@functools.cache
def _names() -> dict[str, str]:
    # Imported here: the database loads in ~0.1 s, which only a profile with a named country
    # should pay for.
    import pycountry

    table: dict[str, str] = {}
    for country in pycountry.countries:
        code = country.alpha_2.lower()
        for attr in ("alpha_3", "name", "official_name", "common_name"):
            value = getattr(country, attr, None)
            if isinstance(value, str):
                table.setdefault(name_key(value), code)
    for code, names in _ALIASES.items():
        for name in names:
            table.setdefault(name_key(name), code)
    for key in _AMBIGUOUS:
        table.pop(key, None)
    return table


def country_code(text: str, codes: frozenset[str]) -> str | None:
    """The lowercase alpha-2 code `text` writes or names, or None. `codes` are the valid
    codes: two letters are one of them or nothing (`EU`), except `UK`."""
    key = name_key(text)
    if key in codes:
        # `U.S.` is a code; `n/a` is "not available", not Namibia.
        return key if _CODE.fullmatch(text.strip()) else None
    found = _names().get(key)
    return found if found in codes else None
