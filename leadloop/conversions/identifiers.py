"""A profile's identifiers for one destination: gathered raw from the identity graph, the
traits and the captured match keys (`user_identifiers`), then normalised and hashed by the
platform's rules (`hash_for_platform`, `for_destination`).

Pure: no storage and no clock. Hashing happens here, before the outbox row is written, so raw
email, phone and names never reach a row that leaves the profile store (DESIGN.md, "Raw PII
never leaves").
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgspec

from leadloop.conversions import normalize as norm
from leadloop.conversions.capture import MatchKeys
from leadloop.conversions.config import Mapping
from leadloop.conversions.destinations import DestinationConfig
from leadloop.conversions.model import Conversion, MetaDestination, Platform, UserIdentifiers
from leadloop.identity.model import Profile
from leadloop.identity.normalize import international_e164


def _trait(traits: dict[str, Any], *names: str) -> str | None:
    for name in names:
        if "." in name:
            head, _, rest = name.partition(".")
            value: Any = traits.get(head)
            for part in rest.split("."):
                value = value.get(part) if isinstance(value, dict) else None
        else:
            value = traits.get(name)
        if value is None:
            continue
        if isinstance(value, int) and not isinstance(value, bool):
            value = str(value)
        elif isinstance(value, float) and value.is_integer():
            # A number that went through a float (a spreadsheet's ZIP or phone): `2139.0` is
            # the code 2139, not the text "2139.0". (`is_integer` is False for nan and inf.)
            value = str(int(value))
        if isinstance(value, str):
            stripped = value.strip()
            if stripped:
                return stripped
    return None


_NAME_TRAITS = frozenset({"firstName", "first_name", "lastName", "last_name", "name"})
_ADDRESS_TRAITS = frozenset({"address", "city", "state", "postalCode", "zip", "country"})
_BIRTH_TRAITS = frozenset({"birthday", "date_of_birth"})
_NO_IDS = (None, None, None, None)
"""The top-level traits each group below reads: a profile with none of them skips the group
(a conversion is built for every mapped event, and most profiles have no address)."""


def user_identifiers(
    profile: Profile,
    identities: list[dict[str, str]],
    keys: MatchKeys,
    wanted: frozenset[str],
) -> UserIdentifiers:
    """The raw identifiers of a profile, limited to the mapping's `identifiers`.

    (This runs for every mapped event. The fields most people have go in one keyword call and
    the rest only when set: a `msgspec` struct built with all 21 keywords took 1.9 µs against
    0.2 µs with 9, and each trait group is skipped when the profile has none of its traits.)
    """
    by_type: dict[str, str] = {}
    for identity in identities:
        by_type.setdefault(identity["type"], identity["value"])
    traits = profile.traits
    email = phone = first = last = city = state = postal = country = birth = gender = None
    if "email" in wanted:
        email = by_type.get("email") or _trait_email(traits)
    if "phone" in wanted:
        # Identity-graph phones are E.164 as `phonenumbers` formats them; a trait is raw text.
        # The graph reads a national number in the engine-wide `LEADLOOP_DEFAULT_REGION`, so
        # for one written without `+` the trait itself is kept: it is read per destination,
        # in the profile's country, else the destination's region, else the engine's.
        raw_phone = _trait(traits, "phone")
        if raw_phone is not None and not raw_phone.startswith("+"):
            phone = raw_phone
        else:
            phone = by_type.get("phone") or _canonical_phone(raw_phone)
    phone_region = None
    if phone is not None and not phone.startswith("+"):
        # A national number is read in the person's own country when the profile names one
        # (`country: GB`), not in the destination's `default_region` that suits most people.
        named = _trait(traits, "address.country", "country")
        phone_region = None if named is None else norm.normalize_country_google(named)
    if "name" in wanted and not _NAME_TRAITS.isdisjoint(traits):
        first = _trait(traits, "firstName", "first_name")
        last = _trait(traits, "lastName", "last_name")
        full = None if first or last else _trait(traits, "name")
        if full and len(full.split()) == 2:
            first, last = full.split()
    if "address" in wanted and not _ADDRESS_TRAITS.isdisjoint(traits):
        city = _trait(traits, "address.city", "city")
        state = _trait(traits, "address.state", "state")
        postal = _trait(traits, "address.postalCode", "address.postal_code", "postalCode", "zip")
        country = _trait(traits, "address.country", "country")
    if "date_of_birth" in wanted and not _BIRTH_TRAITS.isdisjoint(traits):
        birth = _trait(traits, "birthday", "date_of_birth")
    if "gender" in wanted and "gender" in traits:
        gender = _trait(traits, "gender")
    clicks = "click_ids" in wanted
    browsers = "browser_ids" in wanted
    user = UserIdentifiers(
        email=email,
        phone=phone,
        first_name=first,
        last_name=last,
        external_id=by_type.get("user_id") if "external_id" in wanted else None,
        fbc=keys.fbc if clicks else None,
        fbp=keys.fbp if browsers else None,
        ip=keys.ip if "ip" in wanted else None,
        user_agent=keys.user_agent if "user_agent" in wanted else None,
    )
    lead_id = keys.lead_id if "lead_id" in wanted else None
    # Trait values are stripped text or None; captured keys are passed on as they are.
    other_ids = lead_id is not None or (
        (clicks and (keys.gclid, keys.gbraid, keys.wbraid, keys.ttclid) != _NO_IDS)
        or (browsers and keys.ttp is not None)
    )
    if not (city or state or postal or country or birth or gender or other_ids or phone_region):
        return user
    rare = {
        "phone_region": phone_region,
        "city": city,
        "state": state,
        "zip": postal,
        "country": country,
        "date_of_birth": birth,
        "gender": gender,
        "lead_id": lead_id,
        "gclid": keys.gclid if clicks else None,
        "gbraid": keys.gbraid if clicks else None,
        "wbraid": keys.wbraid if clicks else None,
        "ttclid": keys.ttclid if clicks else None,
        "ttp": keys.ttp if browsers else None,
    }
    present = {name: value for name, value in rare.items() if value is not None}
    return msgspec.structs.replace(user, **present)


def _h(raw: str | None, normalize: Callable[..., str | None], *args: Any) -> str | None:
    """Hashed once per value (memoised in `normalize.hash_identifier`); digests pass through."""
    return None if raw is None else norm.hash_identifier(raw, normalize, *args)


def _h1(raw: str | None, normalize: Callable[..., str | None], *args: Any) -> str | None:
    """`_h` for values that are one per person (email, phone, external id): not memoised."""
    return None if raw is None else norm.hash_identifier(raw, normalize, *args, memo=False)


def _trait_email(traits: dict[str, Any]) -> str | None:
    """The `email` trait as the identity graph reads it, so the platforms' rules that follow
    hash it as they hash the identity's email of the same person."""
    raw = _trait(traits, "email")
    return None if raw is None else norm.as_identity_email(raw)


