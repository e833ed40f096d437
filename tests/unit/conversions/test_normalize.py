"""Normalisation checked against the official SDKs as oracles (research/capi.md §8.1).

Oracles: Meta's `facebook-business` (`Normalize.normalize_field`) and Google's
`google-ads-datamanager-util` (`Formatter`). On clean inputs we must produce the same hash bytes;
each place where we deliberately differ has its own test saying why.
"""

from __future__ import annotations

import datetime as dt

import phonenumbers
import pycountry
import pytest
from facebook_business.adobjects.serverside.normalize import Normalize  # type: ignore[import-untyped]
from google.ads.datamanager_util.format import Encoding, Formatter
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from phonenumbers import PhoneNumberFormat, PhoneNumberType

from leadloop.conversions.capture import MatchKeys
from leadloop.conversions.identifiers import hash_for_platform, user_identifiers
from leadloop.conversions.model import UserIdentifiers
from leadloop.conversions.normalize import (
    hash_user_data_meta,
    hash_user_data_tiktok,
    hash_user_identifiers_google,
    normalize_city_meta,
    normalize_country_google,
    normalize_country_meta,
    normalize_date_of_birth_meta,
    normalize_email_google,
    normalize_email_meta,
    normalize_email_tiktok,
    normalize_gender_meta,
    normalize_name_google,
    normalize_name_meta,
    normalize_phone_e164,
    normalize_phone_google,
    normalize_phone_meta,
    normalize_phone_tiktok,
    normalize_state_meta,
    normalize_zip_google,
    normalize_zip_meta,
    sha256_hex,
)
from leadloop.identity.model import Profile

FORMATTER = Formatter()
MANY = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def meta_sdk(field: str, value: str) -> str | None:
    result: str | None = Normalize.normalize_field(field, value)
    return result


def ours(normalized: str | None) -> str | None:
    return sha256_hex(normalized) if normalized else None


# --- strategies --------------------------------------------------------------------------------

_LOCAL_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._+-"
_DOMAINS = ["gmail.com", "GMail.com", "googlemail.com", "example.com", "Example.CO.uk", "mail.de"]
_BLANKS = st.sampled_from(["", " ", "  ", "\t", " \n"])

emails = st.builds(
    lambda pre, local, domain, post: f"{pre}{local}@{domain}{post}",
    _BLANKS,
    st.text(_LOCAL_CHARS, min_size=1, max_size=20),
    st.sampled_from(_DOMAINS),
    _BLANKS,
)

_LETTERS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZéèáàçñöüøåÉÑÖÜÅ정민수"
words = st.text(_LETTERS, min_size=1, max_size=12)
names = st.builds(
    lambda pre, parts, post: pre + " ".join(parts) + post,
    _BLANKS,
    st.lists(words, min_size=1, max_size=3),
    _BLANKS,
)

_REGIONS = ["US", "GB", "DE", "FR", "IN", "BR", "JP", "AU", "ES", "IT", "MX", "NL", "PL", "KR"]
_REGIONS += ["ZA", "CA", "SE", "AR", "CN", "NG"]
_TYPES = [PhoneNumberType.MOBILE, PhoneNumberType.FIXED_LINE]


@st.composite
def phones(draw: st.DrawFn) -> tuple[phonenumbers.PhoneNumber, str]:
    """A plausible number of a region: the region's example with its last four digits varied."""
    region = draw(st.sampled_from(_REGIONS))
    example = phonenumbers.example_number_for_type(region, draw(st.sampled_from(_TYPES)))
    assert example is not None
    national = str(example.national_number)
    tail = draw(st.text("0123456789", min_size=4, max_size=4))
    number = phonenumbers.parse(f"+{example.country_code}{national[:-4]}{tail}", None)
    return number, region


