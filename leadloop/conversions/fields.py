"""What a mapping reads from an event and a profile to build its `Conversion`: the event id,
order id, value, currency and products of the event's body, the action source, and whether
the profile gave advertising consent. Pure functions; `service` calls them per mapping.
"""

from __future__ import annotations

import math
import re
from typing import Any

from leadloop.conversions.capture import MatchKeys, as_consent, consent_signal
from leadloop.conversions.config import ConversionsConfig, Mapping, field_value
from leadloop.conversions.model import ActionSource, Content, UserIdentifiers
from leadloop.conversions.payloads import derive_event_id
from leadloop.digest import sha256_hex
from leadloop.digits import ascii_digits
from leadloop.identity.model import Profile
from leadloop.log.model import Event
from leadloop.scoring.match import to_number

WITHDRAWN = "advertising consent withdrawn"


def advertising_consent(
    config: ConversionsConfig, profile: Profile, keys: MatchKeys
) -> tuple[bool | None, str | None]:
    """The profile's advertising consent signal and, when it must not be forwarded, why.

    The signal is the latest explicit one from a consent trait or an event's `context.consent`
    (True granted, False denied), None when there is none. It is what Google's consent fields
    say (`ConversionStage`): set from a real signal only, never made up (capi.md §6.4). An
    explicit denial is never forwarded, `required` or not; no signal at all is no consent
    unless `consent.required` is false."""
    signals: list[tuple[float, bool]] = []
    for trait in config.consent.traits:
        value = as_consent(profile.traits.get(trait))
        if value is not None:
            signals.append((profile.trait_times.get(trait, 0.0), value))
    if keys.consent is not None:
        signals.append((keys.consent_at or 0.0, keys.consent))
    if not signals:
        if not config.consent.required:
            return None, None
        sources = [f"trait {t}" for t in config.consent.traits] + [
            f"context.consent.{p}" for p in config.consent.context
        ]
        return None, f"no advertising consent ({' or '.join(sources)} is not true)"
    _, latest = max(signals, key=lambda s: s[0])
    if not latest:
        return False, WITHDRAWN
    return True, None


def states_denial(config: ConversionsConfig, event: Event) -> bool:
    """Whether this event itself says no to advertising: an identify setting a consent trait to
    a denial, or a denial under `context.consent`. Only such an event can withdraw consent, so
    only it makes the stage look for conversions still waiting to be sent."""
    if event.type == "identify" and any(
        as_consent(event.traits.get(trait)) is False for trait in config.consent.traits
    ):
        return True
    return consent_signal(event.body, config.consent.context) is False


def limited_data_use(config: ConversionsConfig, profile: Profile) -> bool:
    """Whether the profile's `ldu_trait` turns on Meta LDU and TikTok `limited_data_use`.

    Read like a consent trait: a CRM sends its flags as text (HubSpot's property values are
    always strings), and a California contact flagged `"true"` must not be sent without LDU."""
    trait = config.ldu_trait
    return trait is not None and as_consent(profile.traits.get(trait)) is True


MAX_ID = 200
"""Characters of an order or event id taken as they are; a longer one (a message may hold
kilobytes) becomes a digest of it. The event id is part of two PostgreSQL index keys (the
conversion log's and the outbox row's), which hold about 2.7 KB: a longer key failed the
processor's batch on every retry, and the log stopped for every workspace."""


def bounded_id(value: str) -> str:
    """`value`, or a digest of it when it is longer than `MAX_ID`."""
    return value if len(value) <= MAX_ID else sha256_hex(value)[:32]


def safe_order_id(value: str | None) -> str | None:
    """An order id as it may leave: `bounded_id`, and a digest when it holds an `@`. Shops that
    number orders by the buyer's email sent that email in clear as Meta's and TikTok's
    `order_id` and Google's `transactionId` (which Google refuses, ORDER_ID_CONTAINS_PII).
    The digest is the one `event_id_for` puts in the event id, so ids stay as they were."""
    if value is None:
        return None
    bounded = bounded_id(value)
    return sha256_hex(bounded)[:32] if "@" in bounded else bounded


