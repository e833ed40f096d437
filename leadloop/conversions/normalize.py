"""Per-platform normalisation and SHA-256 of user identifiers.

There is no single `normalize(email)`: the same person hashes to different bytes per platform
(research/capi.md §0.1). Every function here is pure and returns `None` when a value cannot be
normalised: such a field is left out of the request, never sent raw and never raised about.

Where we knowingly differ from the official SDKs (tests/unit/conversions/test_normalize.py checks
each case against them):

* phones go through `phonenumbers` to E.164 first, with a default region, because neither SDK adds a
  missing country code (capi.md §0.2);
* only 64-hex values count as already hashed; Meta's SDK also passes 32-hex (MD5) strings through,
  which would leak e.g. a dash-less UUID used as an external id;
* Meta names, cities and states follow Meta's doc (no punctuation, state names mapped to codes) where
  the Python SDK keeps punctuation (capi.md §9); dates of birth are reformatted to `YYYYMMDD`;
* Google given names lose a title (`Mrs.`) and family names a suffix (`Jr.`), as Data Manager's
  rules ask and its Formatter leaves to the caller (capi.md §2.4).
"""

from __future__ import annotations

import datetime as dt
import functools
import re
import unicodedata
from collections.abc import Callable
from typing import Any

import msgspec
import phonenumbers

from leadloop.conversions.countries import country_code
from leadloop.conversions.model import UserIdentifiers
from leadloop.conversions.regions import STATE_CODES
from leadloop.digest import sha256 as _sha256
from leadloop.digest import sha256_hex as sha256_hex
from leadloop.digits import ascii_digits
from leadloop.identity.normalize import dialable, normalize_email

_SHA256_HEX = re.compile(r"[0-9a-f]{64}")
_GMAIL_DOMAINS = frozenset({"gmail.com", "googlemail.com"})
_ISO_DATE = re.compile(r"[0-9]{4}-?[0-9]{2}-?[0-9]{2}")
_US_ZIP_PLUS4 = re.compile(r"([0-9]{5})-?[0-9]{4}")


def is_digest(value: str) -> bool:
    """True when `value` is exactly a lowercase SHA-256 hex digest, the form we send.

    Every stored event's hashed keys pass this check again before they are sent, so it is
    written for speed: `bytes.fromhex` and `hex` run in C and round-trip only lowercase hex
    without blanks (about a third of a regular expression's time on 64 characters).
    """
    if len(value) != 64:
        return False
    try:
        return bytes.fromhex(value).hex() == value
    except ValueError:  # not hex at all (including any non-ASCII character)
        return False


def as_existing_hash(value: str) -> str | None:
    """The value if it already is a SHA-256 hex digest (any case, surrounding blanks), else None.

    Lower-cased: the fake servers and Google's HEX encoding expect lowercase, and case does not
    change the digest's value.
    """
    if is_digest(value):
        return value  # our own digests: already in the form we send
    candidate = value.strip().lower()
    return candidate if _SHA256_HEX.fullmatch(candidate) else None


_MEMO_SIZE = 65_536
_memo: dict[tuple[Callable[..., str | None], str, Any], str | None] = {}


def hash_identifier(
    raw: str,
    normalize: Callable[..., str | None],
    arg: Any = None,
    *more: Any,
    memo: bool = True,
) -> str | None:
    """SHA-256 hex of `normalize(raw, arg, *more)` (arg left out when None), or `raw` itself when
    it already is a digest, or None when it cannot be normalised; never the raw value otherwise.

    Normalisers are pure, so results are memoised per (normaliser, value, argument): a person's
    email is hashed once however many conversions and stage moves they produce, and common names
    are hashed once per process. The memo is bounded (cleared when full) and holds nothing that
    is not already in this process's memory. `memo=False` is for values that are one per person
    (email, phone, external id): they rarely come back before the memo is cleared, and a miss
    (a new entry in a large dict) costs about as much as the hash it would save.
    """
    if len(raw) >= 64:  # a digest, possibly with blanks around it
        existing = as_existing_hash(raw)
        if existing:
            return existing
    if not memo:
        value = normalize(raw) if arg is None and not more else normalize(raw, arg, *more)
        return sha256_hex(value) if value else None
    key = (normalize, raw, arg) if not more else (normalize, raw, (arg, *more))
    try:
        return _memo[key]
    except KeyError:
        pass
    normalized = normalize(raw) if arg is None and not more else normalize(raw, arg, *more)
    digest = sha256_hex(normalized) if normalized else None
    if len(_memo) >= _MEMO_SIZE:
        _memo.clear()
    _memo[key] = digest
    return digest