def _canonical_phone(raw: str | None) -> str | None:
    """An E.164-looking trait made canonical now (`+4402079460958` is `+442079460958`; `+1000000`
    is no number), so that every E.164-shaped phone in `UserIdentifiers` from here on is what
    `phonenumbers` itself would output; other shapes wait for the destination's region.
    (The identity graph's memo: the `identify` that set the trait has usually parsed it.)"""
    if raw is not None and norm.E164_SHAPE.fullmatch(raw):
        return international_e164(raw)
    return raw


def _phone(
    raw: str, form: Callable[[str, str | None], str | None], region: str | None
) -> str | None:
    """E.164-shaped phones are canonical (`user_identifiers`: the identity graph stores what
    `phonenumbers` formats, traits go through `_canonical_phone`), so Google's and TikTok's form
    (E.164 itself) is the value, skipping a ~15 µs parse; anything else goes through the full
    normaliser. (Meta's form: `normalize.hash_user_data_meta` with `canonical_phones`.)"""
    if norm.E164_SHAPE.fullmatch(raw):
        return raw
    return form(raw, region)


def _first(values: dict[str, Any], key: str) -> str | None:
    found = values.get(key)
    return found[0] if found else None


def hash_for_platform(
    user: UserIdentifiers, platform: Platform, default_region: str | None, hash_external_id: bool
) -> UserIdentifiers:
    """The identifiers with every PII field replaced by the platform's normalised SHA-256 (the
    builders in `payloads` pass 64-hex values through), and fields the platform does not take
    dropped. Google's region and postal code stay clear text: Google wants them unhashed. The
    Google Ads API takes hashed email and phone only (capi.md §2.3), so no address for it."""
    region = user.phone_region or default_region
    if platform == "meta":
        # Meta's keys are hashed in one place, `hash_user_data_meta`; read back from its result.
        data = norm.hash_user_data_meta(
            user, default_region, hash_external_id=hash_external_id, canonical_phones=True
        )
        return UserIdentifiers(
            email=_first(data, "em"),
            phone=_first(data, "ph"),
            first_name=_first(data, "fn"),
            last_name=_first(data, "ln"),
            gender=_first(data, "ge"),
            date_of_birth=_first(data, "db"),
            city=_first(data, "ct"),
            state=_first(data, "st"),
            zip=_first(data, "zp"),
            country=_first(data, "country"),
            external_id=_first(data, "external_id"),
            ip=user.ip,
            user_agent=user.user_agent,
            fbc=user.fbc,
            fbp=user.fbp,
            lead_id=user.lead_id,
        )
    if platform in ("google", "google_ads"):
        first = _h(user.first_name, norm.normalize_given_name_google)
        last = _h(user.last_name, norm.normalize_family_name_google)
        country = norm.normalize_country_google(user.country) if user.country else None
        postal = norm.normalize_zip_google(user.zip, country) if user.zip else None
        # The address identifier needs all four parts; otherwise none of them is kept.
        address = platform == "google" and bool(first and last and country and postal)
        return UserIdentifiers(
            email=_h1(user.email, norm.normalize_email_google),
            phone=_h1(user.phone, _phone, norm.normalize_phone_google, region),
            first_name=first if address else None,
            last_name=last if address else None,
            country=country if address else None,
            zip=postal if address else None,
            ip=user.ip,
            user_agent=user.user_agent,
            gclid=user.gclid,
            gbraid=user.gbraid,
            wbraid=user.wbraid,
        )
    return UserIdentifiers(
        email=_h1(user.email, norm.normalize_email_tiktok),
        phone=_h1(user.phone, _phone, norm.normalize_phone_tiktok, region),
        external_id=_h1(user.external_id, norm.normalize_external_id),
        ip=user.ip,
        user_agent=user.user_agent,
        ttclid=user.ttclid,
        ttp=user.ttp,
    )


