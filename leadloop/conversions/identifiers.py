"""A profile's identifiers for one destination: gathered raw from the identity graph, the
traits and the captured match keys (`user_identifiers`), then normalised and hashed by the
platform's rules (`hash_for_platform`, `for_destination`).

Pure: no storage and no clock. Hashing happens here, before the outbox row is written, so raw
email, phone and names never reach a row that leaves the profile store (DESIGN.md, "Raw PII
never leaves").
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import msgspec

from leadloop.conversions import normalize as norm
from leadloop.conversions.capture import MatchKeys
from leadloop.conversions.config import Mapping
from leadloop.conversions.destinations import DestinationConfig
from leadloop.conversions.model import Conversion, MetaDestination, Platform, UserIdentifiers
from leadloop.identity.model import Profile


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
        if isinstance(value, str):
            stripped = value.strip()
            if stripped:
                return stripped
    return None


_NAME_TRAITS = frozenset({"firstName", "first_name", "lastName", "last_name", "name"})
_ADDRESS_TRAITS = frozenset({"address", "city", "state", "postalCode", "zip", "country"})
"""The top-level traits each group below reads: a profile with none of them skips the group
(a conversion is built for every mapped event, and most profiles have no address)."""


def user_identifiers(
    profile: Profile,
    identities: list[dict[str, str]],
    keys: MatchKeys,
    wanted: frozenset[str],
) -> UserIdentifiers:
    """The raw identifiers of a profile, limited to the mapping's `identifiers`."""
    by_type: dict[str, str] = {}
    for identity in identities:
        by_type.setdefault(identity["type"], identity["value"])
    traits = profile.traits
    values: dict[str, Any] = {}
    if "email" in wanted:
        values["email"] = by_type.get("email") or _trait(traits, "email")
    if "phone" in wanted:
        # Identity-graph phones are E.164 as `phonenumbers` formats them; a trait is raw text.
        values["phone"] = by_type.get("phone") or _canonical_phone(_trait(traits, "phone"))
    if "name" in wanted and not _NAME_TRAITS.isdisjoint(traits):
        first = _trait(traits, "firstName", "first_name")
        last = _trait(traits, "lastName", "last_name")
        full = None if first or last else _trait(traits, "name")
        if full and len(full.split()) == 2:
            first, last = full.split()
        values.update(first_name=first, last_name=last)
    if "address" in wanted and not _ADDRESS_TRAITS.isdisjoint(traits):
        values.update(
            city=_trait(traits, "address.city", "city"),
            state=_trait(traits, "address.state", "state"),
            zip=_trait(traits, "address.postalCode", "address.postal_code", "postalCode", "zip"),
            country=_trait(traits, "address.country", "country"),
        )
    if "date_of_birth" in wanted:
        values["date_of_birth"] = _trait(traits, "birthday", "date_of_birth")
    if "gender" in wanted:
        values["gender"] = _trait(traits, "gender")
    if "external_id" in wanted:
        values["external_id"] = by_type.get("user_id")
    if "lead_id" in wanted:
        values["lead_id"] = keys.lead_id
    if "click_ids" in wanted:
        values.update(
            fbc=keys.fbc,
            gclid=keys.gclid,
            gbraid=keys.gbraid,
            wbraid=keys.wbraid,
            ttclid=keys.ttclid,
        )
    if "browser_ids" in wanted:
        values.update(fbp=keys.fbp, ttp=keys.ttp)
    if "ip" in wanted:
        values["ip"] = keys.ip
    if "user_agent" in wanted:
        values["user_agent"] = keys.user_agent
    return UserIdentifiers(**values)


def _h(raw: str | None, normalize: Callable[..., str | None], *args: Any) -> str | None:
    """Hashed once per value (memoised in `normalize.hash_identifier`); digests pass through."""
    return None if raw is None else norm.hash_identifier(raw, normalize, *args)


def _h1(raw: str | None, normalize: Callable[..., str | None], *args: Any) -> str | None:
    """`_h` for values that are one per person (email, phone, external id): not memoised."""
    return None if raw is None else norm.hash_identifier(raw, normalize, *args, memo=False)


_E164 = re.compile(r"\+[1-9]\d{6,14}")