def national_variants(number: phonenumbers.PhoneNumber) -> st.SearchStrategy[str]:
    national = phonenumbers.format_number(number, PhoneNumberFormat.NATIONAL)
    return st.sampled_from(
        [
            national,
            national.replace(" ", ""),
            national.replace(" ", ".").replace("-", "."),
            f"  {national} ",
            phonenumbers.format_number(number, PhoneNumberFormat.INTERNATIONAL),
            phonenumbers.format_number(number, PhoneNumberFormat.E164),
            phonenumbers.format_number(number, PhoneNumberFormat.RFC3966),
            "00" + phonenumbers.format_number(number, PhoneNumberFormat.E164)[1:],
        ]
    )


# --- email -------------------------------------------------------------------------------------


@MANY
@given(emails)
def test_email_meta_matches_sdk(email: str) -> None:
    assert ours(normalize_email_meta(email)) == meta_sdk("em", email)
    assert normalize_email_tiktok(email) == normalize_email_meta(email)


@MANY
@given(emails)
def test_email_google_matches_formatter(email: str) -> None:
    try:
        expected: str | None = FORMATTER.process_email_address(email, Encoding.HEX)
    except ValueError:
        expected = None  # e.g. `+tag@gmail.com`: nothing left of the local part
    assert ours(normalize_email_google(email)) == expected


def test_gmail_dots_and_plus_removed_only_for_google() -> None:
    # capi.md §0.1 / §2.4: the Data Manager rule, not the older dots-only client-library rule.
    assert normalize_email_google(" Jo.Hn+ads@GoogleMail.com ") == "john@googlemail.com"
    assert normalize_email_google("jo.hn+ads@gmail.co.uk") == "jo.hn+ads@gmail.co.uk"
    assert normalize_email_meta(" Jo.Hn+ads@Gmail.com ") == "jo.hn+ads@gmail.com"


def test_google_removes_intermediate_whitespace_where_formatter_rejects() -> None:
    # Deliberate: Google's doc says to trim intermediate whitespace; the Formatter raises instead.
    with pytest.raises(ValueError):
        FORMATTER.format_email_address("jane @example.com")
    assert normalize_email_google("jane @example.com") == "jane@example.com"


def test_snap_doc_email_example() -> None:
    # capi.md §5 (Snap doc, same rule as Meta): `Person@Example.com` → `542d2401…`.
    hashed = ours(normalize_email_meta("Person@Example.com"))
    assert hashed is not None and hashed.startswith("542d2401")


@pytest.mark.parametrize("bad", ["", "   ", "no-at-sign", "@example.com", "x@localhost"])
def test_unusable_emails_are_dropped(bad: str) -> None:
    assert normalize_email_meta(bad) is None
    assert normalize_email_google(bad) is None


# --- phone -------------------------------------------------------------------------------------


@MANY
@given(st.data())
def test_phone_matches_sdks_on_the_international_form(data: st.DataObject) -> None:
    """SDKs are right when given the international form; ours must reach the same bytes from any
    national form plus the default region (phonenumbers is the E.164 oracle, capi.md §8.1)."""
    number, region = data.draw(phones())
    international = phonenumbers.format_number(number, PhoneNumberFormat.INTERNATIONAL)
    written = data.draw(national_variants(number))
    assert ours(normalize_phone_meta(written, region)) == meta_sdk("ph", international)
    google = FORMATTER.process_phone_number(international, Encoding.HEX)
    assert ours(normalize_phone_google(written, region)) == google
    assert normalize_phone_tiktok(written, region) == normalize_phone_google(written, region)


@pytest.mark.parametrize(
    ("written", "region", "sdk_meta", "ours_meta"),
    [
        # capi.md §0.2 (vectors M15, M11): Meta's SDK drops the trunk 0 but adds no country code.
        ("020 7946 0958", "GB", "2079460958", "442079460958"),
        ("+49 (0)30 123456", "DE", "49030123456", "4930123456"),
    ],
)
def test_phone_without_country_code_differs_from_meta_sdk(
    written: str, region: str, sdk_meta: str, ours_meta: str
) -> None:
    # Deliberate: the SDK's bytes would never match the person's account; ours do.
    assert meta_sdk("ph", written) == sha256_hex(sdk_meta)
    assert normalize_phone_meta(written, region) == ours_meta