def for_destination(
    base: Conversion, dest: DestinationConfig, mapping: Mapping, default_region: str | None
) -> tuple[Conversion, tuple[bool, bool, bool, bool]]:
    """The conversion as it is stored for one destination (hashed, platform name), and its
    match-key coverage: (email hash, phone hash, click id, browser id).

    For Meta the hashed keys are built straight into its `user_data` (`meta_user_data`), and
    `user` keeps the unhashed ones alone: no raw email, phone or name stays in either."""
    target = dest.destination
    region = (target.default_region if target is not None else None) or default_region
    name = mapping.name_for(dest.platform)
    if isinstance(target, MetaDestination):
        raw = base.user
        data = norm.hash_user_data_meta(
            raw, region, hash_external_id=target.hash_external_id, canonical_phones=True
        )
        plain = UserIdentifiers(
            ip=raw.ip, user_agent=raw.user_agent, fbc=raw.fbc, fbp=raw.fbp, lead_id=raw.lead_id
        )
        conversion = msgspec.structs.replace(base, user=plain, event_name=name, meta_user_data=data)
        return conversion, ("em" in data, "ph" in data, bool(raw.fbc), bool(raw.fbp))
    user = hash_for_platform(base.user, dest.platform, region, True)
    conversion = msgspec.structs.replace(base, user=user, event_name=name)
    flags = (
        bool(user.email),
        bool(user.phone),
        bool(user.fbc or user.gclid or user.gbraid or user.wbraid or user.ttclid),
        bool(user.fbp or user.ttp),
    )
    return conversion, flags
