"""The shortcuts taken for throughput give the same bytes as the full path.

`user_identifiers` + `hash_for_platform` skip `phonenumbers` for E.164 phones, the Meta builder
takes enqueue-time digests as they are, names in ASCII skip the per-character Unicode lookup,
and hashes are memoised: each is checked here against the slow path it replaces.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Any

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from leadloop.conversions import identifiers as identifiers_module
from leadloop.conversions import normalize as norm
from leadloop.conversions.capture import MatchKeys
from leadloop.conversions.config import IDENTIFIERS, Mapping
from leadloop.conversions.destinations import DestinationConfig
from leadloop.conversions.fields import contents_of, order_id_in
from leadloop.conversions.identifiers import for_destination, hash_for_platform, user_identifiers
from leadloop.conversions.model import Conversion, MetaDestination, UserIdentifiers
from leadloop.conversions.normalize import (
    hash_identifier,
    hash_user_data_meta,
    is_digest,
    normalize_name_meta,
    normalize_phone_meta,
    sha256_hex,
)
from leadloop.conversions.payloads import build_event
from leadloop.identity.model import Profile
from leadloop.identity.normalize import normalize_email

ALL = frozenset({"email", "phone", "name", "external_id", "click_ids", "browser_ids", "ip"})


def profile(**traits: object) -> Profile:
    return Profile(
        id="p1",
        workspace_id="default",
        traits=dict(traits),
        first_seen=1,
        last_seen=1,
        last_activity=1,
    )


def test_an_e164_looking_trait_phone_is_made_canonical_first() -> None:
    # `+44 0…` keeps the trunk 0 after the country code: phonenumbers drops it. The shortcut in
    # `hash_for_platform` must not send `4402079460958`.
    user = user_identifiers(profile(phone="+4402079460958"), [], MatchKeys(), ALL)
    assert user.phone == "+442079460958"
    meta = hash_for_platform(user, "meta", None, True)
    assert meta.phone == sha256_hex("442079460958")
    assert meta.phone == sha256_hex(normalize_phone_meta("+4402079460958") or "")


def test_an_impossible_e164_looking_trait_phone_is_not_sent() -> None:
    user = user_identifiers(profile(phone="+1000000"), [], MatchKeys(), ALL)
    assert user.phone is None


def test_identity_graph_phones_are_taken_as_canonical() -> None:
    identities = [{"type": "phone", "value": "+16505551212"}]
    user = user_identifiers(profile(phone="+4402079460958"), identities, MatchKeys(), ALL)
    assert user.phone == "+16505551212"
    assert hash_for_platform(user, "meta", None, True).phone == sha256_hex("16505551212")
    assert hash_for_platform(user, "google", None, True).phone == sha256_hex("+16505551212")


def test_national_trait_phones_still_use_the_destination_region() -> None:
    user = user_identifiers(profile(phone="020 7946 0958"), [], MatchKeys(), ALL)
    assert user.phone == "020 7946 0958"
    assert hash_for_platform(user, "meta", "GB", True).phone == sha256_hex("442079460958")


def test_a_national_trait_phone_is_read_in_the_profiles_own_country() -> None:
    """`country: GB` with `020 7946 0958` was read in the destination's region (US: nothing,
    or another number); the country trait names the person's own."""
    for country in ("GB", "gb", " GB ", "UK", "United Kingdom"):
        user = user_identifiers(
            profile(phone="020 7946 0958", country=country), [], MatchKeys(), ALL
        )
        assert user.phone_region == "GB"
        for platform, expected in (("meta", "442079460958"), ("google", "+442079460958")):
            assert hash_for_platform(user, platform, "US", True).phone == sha256_hex(expected)
    for country in ("Atlantis", "EU", ""):  # no country: the destination's region
        user = user_identifiers(
            profile(phone="020 7946 0958", country=country), [], MatchKeys(), ALL
        )
        assert user.phone_region is None
    user = user_identifiers(profile(phone="+16505551212", country="GB"), [], MatchKeys(), ALL)
    assert user.phone_region is None  # a number with its country code needs none


@pytest.mark.parametrize(
    "typed",
    ["anna@xn--bcher-kva.example", "anna@bücher.example.", " Anna@BU\u0308CHER.example"],
)
@pytest.mark.parametrize("platform", ["meta", "google", "tiktok"])
def test_a_trait_email_hashes_as_the_identity_graphs_email_does(typed: str, platform: str) -> None:
    # A profile with no email identity falls back to its `email` trait: spelt with a punycode
    # domain, a root dot or a decomposed `ü`, it is the person's one identity email, and must
    # hash as that does, not as it was typed.
    identity = normalize_email(typed)
    assert identity == "anna@bücher.example"
    from_identity = user_identifiers(
        profile(), [{"type": "email", "value": identity}], MatchKeys(), ALL
    )
    from_trait = user_identifiers(profile(email=typed), [], MatchKeys(), ALL)
    hashed = hash_for_platform(from_trait, platform, None, True).email
    assert hashed is not None
    assert hashed == hash_for_platform(from_identity, platform, None, True).email