def test_phone_without_country_code_differs_from_google_formatter() -> None:
    # capi.md §2.4: Google's own doc example `(800)555-0100` (US) → `+18005550100`; the Formatter
    # gives `+8005550100` because it never adds a country code (vector G10), nor strips `00` (G12).
    assert FORMATTER.format_phone_number("(800)555-0100") == "+8005550100"
    assert normalize_phone_google("(800)555-0100", "US") == "+18005550100"
    assert FORMATTER.format_phone_number("0044 20 7946 0958") == "+00442079460958"
    assert normalize_phone_google("0044 20 7946 0958", "US") == "+442079460958"


def test_meta_doc_phone_example() -> None:
    # Meta doc: digits with country code, e.g. `16505551212`.
    assert normalize_phone_meta("+1 (650) 555-1212") == "16505551212"
    assert normalize_phone_meta("(650) 555-1212", "US") == "16505551212"
    assert normalize_phone_meta("16505551212") == "16505551212"


def test_snap_doc_phone_example() -> None:
    # capi.md §5: `+44 844 412 4653` → `448444124653` → `dc008fda…` (Snap uses Meta's form).
    assert normalize_phone_meta("+44 844 412 4653") == "448444124653"
    assert sha256_hex("448444124653").startswith("dc008fda")


@pytest.mark.parametrize("bad", ["", "n/a", "12", "555-0100"])
def test_unusable_phones_are_dropped(bad: str) -> None:
    assert normalize_phone_e164(bad) is None


# --- names, places, dates ----------------------------------------------------------------------


@MANY
@given(names)
def test_names_match_sdks_without_punctuation(name: str) -> None:
    assert ours(normalize_name_meta(name)) == meta_sdk("fn", name)
    assert ours(normalize_name_google(name)) == FORMATTER.process_given_name(name, Encoding.HEX)


def test_meta_doc_name_examples() -> None:
    # Meta doc: UTF-8 non-Latin names are valid as they are.
    assert normalize_name_meta(" Valéry ") == "valéry"
    assert normalize_name_meta("정") == "정"


def test_meta_names_drop_punctuation_where_sdk_keeps_it() -> None:
    # Deliberate (capi.md §9): Meta's doc says no punctuation; the Python SDK keeps it.
    assert meta_sdk("ln", "O'Brien") == sha256_hex("o'brien")
    assert normalize_name_meta("O'Brien") == "obrien"
    assert normalize_name_meta("Mary-Jane") == "maryjane"
    # Google's rule is lowercase + trim only, which is what its Formatter does.
    assert normalize_name_google(" O'Brien ") == "o'brien"


@MANY
@given(st.text(_LETTERS + " .-()0123456789", min_size=1, max_size=25))
def test_city_matches_meta_sdk(city: str) -> None:
    expected = meta_sdk("ct", city)
    assert ours(normalize_city_meta(city)) == (expected if expected != sha256_hex("") else None)


_US_CODES = ["ca", "ny", "tx", "wa", "fl", "dc", "pr"]


@MANY
@given(st.sampled_from(_US_CODES), st.booleans(), _BLANKS)
def test_state_codes_match_meta_sdk(code: str, upper: bool, blank: str) -> None:
    written = f"{blank}{code.upper() if upper else code}{blank}"
    assert ours(normalize_state_meta(written)) == meta_sdk("st", written)


def test_state_names_are_mapped_where_sdk_hashes_them_verbatim() -> None:
    # Deliberate (capi.md §9): Meta wants the 2-letter code; the SDK would hash `california`.
    assert meta_sdk("st", "California") == sha256_hex("california")
    assert normalize_state_meta("California") == "ca"
    assert normalize_state_meta("new york") == "ny"
    assert normalize_state_meta("Québec") == "qc"
    assert normalize_state_meta("Bayern") == "bayern"