def clear_memo() -> None:
    """Forget memoised hashes (benchmarks start every round cold)."""
    _memo.clear()


def _clean(value: str | None) -> str | None:
    # NFC first: `é` typed as one code point or as `e` + accent must hash to the same bytes.
    # (ASCII text is its own NFC form.)
    if value is None:
        return None
    stripped = (value if value.isascii() else unicodedata.normalize("NFC", value)).strip()
    return stripped or None


def _clean_digits(value: str | None) -> str | None:
    """`_clean` for a value made of digits (phone, ZIP, date): any one script's digits as
    ASCII ones, the form the platforms take; None when they mix scripts (`ascii_digits`)."""
    cleaned = _clean(value)
    return None if cleaned is None else ascii_digits(cleaned)


# --- email -------------------------------------------------------------------------------------


def as_identity_email(email: str) -> str:
    """The email in the identity graph's form (`normalize_email`: one domain however it is
    spelt, punycode, NFD or with the root's dot), to apply before a platform's rule: a raw
    trait then hashes as the identity's email of the same person does. A value the graph
    refuses (a space in it, over 254 characters) is returned as it is, for the platform's rule
    to judge as it always did."""
    return normalize_email(email) or email


def _split_email(email: str) -> tuple[str, str] | None:
    local, at, domain = email.rpartition("@")
    # The shape Meta's SDK checks (`.+@.+\..+`); real validation is the platform's job.
    if not at or not local or "." not in domain.strip(".") or domain.startswith("."):
        return None
    return local, domain


def normalize_email_meta(email: str) -> str | None:
    """Trim and lowercase only (Meta doc; also TikTok and Snap): dots and plus-tags are kept."""
    # `_clean` and `_split_email` written out: this runs once per conversion.
    lowered = (email if email.isascii() else unicodedata.normalize("NFC", email)).strip().lower()
    local, at, domain = lowered.rpartition("@")
    if not at or not local or "." not in domain.strip(".") or domain.startswith("."):
        return None
    return lowered


def normalize_email_tiktok(email: str) -> str | None:
    """Same rule as Meta (capi.md §3: trim + lowercase)."""
    return normalize_email_meta(email)


def normalize_email_google(email: str) -> str | None:
    """Data Manager rule (capi.md §2.4): lowercase, no whitespace anywhere, and for gmail.com /
    googlemail.com drop every `.` and the `+suffix` of the local part. Google's Formatter rejects
    intermediate whitespace; the doc says to remove it, which is what we do."""
    cleaned = _clean(email)
    if cleaned is None:
        return None
    lowered = re.sub(r"\s+", "", cleaned).lower()
    if lowered.count("@") != 1:
        return None
    parts = _split_email(lowered)
    if parts is None:
        return None
    local, domain = parts
    if domain in _GMAIL_DOMAINS:
        local = local.split("+", 1)[0].replace(".", "")
        if not local:
            return None
    return f"{local}@{domain}"