def test_a_trait_email_the_identity_graph_refuses_still_gets_the_platforms_rule() -> None:
    # Not every value the graph refuses is useless to a platform (Meta's SDK takes any
    # `.+@.+\..+`): such a trait is sent as before, by the platform's own rule.
    user = user_identifiers(profile(email="ana silva@example.com"), [], MatchKeys(), ALL)
    assert user.email == "ana silva@example.com"


def _slow_name(name: str) -> str | None:
    cleaned = unicodedata.normalize("NFC", name).strip().lower()
    kept = "".join(ch for ch in cleaned if ch.isspace() or unicodedata.category(ch)[0] in "LM")
    return " ".join(kept.split()) or None


@given(st.text(alphabet=st.characters(max_codepoint=127)))
def test_ascii_names_match_the_unicode_path(name: str) -> None:
    assert normalize_name_meta(name) == _slow_name(name)


def test_enqueue_digests_are_sent_as_they_are_and_raw_values_are_hashed() -> None:
    raw = UserIdentifiers(email="Jo@Example.com", phone="+16505551212", first_name="Jo")
    hashed = hash_for_platform(raw, "meta", None, True)
    assert hash_user_data_meta(hashed) == hash_user_data_meta(raw)
    assert hash_user_data_meta(hashed)["em"] == [sha256_hex("jo@example.com")]
    # An uppercase or padded digest is still recognised (and lower-cased), never re-hashed.
    upper = UserIdentifiers(email=f" {sha256_hex('jo@example.com').upper()} ")
    assert hash_user_data_meta(upper)["em"] == [sha256_hex("jo@example.com")]


def test_memoised_hashes_equal_fresh_ones_per_normaliser_and_argument() -> None:
    norm.clear_memo()
    first = hash_identifier("020 7946 0958", normalize_phone_meta, "GB")
    assert first == sha256_hex("442079460958")
    assert hash_identifier("020 7946 0958", normalize_phone_meta, "GB") == first
    # Same text, other region: another entry, not the memoised one.
    assert hash_identifier("020 7946 0958", normalize_phone_meta, "US") is None
    assert hash_identifier("Jo", normalize_name_meta) == sha256_hex("jo")
    norm.clear_memo()


@given(
    st.sampled_from(
        [
            ("ana.Silva+promo@Example.com ", norm.normalize_email_meta, None),
            ("020 7946 0958", normalize_phone_meta, "GB"),
            ("(650) 555-1212", normalize_phone_meta, "US"),
            ("  User-42 ", norm.normalize_external_id, None),
            ("not an email", norm.normalize_email_meta, None),
        ]
    ),
    st.booleans(),
)
def test_unmemoised_hashes_equal_memoised_ones(case: tuple[str, Any, Any], cold: bool) -> None:
    # One-per-person values (email, phone, external id) skip the memo: same digest, or the same
    # None, and nothing is added to the memo.
    raw, normalize, arg = case
    if cold:
        norm.clear_memo()
    assert hash_identifier(raw, normalize, arg, memo=False) == hash_identifier(raw, normalize, arg)
    norm.clear_memo()
    hash_identifier(raw, normalize, arg, memo=False)
    assert norm._memo == {}


_DIGEST = re.compile(r"[0-9a-f]{64}")


@given(
    st.one_of(
        st.text(alphabet="0123456789abcdefABCDEF \t", min_size=62, max_size=66),
        st.text(min_size=64, max_size=64),
        st.binary(min_size=32, max_size=32).map(bytes.hex),
    )
)
def test_the_digest_check_accepts_exactly_lowercase_sha256_hex(value: str) -> None:
    # The C round trip (`bytes.fromhex(v).hex() == v`) against the regular expression it replaces.
    assert is_digest(value) == bool(_DIGEST.fullmatch(value))


def test_the_digest_check_rejects_near_misses() -> None:
    digest = sha256_hex("jo@example.com")
    assert is_digest(digest)
    for near in (digest.upper(), digest[:-1], digest + "0", digest[:-2] + " a", "é" + digest[1:]):
        assert not is_digest(near), near


def _meta_destination(**settings: Any) -> DestinationConfig:
    return DestinationConfig("meta", "meta", MetaDestination(pixel_id="1", **settings), "t")


def _raw_conversion(user: UserIdentifiers) -> Conversion:
    return Conversion(
        event_name="Purchase",
        event_time=1_800_000_000.0,
        event_id="order-o1-purchase",
        user=user,
        action_source="website",
        event_source_url="https://shop.test/checkout",
    )