zips = st.one_of(
    st.text("0123456789", min_size=5, max_size=5),
    st.builds(
        lambda a, b: f"{a}-{b}",
        st.text("0123456789", min_size=5, max_size=5),
        st.text("0123456789", min_size=4, max_size=4),
    ),
    st.sampled_from(["SW1A 1AA", "ec1a 1bb", "10115", "75008", "M5V 2T6"]),
)


@MANY
@given(zips, _BLANKS)
def test_zip_matches_meta_sdk_and_google_formatter(zip_code: str, blank: str) -> None:
    written = f"{blank}{zip_code}{blank}"
    assert ours(normalize_zip_meta(written)) == meta_sdk("zp", written)
    assert normalize_zip_google(written) == FORMATTER.process_postal_code(written)


def test_zip_rules_where_we_differ_from_meta_sdk() -> None:
    # Deliberate: the SDK keeps text before the first dash, which also cuts Poland's `00-950`.
    assert meta_sdk("zp", "00-950") == sha256_hex("00")
    assert normalize_zip_meta("00-950", "pl") == "00950"
    # and it keeps a dash-less US ZIP+4 whole, where Meta's doc says "first 5 digits".
    assert normalize_zip_meta("940251234", "US") == "94025"


def _zip_sent(zip_code: object, country: str | None) -> tuple[str | None, str | None]:
    """(Meta's `zp` digest, Google's `postalCode`) for a profile with these traits, through
    `user_identifiers` and both the per-platform hashing and the payload builders."""
    traits = {"firstName": "Jane", "lastName": "Doe", "zip": zip_code}
    if country is not None:
        traits["country"] = country
    person = Profile(
        id="p", workspace_id="w", traits=traits, first_seen=1, last_seen=1, last_activity=1
    )
    wanted = frozenset({"name", "address"})
    user = user_identifiers(person, [], MatchKeys(), wanted)
    meta = hash_user_data_meta(user).get("zp")
    assert hash_for_platform(user, "meta", None, True).zip == (meta[0] if meta else None)
    google = [i["address"] for i in hash_user_identifiers_google(user) if "address" in i]
    postal = hash_for_platform(user, "google", None, True).zip
    assert [a["postalCode"] for a in google] == ([postal] if postal else [])
    return (meta[0] if meta else None), postal


def test_a_zip_sent_as_a_number_keeps_its_digits_and_a_us_one_its_leading_zero() -> None:
    """A form or spreadsheet that stored `02139` as a number gave 2139 (Meta hashed `2139`,
    Google got `2139`), and 2139.0 was dropped. A US ZIP is five digits: shorter all-digit
    ones lost their leading zeros (00501 is the smallest); elsewhere the digits are the code."""
    for written in (2139, 2139.0, "2139", " 02139 "):
        assert _zip_sent(written, "US") == (sha256_hex("02139"), "02139"), written
    assert _zip_sent(501, "us") == (sha256_hex("00501"), "00501")
    for written in (1010, 1010.0, "1010"):  # Vienna: four digits, no leading zero lost
        assert _zip_sent(written, "AT") == (sha256_hex("1010"), "1010"), written
        assert _zip_sent(written, None) == (sha256_hex("1010"), None), (
            written
        )  # Google: no address without a country
    assert _zip_sent(94105.5, "US") == (None, None)  # not a postal code
    assert _zip_sent(True, "US") == (None, None)


_COUNTRIES = [country.alpha_2 for country in pycountry.countries]


@MANY
@given(st.sampled_from(_COUNTRIES), st.booleans(), _BLANKS)
def test_country_matches_sdks(code: str, lower: bool, blank: str) -> None:
    written = f"{blank}{code.lower() if lower else code}{blank}"
    assert ours(normalize_country_meta(written)) == meta_sdk("country", written)
    assert normalize_country_google(written) == FORMATTER.process_region_code(written)