# --- phone -------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=32_768)
def normalize_phone_e164(phone: str, default_region: str | None = None) -> str | None:
    """E.164 with `+`, e.g. `+16505551212`, or None when no plausible number can be made.

    Memoised (a pure function of its strings; `phonenumbers.parse` costs about 20 µs): a
    trait's phone is made canonical for every conversion of the person (`identifiers`).

    `default_region` supplies the country code for national formats (`020 7946 0958`, GB). A
    leading `00` is always read as the international prefix, even where the region's own prefix
    differs (US `011`), as Meta's doc asks. Without a region a bare digit string is accepted only when it
    is a valid number once read as international (`16505551212`).
    """
    cleaned = _clean_digits(phone)
    if cleaned is None:
        return None
    region = default_region.upper() if default_region else None
    digits = re.sub(r"[^0-9]", "", cleaned)
    candidates: list[tuple[str, str | None, bool]] = []
    if not cleaned.startswith("+") and digits.startswith("00"):
        # No national number starts with 00 anywhere, and regions whose own prefix is not 00
        # would misread it (Brazil takes it as a carrier code).
        candidates.append(("+" + digits[2:], None, False))
    candidates.append((cleaned, region, False))
    if not cleaned.startswith("+") and region is None and digits:
        candidates.append(("+" + digits, None, True))
    for text, parse_region, must_be_valid in candidates:
        try:
            number = phonenumbers.parse(text, parse_region)
        except phonenumbers.NumberParseException:
            continue
        plausible = phonenumbers.is_valid_number(number) if must_be_valid else dialable(number)
        if plausible:
            return str(phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164))
    return None


def normalize_phone_meta(phone: str, default_region: str | None = None) -> str | None:
    """Digits only, country code included, no `+` (`16505551212`): Meta and Snap."""
    e164 = normalize_phone_e164(phone, default_region)
    return e164[1:] if e164 else None


def normalize_phone_google(phone: str, default_region: str | None = None) -> str | None:
    """E.164 with `+` (`+16505551212`): Google Ads API and Data Manager."""
    return normalize_phone_e164(phone, default_region)


def normalize_phone_tiktok(phone: str, default_region: str | None = None) -> str | None:
    """E.164 with `+`, as integrators send it (capi.md §3; unconfirmed in TikTok's own docs, §9)."""
    return normalize_phone_e164(phone, default_region)


# --- names and places --------------------------------------------------------------------------


# ASCII characters that are neither letters (categories L*, M*) nor whitespace (`str.isspace`).
_ASCII_NOT_NAME = re.compile(r"[^A-Za-z\t\n\x0b\x0c\r\x1c-\x1f ]+")


def _letters_and_spaces(text: str) -> str:
    if text.isascii():  # same result, without a Unicode category lookup per character
        return " ".join(_ASCII_NOT_NAME.sub("", text).split())
    kept = (ch for ch in text if ch.isspace() or unicodedata.category(ch)[0] in "LM")
    return " ".join("".join(kept).split())


def normalize_name_meta(name: str) -> str | None:
    """Lowercase, no punctuation, accents kept (Meta doc: `valéry`, `정` are valid). Punctuation is
    deleted (`o'brien` → `obrien`, `mary-jane` → `maryjane`); the SDK keeps it (capi.md §9)."""
    cleaned = _clean(name)
    return _letters_and_spaces(cleaned.lower()) or None if cleaned else None


def normalize_name_google(name: str) -> str | None:
    """Lowercase and trim (Data Manager `givenName`/`familyName`, same as Google's Formatter)."""
    cleaned = _clean(name)
    return cleaned.lower() if cleaned else None


_TITLE = re.compile(r"(?:mr|mrs|ms|miss|mx|dr|prof|rev)(?:\.\s*|\s+)(\S.*)")
_SUFFIX = re.compile(r"(.*?\S)[\s,]+(?:jr|sr|ii|iii|iv|phd|md|esq)\.?")


def normalize_given_name_google(name: str) -> str | None:
    """`normalize_name_google` without a title in front (`Mrs. Jane` → `jane`): Data Manager's
    rule says no prefixes such as Mrs. (capi.md §2.4), which its Formatter leaves to the caller.
    A title alone is kept: it is the only name there is."""
    lowered = normalize_name_google(name)
    while lowered and (found := _TITLE.fullmatch(lowered)):
        lowered = found.group(1)  # `Prof. Dr. Hans`: every title goes
    return lowered