USERS = st.builds(
    UserIdentifiers,
    email=st.sampled_from([None, "Jo@Example.com", " ana.silva+x@ex.com", "not an email"]),
    phone=st.sampled_from([None, "+16505551212", "+442079460958", "020 7946 0958"]),
    phone_region=st.sampled_from([None, "GB"]),
    first_name=st.sampled_from([None, "Jo", "Valéry", "O'Brien"]),
    last_name=st.sampled_from([None, "Silva", "  "]),
    city=st.sampled_from([None, "São Paulo"]),
    zip=st.sampled_from([None, "94025-1234"]),
    country=st.sampled_from([None, "US", "usa"]),
    external_id=st.sampled_from([None, " u-42 ", sha256_hex("u-42")]),
    fbc=st.sampled_from([None, "fb.1.1700000000000.abc"]),
    fbp=st.sampled_from([None, "fb.1.1700000000000.42"]),
    ip=st.sampled_from([None, "203.0.113.9"]),
    user_agent=st.sampled_from([None, "Mozilla/5.0"]),
)


@given(USERS, st.booleans(), st.sampled_from([None, "US", "GB"]))
def test_meta_user_data_built_at_enqueue_equals_the_two_pass_path(
    user: UserIdentifiers, hash_external_id: bool, region: str | None
) -> None:
    # `for_destination` builds Meta's `user_data` in one pass, with the E.164 shortcut; built
    # from the raw identifiers by the builder (every phone through `phonenumbers`) the event is
    # the same, and so are the coverage flags; nothing raw is left in the conversion.
    dest = _meta_destination(default_region=region, hash_external_id=hash_external_id)
    target = dest.destination
    assert isinstance(target, MetaDestination)
    mapping = Mapping(id="purchase", event_name="Purchase", track=("Order Completed",))
    conversion, flags = for_destination(_raw_conversion(user), dest, mapping, None)
    slow = build_event(_raw_conversion(user), target)
    assert build_event(conversion, target) == slow
    assert flags == (
        "em" in slow["user_data"],
        "ph" in slow["user_data"],
        bool(user.fbc),
        bool(user.fbp),
    )
    # The two-pass form (digests in `UserIdentifiers`, read again by the builder) agrees too.
    hashed = hash_for_platform(user, "meta", region, hash_external_id)
    assert build_event(msgspec.structs.replace(_raw_conversion(user), user=hashed), target) == slow
    stored = msgspec.json.encode(conversion)
    for raw in (user.email, user.phone, user.first_name, user.city):
        if raw and raw.strip():
            assert raw.encode() not in stored


def _identifiers_by_dict(person: Profile, *sources: Any) -> UserIdentifiers:
    # The plain form `user_identifiers` replaced: every wanted field looked up, then one struct.
    identities, keys, wanted = sources
    traits = person.traits
    by_type: dict[str, str] = {}
    for identity in identities:
        by_type.setdefault(identity["type"], identity["value"])
    t = _identifiers_trait
    values: dict[str, Any] = {}
    if "email" in wanted:
        values["email"] = by_type.get("email") or t(traits, "email")
    if "phone" in wanted:
        raw_phone = t(traits, "phone")
        national = raw_phone is not None and not raw_phone.startswith("+")
        values["phone"] = (
            raw_phone if national else by_type.get("phone") or _identifiers_phone(raw_phone)
        )
    if "name" in wanted:
        first, last = t(traits, "firstName", "first_name"), t(traits, "lastName", "last_name")
        full = None if first or last else t(traits, "name")
        if full and len(full.split()) == 2:
            first, last = full.split()
        values.update(first_name=first, last_name=last)
    if "address" in wanted:
        values.update(
            city=t(traits, "address.city", "city"),
            state=t(traits, "address.state", "state"),
            zip=t(traits, "address.postalCode", "address.postal_code", "postalCode", "zip"),
            country=t(traits, "address.country", "country"),
        )
    if "date_of_birth" in wanted:
        values["date_of_birth"] = t(traits, "birthday", "date_of_birth")
    if "gender" in wanted:
        values["gender"] = t(traits, "gender")
    if "external_id" in wanted:
        values["external_id"] = by_type.get("user_id")
    if "lead_id" in wanted:
        values["lead_id"] = keys.lead_id
    if "click_ids" in wanted:
        values.update(fbc=keys.fbc, gclid=keys.gclid, gbraid=keys.gbraid, wbraid=keys.wbraid)
        values["ttclid"] = keys.ttclid
    if "browser_ids" in wanted:
        values.update(fbp=keys.fbp, ttp=keys.ttp)
    if "ip" in wanted:
        values["ip"] = keys.ip
    if "user_agent" in wanted:
        values["user_agent"] = keys.user_agent
    return UserIdentifiers(**values)


