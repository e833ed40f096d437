"""Phone normalisation of the identity graph: one memo entry per number in E.164 form."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from leadloop.conversions.normalize import normalize_phone_e164
from leadloop.identity import normalize
from leadloop.identity.normalize import international_e164, normalize_phone

REGIONS = st.sampled_from([None, "US", "GB", "DE", "BR", "IN", "FR"])
E164 = st.from_regex(r"\+[1-9][0-9]{6,14}", fullmatch=True)
LOOSE = st.builds(
    lambda country, number, spacer: f"+{country}{spacer}{number}",
    st.sampled_from(["1", "44", "49", "55", "91", "33", "7", "0", "999"]),
    st.text("0123456789", min_size=0, max_size=14),
    st.sampled_from(["", " ", "-", " (0) "]),
)


@settings(max_examples=500)
@given(E164, REGIONS)
def test_the_region_does_not_change_a_number_in_e164_form(phone: str, region: str | None) -> None:
    # Its memo entry is keyed without the region: the uncached parse must agree.
    parse = normalize._e164.__wrapped__
    assert parse(phone, region) == parse(phone, None)


@settings(max_examples=300)
@given(st.one_of(E164, LOOSE), REGIONS)
def test_normalize_phone_is_the_uncached_parse_in_the_given_region(
    phone: str, region: str | None
) -> None:
    # `+0 (0) 2690000` is read as `+2690000` in GB and as nothing without a region: looser `+`
    # forms keep their region in the memo key.
    assert normalize_phone(phone, region) == normalize._e164.__wrapped__(phone, region)


@settings(max_examples=300)
@given(E164)
def test_international_e164_agrees_with_the_conversions_normaliser(phone: str) -> None:
    # The conversions stage makes E.164-shaped trait phones canonical with the identity memo.
    assert international_e164(phone) == normalize_phone_e164(phone)


def test_a_national_number_still_needs_its_region() -> None:
    assert normalize_phone("020 7946 0958", "GB") == "+442079460958"
    assert normalize_phone("020 7946 0958", None) is None
    assert normalize_phone("+44 20 7946 0958", "US") == "+442079460958"
    # phonenumbers reads it as `+2690000`, a Comoros number too short to dial from outside.
    assert normalize_phone("+0 (0) 2690000", "GB") is None


def test_a_number_dialable_only_within_its_area_is_no_phone() -> None:
    """`555-1212` was accepted as `+15551212`, a number nobody has, which every US profile with
    that local number shared as an identity (and sent to the ad platforms as a match key)."""
    for local in ("555-1212", "+1 555 1212", "5551212"):
        assert normalize_phone(local, "US") is None, local
        assert normalize_phone_e164(local, "US") is None, local
    assert normalize_phone("202-555-1212", "US") == "+12025551212"
    assert normalize_phone_e164("202-555-1212", "US") == "+12025551212"