def test_two_letters_that_are_no_country_are_not_sent() -> None:
    # Meta's SDK refuses a code pycountry does not list (capi.md §1.3); Google's regionCode is
    # ISO-3166-1 alpha-2 too (§2.4). (`UK` is a name for GB: `test_country_names_...`.)
    for written in ("EU", "XX", "XK", "AC"):
        with pytest.raises(TypeError):
            meta_sdk("country", written)
        assert normalize_country_meta(written) is None
        assert normalize_country_google(written) is None
    for code in _COUNTRIES:  # and every code pycountry lists is one
        assert normalize_country_meta(code) == code.lower()


@pytest.mark.parametrize(
    ("written", "expected"),
    [("f", "f"), (" F ", "f"), ("Female", "f"), ("m", "m"), ("MALE", "m")]
    # Meta takes `f` or `m` only: a word that merely starts with the letter is not a gender
    # (`Mx` is a title, `Mujer` is Spanish for woman), and a wrong gender is sent as a fact.
    + [(text, None) for text in ("Mx", "Mujer", "misc", "fluid", "unknown", "non-binary")],
)
def test_gender_is_f_or_m_or_not_sent(written: str, expected: str | None) -> None:
    assert normalize_gender_meta(written) == expected


@pytest.mark.parametrize(
    ("written", "code"),
    [
        ("Germany", "de"),
        (" germany ", "de"),
        ("Deutschland", "de"),
        ("DEU", "de"),
        ("United States", "us"),
        ("United States of America", "us"),
        ("USA", "us"),
        ("U.S.A.", "us"),
        ("U.S.", "us"),
        ("us", "us"),
        ("UK", "gb"),
        ("U.K.", "gb"),
        ("Great Britain", "gb"),
        ("United Kingdom", "gb"),
        ("England", "gb"),
        ("The Netherlands", "nl"),
        ("Holland", "nl"),
        ("Côte d'Ivoire", "ci"),
        ("Cote d’Ivoire", "ci"),
        ("South Korea", "kr"),
        ("Russia", "ru"),
        ("Türkiye", "tr"),
        ("Turkey", "tr"),
        ("España", "es"),
        ("Viet Nam", "vn"),
        ("DR Congo", "cd"),
        ("Democratic Republic of the Congo", "cd"),
        ("COD", "cd"),
        ("Republic of the Congo", "cg"),
        ("Congo Brazzaville", "cg"),
        ("COG", "cg"),
        ("CG", "cg"),
    ],
)
def test_country_names_become_iso_codes(written: str, code: str) -> None:
    """A CRM's country is often a name (`Germany`, `USA`): Meta hashes, and Google sends, the
    ISO-3166-1 alpha-2 code (capi.md §0.1, §1.3, §2.4). Dropping names lost the address match
    (Google's address identifier needs the region) and the country for a national phone."""
    assert normalize_country_meta(written) == code
    assert normalize_country_google(written) == code.upper()
    # Where the SDK can read the input at all, it agrees on the code.
    assert meta_sdk("country", code) == sha256_hex(code)


@pytest.mark.parametrize(
    "written",
    # `Korea` and `Congo` name two countries each: not guessed (ISO's `Congo` is the Republic,
    # but many who write it mean the DR Congo).
    [
        *("Atlantis", "Europe", "EU", "Georgia, USA", "Germany or France", "n/a", "-", "123"),
        *("Korea", "Congo", "the Congo", "CONGO"),
    ],
)
def test_unknown_country_names_are_not_sent(written: str) -> None:
    # Like every field that cannot be normalised: left out, never sent raw or guessed.
    assert normalize_country_meta(written) is None
    assert normalize_country_google(written) is None