_identifiers_trait = identifiers_module._trait
_identifiers_phone = identifiers_module._canonical_phone
TRAIT_NAMES = ("email", "phone", "firstName", "last_name", "name", "city", "zip", "country")
TRAIT_NAMES += ("birthday", "gender", "state", "address", "postalCode")
_MAYBE = st.sampled_from([None, "x1", " 12345 ", "", "Ana Silva"])


@given(
    st.dictionaries(
        st.sampled_from(TRAIT_NAMES),
        st.one_of(_MAYBE, st.just({"city": "Lyon", "postalCode": "69001"}), st.integers(0, 99)),
    ),
    st.lists(
        st.fixed_dictionaries(
            {
                "type": st.sampled_from(["email", "phone", "user_id"]),
                "value": st.sampled_from(["v1", "v2"]),
            }
        ),
        max_size=4,
    ),
    st.builds(
        MatchKeys,
        fbc=_MAYBE,
        fbp=_MAYBE,
        gclid=_MAYBE,
        gbraid=_MAYBE,
        wbraid=_MAYBE,
        ttclid=_MAYBE,
        ttp=_MAYBE,
        ip=_MAYBE,
        user_agent=_MAYBE,
        lead_id=_MAYBE,
    ),
    st.frozensets(st.sampled_from(sorted(IDENTIFIERS))),
)
def test_user_identifiers_equal_the_plain_dict_form(
    traits: dict[str, Any],
    identities: list[dict[str, str]],
    keys: MatchKeys,
    wanted: frozenset[str],
) -> None:
    person = profile(**traits)
    expected = _identifiers_by_dict(person, identities, keys, wanted)
    assert user_identifiers(person, identities, keys, wanted) == expected


def _product_id_oracle(product: dict[str, Any]) -> str | None:
    """The product id as `contents_of` picked it before it was written as a loop."""
    return next(
        (
            str(product[k])
            for k in ("product_id", "sku", "id")
            if isinstance(product.get(k), str | int) and str(product[k]).strip()
        ),
        None,
    )


_ID_VALUES = st.one_of(
    st.none(), st.sampled_from(["", " ", "sku-1", " p 2 "]), st.integers(-5, 5), st.booleans()
)


@given(
    st.lists(
        st.dictionaries(
            st.sampled_from(["product_id", "sku", "id", "quantity", "price", "name"]),
            _ID_VALUES,
        ),
        max_size=5,
    )
)
def test_contents_pick_the_product_id_as_before(products: list[dict[str, Any]]) -> None:
    body = {"properties": {"products": products, "order_id": "o-1"}}
    expected = [i for i in map(_product_id_oracle, products) if i is not None]
    assert [c.id for c in contents_of(body, "properties.products")] == expected
    # Dotted paths are split once per path (memoised): repeated reads give the same values.
    assert order_id_in(body) == order_id_in(body) == "o-1"


def test_a_national_trait_phone_is_not_taken_from_the_graphs_engine_wide_reading() -> None:
    """The identity graph reads a national phone in `LEADLOOP_DEFAULT_REGION`: `2079460958`
    became `+12079460958` under US, and that reading won over the profile's `country: GB` and
    the destination's `default_region`. A number given with `+` reads the same everywhere."""
    engine_us = [{"type": "phone", "value": "+12079460958"}]
    user = user_identifiers(profile(phone="2079460958", country="GB"), engine_us, MatchKeys(), ALL)
    for platform, expected in (("meta", "442079460958"), ("google", "+442079460958")):
        assert hash_for_platform(user, platform, "US", True).phone == sha256_hex(expected)
    # No country trait: the destination's region, then the engine's (the caller's fallback).
    engine_gb = [{"type": "phone", "value": "+446505551212"}]
    user = user_identifiers(profile(phone="(650) 555-1212"), engine_gb, MatchKeys(), ALL)
    assert hash_for_platform(user, "tiktok", "US", True).phone == sha256_hex("+16505551212")
    assert hash_for_platform(user, "meta", "GB", True).phone == sha256_hex("446505551212")
    target = MetaDestination(pixel_id="1", default_region="US")
    dest = DestinationConfig(id="meta", platform="meta", destination=target)
    base = Conversion(event_name="Lead", event_time=1.0, event_id="e1", user=user)
    conversion, _ = for_destination(base, dest, Mapping(id="m", event_name="Lead"), "GB")
    assert conversion.meta_user_data["ph"] == [sha256_hex("16505551212")]
    # Given with `+`: the graph's reading is the same number, and is still taken as it is.
    user = user_identifiers(profile(phone="+1 650 555 1212"), engine_gb, MatchKeys(), ALL)
    assert user.phone == "+446505551212"