def normalize_family_name_google(name: str) -> str | None:
    """`normalize_name_google` without suffixes such as Jr. (`Doe, Jr.` → `doe`; capi.md §2.4)."""
    lowered = normalize_name_google(name)
    while lowered and (found := _SUFFIX.fullmatch(lowered)):
        lowered = found.group(1)
    return lowered


def normalize_city_meta(city: str) -> str | None:
    """Lowercase letters only: no punctuation, digits or spaces (Meta doc)."""
    cleaned = _clean(city)
    if cleaned is None:
        return None
    return "".join(ch for ch in cleaned.lower() if unicodedata.category(ch)[0] in "LM") or None


def normalize_state_meta(state: str) -> str | None:
    """2-letter code, lowercase, for US states and Canadian provinces written out in full
    (`California` → `ca`); otherwise lowercase letters only, as for cities (Meta doc)."""
    cleaned = _clean(state)
    if cleaned is None:
        return None
    key = _letters_and_spaces(cleaned.lower())
    return STATE_CODES.get(key) or normalize_city_meta(cleaned)


_USPS = frozenset({"us", "pr", "vi", "gu", "as", "mp", "um"})
"""Countries with USPS ZIP codes: the US and its territories, which ISO-3166 codes apart
(Puerto Rico's ZIPs are 006xx-009xx, the Virgin Islands' 008xx)."""
_USPS_OR_UNKNOWN = _USPS | {""}


def _us_zip(code: str, country: str | None) -> str:
    """A US ZIP of 3 or 4 digits is one that lost its leading zeros on the way (stored as a
    number: `02139` became 2139; 00501 is the smallest ZIP), so it gets them back. Only for a
    profile whose country uses ZIPs (`_USPS`): four digits is a whole postal code in many
    countries."""
    if 3 <= len(code) < 5 and code.isdigit() and (country or "").strip().lower() in _USPS:
        return code.zfill(5)
    return code


def normalize_zip_meta(zip_code: str, country: str | None = None) -> str | None:
    """Lowercase, no spaces or dashes; US ZIP+4 cut to the first 5 digits (Meta doc), and a
    US ZIP that lost its leading zeros given them back (`_us_zip`).

    The SDK keeps only the text before a dash, which also cuts non-US codes such as Poland's
    `00-950` to `00`; we cut only US-shaped codes.
    """
    cleaned = _clean_digits(zip_code)
    if cleaned is None:
        return None
    compact = re.sub(r"\s+", "", cleaned).lower()
    us_plus4 = _US_ZIP_PLUS4.fullmatch(compact)
    if us_plus4 and ("-" in compact or (country or "").strip().lower() in _USPS_OR_UNKNOWN):
        return us_plus4.group(1)
    return _us_zip(compact.replace("-", ""), country) or None


def normalize_zip_google(zip_code: str, country: str | None = None) -> str | None:
    """Trimmed, sent unhashed (Data Manager `postalCode`); a US ZIP that lost its leading
    zeros gets them back (`_us_zip`)."""
    cleaned = _clean_digits(zip_code)
    return None if cleaned is None else _us_zip(cleaned, country)


_ISO_3166_ALPHA_2 = frozenset(
    code.lower()
    for code in (phonenumbers.SUPPORTED_REGIONS | {"AQ", "BV", "GS", "HM", "PN", "TF", "UM"})
    - {"AC", "TA", "XK"}
)
"""The 249 ISO-3166-1 alpha-2 codes: `phonenumbers`' regions, plus the seven without a telephone
plan, less Ascension and Tristan da Cunha (ITU, not ISO) and Kosovo (user-assigned), as
`pycountry`, which Meta's SDK checks with, lists them (tests compare the two)."""


@functools.lru_cache(maxsize=4096)
def normalize_country_meta(country: str) -> str | None:
    """Lowercase ISO-3166-1 alpha-2 (`us`), also from a name or variant (`United States`,
    `USA`, `U.K.`: `countries`), which Meta's SDK refuses (capi.md §1.3). Anything else is not
    sent: not a name we do not know, nor two letters that name no country (`eu`)."""
    cleaned = _clean(country)
    return None if cleaned is None else country_code(cleaned, _ISO_3166_ALPHA_2)