def event_id_for(source: str, object_id: str, stage: str) -> str:
    object_id = bounded_id(object_id)
    try:
        return derive_event_id(source, object_id, stage)
    except ValueError:
        # An id with whitespace or an `@` must not reach Google's transactionId (PII rule).
        digest = sha256_hex(object_id)[:32]
        return derive_event_id(source, digest, stage)


def text_at(body: dict[str, Any], path: str | None) -> str | None:
    if path is None:
        return None
    return id_text(field_value(body, path))


def id_text(value: Any) -> str | None:
    """An id (order, product, event) as text: a number's digits, stripped text, else None.

    A whole number that went through a float (a CSV or spreadsheet import's 1001.0) is its
    digits: sent as `1001.0` it matched neither the pixel's nor the tag's order 1001."""
    if isinstance(value, float) and value.is_integer():  # False for nan and inf
        value = int(value)
    if isinstance(value, int | float) and not isinstance(value, bool):
        value = str(value)
    return value.strip() if isinstance(value, str) and value.strip() else None


def order_id_in(body: dict[str, Any]) -> str | None:
    for path in ("properties.order_id", "properties.orderId", "properties.checkout_id"):
        found = text_at(body, path)
        if found:
            return found
    return None


def value_of(body: dict[str, Any], mapping: Mapping) -> float | None:
    paths = [mapping.value] if mapping.value else []
    for path in paths:
        number = finite_number(field_value(body, path))
        if number is not None:
            return number
    return None


_GROUPED = re.compile(r"\s*[0-9]{1,3}(?:,[0-9]{3})+(?:\.[0-9]+)?\s*")
"""Commas as thousands separators: groups of three digits (`1,234.50`)."""


def finite_number(value: Any) -> float | None:
    """`to_number`, except that a text of hundreds of digits (which `float` reads as infinity)
    is no number: infinity goes out as JSON `null` and cannot be made an `int`. Nor is a text
    whose commas do not group thousands: `to_number` drops every comma, so a decimal comma
    (`42,50`, forty-two fifty in much of Europe) was sent as a value of 4250."""
    if isinstance(value, str):
        value = ascii_digits(value)  # as `to_number` reads it: `_GROUPED` is ASCII
        if value is None or ("," in value and not _GROUPED.fullmatch(value)):
            return None
    number = to_number(value)
    return number if number is not None and math.isfinite(number) else None


def currency_of(body: dict[str, Any], mapping: Mapping) -> str | None:
    if mapping.currency:
        found = text_at(body, mapping.currency)
        # ASCII: `str.isalpha` takes any script's letters (`ÄÖÜ`), no ISO 4217 code.
        if found and len(found) == 3 and found.isascii() and found.isalpha():
            return found.upper()
    return mapping.default_currency


_PRODUCT_IDS = ("product_id", "sku", "id")


def contents_of(body: dict[str, Any], path: str | None) -> tuple[Content, ...]:
    """Segment ecommerce `products[]`: `product_id` (or `sku`, `id`), `quantity`, `price`."""
    if path is None:
        return ()
    products = field_value(body, path)
    if not isinstance(products, list):
        return ()
    out: list[Content] = []
    for product in products[:1000]:
        if not isinstance(product, dict):
            continue
        ident = None
        for key in _PRODUCT_IDS:
            candidate = product.get(key)
            if isinstance(candidate, float) and candidate.is_integer():
                candidate = int(candidate)  # a spreadsheet's 42.0 is product 42 (`id_text`)
            if isinstance(candidate, str | int) and str(candidate).strip():
                ident = str(candidate)
                break
        if ident is None:
            continue
        quantity = finite_number(product.get("quantity"))
        price = finite_number(product.get("price"))
        name = product.get("name")
        category = product.get("category")
        out.append(
            Content(
                id=ident,
                quantity=max(1, int(quantity)) if quantity is not None else 1,
                item_price=price,
                name=name if isinstance(name, str) else None,
                category=category if isinstance(category, str) else None,
            )
        )
    return tuple(out)


def auto_source(is_stage: bool, user: UserIdentifiers, url: str | None) -> ActionSource:
    if is_stage:
        return "system_generated"
    # Meta requires user agent and URL for `website` events (capi.md §1.2): claim it only then.
    return "website" if user.user_agent and url else "other"