def test_a_country_name_reaches_every_platform_form() -> None:
    person = Profile(
        id="p",
        workspace_id="w",
        traits={
            "firstName": "Jane",
            "lastName": "Doe",
            "zip": 2139,
            "country": "United States",
            "phone": "(650) 555-1212",
        },
        first_seen=1,
        last_seen=1,
        last_activity=1,
    )
    user = user_identifiers(person, [], MatchKeys(), frozenset({"name", "address", "phone"}))
    meta = hash_user_data_meta(user)
    assert meta["country"] == [sha256_hex("us")]
    assert meta["zp"] == [sha256_hex("02139")]  # a US ZIP that lost its zero, known as US now
    assert meta["ph"] == [sha256_hex("16505551212")]  # read in the profile's own country
    google = [i["address"] for i in hash_user_identifiers_google(user) if "address" in i]
    assert [(a["regionCode"], a["postalCode"]) for a in google] == [("US", "02139")]


@MANY
@given(st.dates(min_value=dt.date(1900, 1, 1), max_value=dt.date(2030, 12, 31)))
def test_date_of_birth_matches_meta_sdk_when_already_yyyymmdd(date: dt.date) -> None:
    compact = f"{date:%Y%m%d}"
    assert ours(normalize_date_of_birth_meta(compact)) == meta_sdk("db", compact)


def test_date_of_birth_is_reformatted_where_sdk_hashes_verbatim() -> None:
    # Deliberate: Meta wants YYYYMMDD; the SDK hashes `1997-02-16` as given (capi.md §1.3).
    assert normalize_date_of_birth_meta("1997-02-16") == "19970216"
    assert normalize_date_of_birth_meta("02/16/1997") is None  # ambiguous order: not sent
    assert normalize_date_of_birth_meta("1997-02-30") is None


# --- already hashed ----------------------------------------------------------------------------


@MANY
@given(st.text("0123456789abcdef", min_size=64, max_size=64), st.booleans())
def test_sha256_values_pass_through(digest: str, upper: bool) -> None:
    written = digest.upper() if upper else digest
    user = UserIdentifiers(email=written, phone=written, first_name=written, external_id=written)
    meta = hash_user_data_meta(user)
    assert meta["em"] == meta["ph"] == meta["fn"] == meta["external_id"] == [digest]
    assert meta_sdk("em", written) == digest
    google = hash_user_identifiers_google(user)
    assert google[:2] == [{"emailAddress": digest}, {"phoneNumber": digest}]
    tiktok = hash_user_data_tiktok(user)
    assert tiktok["email"] == tiktok["phone"] == tiktok["external_id"] == digest


def test_md5_looking_values_are_hashed_not_passed_through() -> None:
    # Deliberate: Meta's SDK passes 32-hex through as "MD5"; a dash-less UUID as external id would
    # then leave unhashed.
    uuid_hex = "0123456789abcdef0123456789abcdef"
    assert meta_sdk("external_id", uuid_hex) == uuid_hex
    meta = hash_user_data_meta(UserIdentifiers(external_id=uuid_hex))
    assert meta["external_id"] == [sha256_hex(uuid_hex)]


# --- user data per platform --------------------------------------------------------------------

PERSON = UserIdentifiers(
    email=" Jane.Doe+news@Gmail.com ",
    phone="(650) 555-1212",
    phone_region="US",
    first_name="Jane",
    last_name="O'Doe",
    city="San Francisco",
    state="California",
    zip="94105-1234",
    country="us",
    date_of_birth="1990-04-01",
    external_id="crm-42",
    lead_id="1234567890123456",
    gclid="Cj0KCQ",
    fbc="fb.1.1700000000000.AbCd",
    ttclid="tt-1",
    ip="203.0.113.9",
    user_agent="Mozilla/5.0",
)