def normalize_country_google(country: str) -> str | None:
    """Uppercase ISO-3166-1 alpha-2 (`US`), sent unhashed as `regionCode`."""
    code = normalize_country_meta(country)
    return code.upper() if code else None


_GENDERS = {"f": "f", "female": "f", "m": "m", "male": "m"}


def normalize_gender_meta(gender: str) -> str | None:
    """`f` or `m` (Meta doc); `female` and `male` as Meta's Node SDK maps them. Anything else is
    not sent: reading the first letter made `Mx`, `Mujer` or `misc` male."""
    cleaned = _clean(gender)
    return _GENDERS.get(cleaned.lower()) if cleaned else None


def normalize_date_of_birth_meta(date_of_birth: str) -> str | None:
    """`YYYYMMDD` from ISO `YYYY-MM-DD` / `YYYYMMDD`; the SDK hashes the input verbatim."""
    cleaned = _clean_digits(date_of_birth)
    if cleaned is None or not _ISO_DATE.fullmatch(cleaned):
        return None
    try:
        parsed = dt.date.fromisoformat(cleaned)
    except ValueError:
        return None
    return parsed.strftime("%Y%m%d")


def normalize_external_id(external_id: str) -> str | None:
    """Trimmed, case kept: it must equal what the browser pixel sends (capi.md §0.1, §3)."""
    return _clean(external_id)


# --- hashing per platform ----------------------------------------------------------------------


def _hashed(raw: str | None, normalize: Callable[..., str | None], *args: Any) -> str | None:
    if raw is None:
        return None
    return hash_identifier(raw, normalize, *args)


_META_HASHED: tuple[tuple[str, str, Callable[..., str | None], bool], ...] = (
    ("em", "email", normalize_email_meta, False),
    ("ph", "phone", normalize_phone_meta, False),
    ("fn", "first_name", normalize_name_meta, True),
    ("ln", "last_name", normalize_name_meta, True),
    ("ge", "gender", normalize_gender_meta, True),
    ("db", "date_of_birth", normalize_date_of_birth_meta, True),
    ("ct", "city", normalize_city_meta, True),
    ("st", "state", normalize_state_meta, True),
    ("zp", "zip", normalize_zip_meta, True),
    ("country", "country", normalize_country_meta, True),
)
"""Meta's hashed keys: (key, field, normaliser, memoised). Email and phone are one per person,
so they skip the memo (`hash_identifier`, `memo=False`)."""
_META_PLAIN = (
    ("client_ip_address", "ip"),
    ("client_user_agent", "user_agent"),
    ("fbc", "fbc"),
    ("fbp", "fbp"),
    ("lead_id", "lead_id"),
)


_FIELDS = UserIdentifiers.__struct_fields__
_META_HASHED_AT = tuple(
    (_FIELDS.index(attr), key, norm, memo) for key, attr, norm, memo in _META_HASHED
)
_META_PLAIN_AT = tuple((_FIELDS.index(attr), key) for key, attr in _META_PLAIN)
_EXTERNAL_AT = _FIELDS.index("external_id")
E164_SHAPE = re.compile(r"\+[1-9][0-9]{6,14}")
"""What an E.164 number looks like (not whether it is one: `phonenumbers` decides that)."""


def _phone_meta(raw: str, region: str | None, canonical: bool) -> str | None:
    """Meta's phone form. With `canonical`, an E.164-shaped phone is taken to be what
    `phonenumbers` itself outputs (`identifiers.user_identifiers` makes it so), and Meta's form
    is derived directly, skipping a ~15 µs parse; anything else goes through the normaliser."""
    if canonical and E164_SHAPE.fullmatch(raw):
        return raw[1:]
    return normalize_phone_meta(raw, region)


