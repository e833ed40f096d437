"""State and province names → the 2-letter codes Meta hashes for `st` (capi.md §1.3, §9).

Keys are lowercase with single spaces, as `normalize_state_meta` prepares them.
"""

from __future__ import annotations

_US = {
    "alabama": "al", "alaska": "ak", "arizona": "az", "arkansas": "ar", "california": "ca",
    "colorado": "co", "connecticut": "ct", "delaware": "de", "district of columbia": "dc",
    "florida": "fl", "georgia": "ga", "hawaii": "hi", "idaho": "id", "illinois": "il",
    "indiana": "in", "iowa": "ia", "kansas": "ks", "kentucky": "ky", "louisiana": "la",
    "maine": "me", "maryland": "md", "massachusetts": "ma", "michigan": "mi", "minnesota": "mn",
    "mississippi": "ms", "missouri": "mo", "montana": "mt", "nebraska": "ne", "nevada": "nv",
    "new hampshire": "nh", "new jersey": "nj", "new mexico": "nm", "new york": "ny",
    "north carolina": "nc", "north dakota": "nd", "ohio": "oh", "oklahoma": "ok", "oregon": "or",
    "pennsylvania": "pa", "rhode island": "ri", "south carolina": "sc", "south dakota": "sd",
    "tennessee": "tn", "texas": "tx", "utah": "ut", "vermont": "vt", "virginia": "va",
    "washington": "wa", "west virginia": "wv", "wisconsin": "wi", "wyoming": "wy",
    "american samoa": "as", "guam": "gu", "northern mariana islands": "mp", "puerto rico": "pr",
    "united states virgin islands": "vi", "us virgin islands": "vi",
}  # fmt: skip

_CA = {
    "alberta": "ab", "british columbia": "bc", "manitoba": "mb", "new brunswick": "nb",
    "newfoundland and labrador": "nl", "nova scotia": "ns", "northwest territories": "nt",
    "nunavut": "nu", "ontario": "on", "prince edward island": "pe", "quebec": "qc",
    "québec": "qc", "saskatchewan": "sk", "yukon": "yt",
}  # fmt: skip

STATE_CODES: dict[str, str] = {**_US, **_CA}