def test_meta_user_data_hashes_country_and_zip_and_keeps_ids_plain() -> None:
    data = hash_user_data_meta(PERSON)
    assert data["em"] == [sha256_hex("jane.doe+news@gmail.com")]
    assert data["ph"] == [sha256_hex("16505551212")]
    assert data["country"] == [sha256_hex("us")]
    assert data["zp"] == [sha256_hex("94105")]
    assert data["st"] == [sha256_hex("ca")]
    assert data["ct"] == [sha256_hex("sanfrancisco")]
    assert data["db"] == [sha256_hex("19900401")]
    assert data["lead_id"] == "1234567890123456"
    assert data["fbc"] == PERSON.fbc
    assert data["client_ip_address"] == "203.0.113.9"


def test_meta_external_id_hashing_is_a_choice() -> None:
    assert hash_user_data_meta(PERSON, hash_external_id=False)["external_id"] == ["crm-42"]


def test_google_identifiers_send_region_and_postal_code_unhashed() -> None:
    ids = hash_user_identifiers_google(PERSON)
    assert ids[0] == {"emailAddress": sha256_hex("janedoe@gmail.com")}
    assert ids[1] == {"phoneNumber": sha256_hex("+16505551212")}
    address = ids[2]["address"]
    assert address["regionCode"] == "US"
    assert address["postalCode"] == "94105-1234"
    assert address["givenName"] == sha256_hex("jane")


def test_google_address_needs_all_four_parts() -> None:
    ids = hash_user_identifiers_google(UserIdentifiers(first_name="Jane", last_name="Doe"))
    assert ids == []


def test_tiktok_user_hashes_email_phone_external_id() -> None:
    user = hash_user_data_tiktok(PERSON)
    assert user["email"] == sha256_hex("jane.doe+news@gmail.com")
    assert user["phone"] == sha256_hex("+16505551212")
    assert user["external_id"] == sha256_hex("crm-42")  # trimmed, case kept (capi.md §3)
    assert user["ttclid"] == "tt-1"
    assert "first_name" not in user


@pytest.mark.parametrize(
    ("given", "family", "expected"),
    [
        ("Mrs. Jane", "Doe", ("jane", "doe")),
        ("Dr Jane", "Doe Jr.", ("jane", "doe")),
        ("Jane", "Doe, Jr", ("jane", "doe")),
        ("MR. John Paul", "Smith III", ("john paul", "smith")),
        ("Prof. Dr. Hans", "Doe PhD", ("hans", "doe")),
        # A title alone is the name there is; names that only start like one are names.
        ("Dr.", "Jr", ("dr.", "jr")),
        ("Msgr", "Junior", ("msgr", "junior")),
        ("Drew", "Ivory", ("drew", "ivory")),
    ],
)
def test_google_names_leave_out_titles_and_suffixes(
    given: str, family: str, expected: tuple[str, str]
) -> None:
    # Data Manager's rule (capi.md §2.4): given names without prefixes such as Mrs., family names
    # without suffixes such as Jr. Google hashes `jane` and `doe`: `mrs. jane` never matched.
    ids = hash_user_identifiers_google(
        UserIdentifiers(first_name=given, last_name=family, country="US", zip="94105")
    )
    address = ids[0]["address"]
    assert (address["givenName"], address["familyName"]) == tuple(map(sha256_hex, expected))
    user = UserIdentifiers(first_name=given, last_name=family, country="US", zip="94105")
    hashed = hash_for_platform(user, "google", None, True)
    assert (hashed.first_name, hashed.last_name) == tuple(map(sha256_hex, expected))


def test_us_territories_keep_us_zip_rules() -> None:
    """Puerto Rico (006xx-009xx) and the US Virgin Islands (008xx) have USPS ZIPs, the ones
    that start with zeros: a San Juan profile (`country: PR`) whose 00907 went through a number
    was sent as 907, and its ZIP+4 written without a dash was not cut to five digits."""
    for written in (907, "907", "00907"):
        assert _zip_sent(written, "PR") == (sha256_hex("00907"), "00907"), written
    assert _zip_sent(802, "VI") == (sha256_hex("00802"), "00802")
    assert normalize_zip_meta("009071234", "pr") == "00907"