def hash_user_data_meta(
    user: UserIdentifiers,
    default_region: str | None = None,
    *,
    hash_external_id: bool = True,
    canonical_phones: bool = False,
) -> dict[str, Any]:
    """Meta `user_data`: hashed keys as one-element arrays (as the SDK emits them), the rest
    scalars and unhashed (capi.md §1.3).

    The one place Meta's keys are normalised and hashed: raw values are normalised and hashed
    here, values that already are lowercase 64-hex digests are taken as they are.
    `canonical_phones`: the caller vouches that E.164-shaped phones are canonical (`_phone_meta`).
    (The fields are read from one `astuple` by position: this runs for every conversion, and
    attribute lookups were a third of its cost.)
    """
    values = msgspec.structs.astuple(user)
    out: dict[str, Any] = {}
    for at, key, normalize, memo in _META_HASHED_AT:
        raw = values[at]
        if raw is None:
            continue
        if len(raw) >= 64:  # a digest, possibly with blanks around it or in upper case
            existing = as_existing_hash(raw)
            if existing:
                out[key] = [existing]
                continue
        if memo:
            if key == "zp":
                country = normalize_country_meta(user.country) if user.country else None
                digest = hash_identifier(raw, normalize, country)
            else:
                digest = hash_identifier(raw, normalize)
        else:  # one per person: hashed here without the memo (`hash_identifier`'s memo=False)
            if key == "ph":
                value = _phone_meta(raw, user.phone_region or default_region, canonical_phones)
            else:
                value = normalize(raw)
            digest = _sha256(value.encode()).hexdigest() if value else None
        if digest:
            out[key] = [digest]
    external = values[_EXTERNAL_AT]
    if external is not None:
        existing = as_existing_hash(external) if len(external) >= 64 else None
        if existing:
            out["external_id"] = [existing]  # hashed at enqueue, like the fields above
        else:
            external_id = normalize_external_id(external)
            if external_id and hash_external_id:
                external_id = _sha256(external_id.encode()).hexdigest()
            if external_id:
                out["external_id"] = [external_id]
    for at, key in _META_PLAIN_AT:
        value = values[at]
        if value:
            out[key] = value
    return out


def hash_user_identifiers_google(
    user: UserIdentifiers, default_region: str | None = None
) -> list[dict[str, Any]]:
    """Data Manager `userData.userIdentifiers` (≤10), hex-encoded hashes (`encoding: HEX`).

    The address identifier needs all four parts (names hashed; region and postal code unhashed);
    city and state are for Google Analytics destinations only and are not sent (capi.md §2.4).
    """
    region = user.phone_region or default_region
    identifiers: list[dict[str, Any]] = []
    email = _hashed(user.email, normalize_email_google)
    if email:
        identifiers.append({"emailAddress": email})
    phone = _hashed(user.phone, normalize_phone_google, region)
    if phone:
        identifiers.append({"phoneNumber": phone})
    region_code = normalize_country_google(user.country) if user.country else None
    address = {
        "givenName": _hashed(user.first_name, normalize_given_name_google),
        "familyName": _hashed(user.last_name, normalize_family_name_google),
        "regionCode": region_code,
        "postalCode": normalize_zip_google(user.zip, region_code) if user.zip else None,
    }
    if all(address.values()):
        identifiers.append({"address": address})
    return identifiers


def hash_user_data_tiktok(
    user: UserIdentifiers, default_region: str | None = None
) -> dict[str, Any]:
    """TikTok Events 2.0 `user`: email, phone and external_id hashed; click id, cookie, IP and user
    agent unhashed. Name and address fields are not sent: only integrators document them (§3)."""
    region = user.phone_region or default_region
    values = {
        "email": _hashed(user.email, normalize_email_tiktok),
        "phone": _hashed(user.phone, normalize_phone_tiktok, region),
        "external_id": _hashed(user.external_id, normalize_external_id),
        "ttclid": user.ttclid,
        "ttp": user.ttp,
        "ip": user.ip,
        "user_agent": user.user_agent,
    }
    return {key: value for key, value in values.items() if value}