def _canonical_phone(raw: str | None) -> str | None:
    """An E.164-looking trait made canonical now (`+4402079460958` is `+442079460958`; `+1000000`
    is no number), so that every E.164-shaped phone in `UserIdentifiers` from here on is what
    `phonenumbers` itself would output; other shapes wait for the destination's region."""
    if raw is not None and _E164.fullmatch(raw):
        return norm.normalize_phone_e164(raw)
    return raw


def _phone(
    raw: str, form: Callable[[str, str | None], str | None], region: str | None
) -> str | None:
    """E.164-shaped phones are canonical (`user_identifiers`: the identity graph stores what
    `phonenumbers` formats, traits go through `_canonical_phone`), so the platform form is derived
    directly, skipping a ~15 µs parse; anything else goes through the full normaliser."""
    if _E164.fullmatch(raw):
        return raw[1:] if form is norm.normalize_phone_meta else raw
    return form(raw, region)


_META_PLAIN_HASHED: tuple[tuple[str, Callable[[str], str | None]], ...] = (
    ("email", norm.normalize_email_meta),
    ("first_name", norm.normalize_name_meta),
    ("last_name", norm.normalize_name_meta),
    ("gender", norm.normalize_gender_meta),
    ("city", norm.normalize_city_meta),
    ("state", norm.normalize_state_meta),
    ("country", norm.normalize_country_meta),
    ("date_of_birth", norm.normalize_date_of_birth_meta),
)
"""Meta's hashed fields whose normaliser takes the value alone (phone and zip take more)."""
_PERSONAL = frozenset({"email"})
"""Of those, the ones that are one per person: hashed without the memo."""


def hash_for_platform(
    user: UserIdentifiers, platform: Platform, default_region: str | None, hash_external_id: bool
) -> UserIdentifiers:
    """The identifiers with every PII field replaced by the platform's normalised SHA-256 (the
    builders in `payloads` pass 64-hex values through), and fields the platform does not take
    dropped. Google's region and postal code stay clear text: Google wants them unhashed. The
    Google Ads API takes hashed email and phone only (capi.md §2.3), so no address for it."""
    region = user.phone_region or default_region
    if platform == "meta":
        values: dict[str, str | None] = {}
        for attr, normalize in _META_PLAIN_HASHED:  # only the fields that are set
            raw = getattr(user, attr)
            if raw is not None:
                values[attr] = norm.hash_identifier(raw, normalize, memo=attr not in _PERSONAL)
        if user.phone is not None:
            values["phone"] = norm.hash_identifier(
                user.phone, _phone, norm.normalize_phone_meta, region, memo=False
            )
        if user.zip is not None:
            country = norm.normalize_country_meta(user.country) if user.country else None
            values["zip"] = norm.hash_identifier(user.zip, norm.normalize_zip_meta, country)
        external = user.external_id
        if external is not None:
            values["external_id"] = (
                norm.hash_identifier(external, norm.normalize_external_id, memo=False)
                if hash_external_id
                else norm.normalize_external_id(external)
            )
        return UserIdentifiers(
            ip=user.ip,
            user_agent=user.user_agent,
            fbc=user.fbc,
            fbp=user.fbp,
            lead_id=user.lead_id,
            **values,
        )
    if platform in ("google", "google_ads"):
        first = _h(user.first_name, norm.normalize_name_google)
        last = _h(user.last_name, norm.normalize_name_google)
        country = norm.normalize_country_google(user.country) if user.country else None
        postal = norm.normalize_zip_google(user.zip) if user.zip else None
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
    match-key coverage: (email hash, phone hash, click id, browser id)."""
    target = dest.destination
    region = target.default_region if target is not None else None
    hash_external = target.hash_external_id if isinstance(target, MetaDestination) else True
    user = hash_for_platform(base.user, dest.platform, region or default_region, hash_external)
    conversion = msgspec.structs.replace(
        base, user=user, event_name=mapping.name_for(dest.platform)
    )
    flags = (
        bool(user.email),
        bool(user.phone),
        bool(user.fbc or user.gclid or user.gbraid or user.wbraid or user.ttclid),
        bool(user.fbp or user.ttp),
    )
    return conversion, flags
