"""Pure builders of platform request bodies, plus the checks that decide whether to send at all.

Field names follow research/capi.md exactly: Meta §1.2–1.4, Google Data Manager §2.2, TikTok §3;
the Google Ads API body (§2.3) is built in `google_ads`.
Bodies are plain dicts ready for JSON; they hold hashes, never raw email, phone or names.
The shell (outbox dispatcher) is expected to:

1. drop a conversion for a destination when `check_conversion` returns a reason (recorded, not
   retried): one too-old event would make Meta reject the whole batch (§1.1);
2. group the rest per destination with `split_batches(items, MAX_EVENTS[platform])`;
3. POST `build_request(...)` as JSON to `request_url(...)` with the platform's auth
   (Meta `?access_token=`, Google `Authorization: Bearer`, TikTok `Access-Token` header);
4. hand the response to `decide.classify_response`.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import hmac
import re
from collections.abc import Sequence
from typing import Any, TypeVar

from leadloop.conversions.google_ads import (
    build_click_conversion,
    click_id,
    upload_url,
    user_identifiers,
    wrap_google_ads_request,
)
from leadloop.conversions.model import (
    ActionSource,
    Conversion,
    Destination,
    GoogleAdsDestination,
    GoogleDestination,
    MetaDestination,
    Platform,
    TikTokDestination,
    platform_of,
)
from leadloop.conversions.normalize import (
    hash_user_data_meta,
    hash_user_data_tiktok,
    hash_user_identifiers_google,
)

MAX_EVENTS: dict[Platform, int] = {"meta": 1000, "google": 2000, "google_ads": 2000, "tiktok": 1000}
"""Events per request (capi.md §0.4): Meta 1,000, Data Manager and Ads API 2,000, TikTok 1,000."""

DAY = 86_400.0
META_AHEAD = 60.0
"""Meta refuses an `event_time` more than this many seconds ahead (RudderStack's rule, §1.1)."""
MAX_HOLD_DAYS = 7
"""How far ahead an event may be dated and still wait until it is due (`held_until`): a few
hours is clock skew or a milestone stamped ahead; beyond Meta's own 7-day window back it is a
wrong date, and waiting for it would only fill the outbox."""

SEND_MARGIN = 3600.0
"""The last hour of a platform's window is not used (`send_deadline`). An event checked just
inside it at the claim can be past it when the platform reads it: the request goes out later
(a batch bisected down to one event takes a dozen round trips), `event_time` is sent truncated
to the second, and clocks differ; and Meta refuses the whole request for one such event
(capi.md §1.1)."""

_SLUG = re.compile(r"[^a-z0-9]+")

T = TypeVar("T")


# --- ids and batching --------------------------------------------------------------------------


def derive_event_id(source: str, object_id: str, stage: str) -> str:
    """`{source}-{object}-{stage}` (capi.md §6.2), e.g. `hubspot-4711-marketing_qualified_lead`.

    Deterministic so that a retry, or a replay of the log, re-sends the same id and the platform
    dedups it. Source and stage are slugged (no `-` inside), so the id splits back unambiguously even
    when the object id has dashes; the object id keeps its case (Salesforce ids are case-sensitive).
    """
    source_slug = _slug(source)
    stage_slug = _slug(stage)
    object_part = object_id.strip()
    if not source_slug or not stage_slug or not object_part:
        raise ValueError("source, object id and stage must be non-empty")
    if "@" in object_part or _BLANK.search(object_part):
        # Ids reach Google as `transactionId`, which must not contain PII (ORDER_ID_CONTAINS_PII).
        raise ValueError("an object id must not be an email or contain whitespace")
    return f"{source_slug}-{object_part}-{stage_slug}"


_BLANK = re.compile(r"\s")


@functools.lru_cache(maxsize=1024)
def _slug(text: str) -> str:
    """Sources and stages are a few names per playbook (`order`, `Purchase`, `lead_MQL`): slugged
    once each, not once per conversion."""
    cleaned = text.strip().lower()
    slug = _SLUG.sub("_", cleaned).strip("_")
    if slug or not cleaned:
        return slug
    # A name without an ASCII letter or digit (`Покупка`, `購入`) slugged to nothing, and the
    # ValueError stopped the processor's batch for good. Its digest stands in, distinct per name;
    # ids of every other name stay as they were (a changed id is a duplicate at the platform).
    return hashlib.sha256(cleaned.encode()).hexdigest()[:16]


def split_batches(items: Sequence[T], size: int) -> list[list[T]]:
    if size < 1:
        raise ValueError("batch size must be positive")
    return [list(items[start : start + size]) for start in range(0, len(items), size)]


def _check_batch(events: Sequence[Any], platform: Platform) -> None:
    if not events:
        raise ValueError("a request needs at least one event")
    if len(events) > MAX_EVENTS[platform]:
        raise ValueError(f"{platform} accepts at most {MAX_EVENTS[platform]} events per request")


# --- should we send it? ------------------------------------------------------------------------


def check_event_age(conversion: Conversion, destination: Destination, now: float) -> str | None:
    """Why this event is too old (or too far in the future) for the platform, for good, or None.

    Meta: 7 days, 62 for `physical_store`; more than a minute ahead is refused (RudderStack's
    rule, secondary), so such an event waits until it is due (`held_until`), unless it is more
    than `MAX_HOLD_DAYS` ahead. Google: the conversion action's click-through window
    (`EXPIRED_EVENT`). TikTok: unverified; integrators cite 7 days for web/app and 28 for
    offline (capi.md §6.3). The last hour of each window is left out (`SEND_MARGIN`).
    """
    return event_age_reason(conversion.event_time, conversion.action_source, destination, now)


def held_until(event_time: float, destination: Destination, now: float) -> float | None:
    """When an event dated ahead may be sent (its own time), or None when it may be sent now or
    never (`event_age_reason`). Only Meta is known to refuse events from the future (§1.1)."""
    if isinstance(destination, MetaDestination):
        ahead = event_time - now
        if META_AHEAD < ahead <= MAX_HOLD_DAYS * DAY:
            return event_time
    return None


def _window_days(action_source: str, destination: Destination) -> int:
    """How many days after its `event_time` the platform still takes an event (capi.md §6.3)."""
    if isinstance(destination, MetaDestination):
        return 62 if action_source == "physical_store" else 7
    if isinstance(destination, GoogleDestination | GoogleAdsDestination):
        return destination.click_through_window_days
    return 28 if destination.event_source in ("offline", "crm") else 7


def _window_name(action_source: str, destination: Destination) -> str:
    days = _window_days(action_source, destination)
    if isinstance(destination, GoogleDestination | GoogleAdsDestination):
        return f"{platform_of(destination)}'s {days}-day click-through window"
    return f"{platform_of(destination)}'s {days}-day window"


def send_deadline(event_time: float, action_source: str, destination: Destination) -> float:
    """The last moment an event may be sent: its platform's window less `SEND_MARGIN`."""
    return event_time + _window_days(action_source, destination) * DAY - SEND_MARGIN


def past_deadline_reason(action_source: str, destination: Destination) -> str:
    """Why a retry is not scheduled after `send_deadline`."""
    return f"the next attempt would fall past {_window_name(action_source, destination)}"


def event_age_reason(
    event_time: float, action_source: str, destination: Destination, now: float
) -> str | None:
    """`check_event_age` from the two fields it reads (the sender has no `Conversion` for rows
    stored in their platform's form)."""
    age = now - event_time
    if isinstance(destination, MetaDestination) and age < -MAX_HOLD_DAYS * DAY:
        return f"meta: event_time is more than {MAX_HOLD_DAYS} days in the future"
    limit_days = _window_days(action_source, destination)
    name = platform_of(destination)
    if age > limit_days * DAY:
        if isinstance(destination, GoogleDestination | GoogleAdsDestination):
            return f"{name}: event is outside the {limit_days}-day click-through window"
        return f"{name}: event_time is older than {limit_days} days"
    if now > send_deadline(event_time, action_source, destination):
        window = _window_name(action_source, destination)
        return f"{name}: event_time is within the last hour of {window} (a margin for the request)"
    return None


def check_conversion(conversion: Conversion, destination: Destination, now: float) -> str | None:
    """The first reason not to send this conversion to this destination, or None.

    A returned reason is final for this destination: re-sending the same event cannot succeed.
    (None may still mean "not yet": `held_until`.)
    """
    platform = platform_of(destination)
    if conversion.ad_user_data is False:
        # Raw PII never leaves without consent (DESIGN.md); hashes are PII too.
        return f"{platform}: no consent to share user data (ad_user_data denied)"
    too_old = check_event_age(conversion, destination, now)
    if too_old:
        return too_old
    user = conversion.user
    if isinstance(destination, MetaDestination):
        # Meta requires a currency with a Purchase's value, and a request holding one without
        # can be refused whole. Guessing one (USD, as some tags do) would misstate revenue.
        purchase = conversion.event_name == "Purchase" and conversion.value is not None
        if purchase and not conversion.currency:
            return (
                "meta: a Purchase with a value needs a currency (none at the mapping's "
                "`currency` path and no `default_currency`)"
            )
        if conversion.action_source == "website" and not (
            user.user_agent and conversion.event_source_url
        ):
            return "meta: website events need client_user_agent and event_source_url"
        created = conversion.lead_created_at
        if created is not None and conversion.event_time < created:
            return "meta: CRM stage event is dated before the lead was created"
        # Any unhashed key (IP, user agent, click or browser id, lead id) makes user_data usable;
        # only without one is it worth normalising and hashing the rest to find out.
        plain = user.ip or user.user_agent or user.fbc or user.fbp or user.lead_id
        if not plain and not _meta_user_data(conversion, destination):
            return "meta: no usable user_data"
    elif isinstance(destination, GoogleDestination):
        has_click = user.gclid or user.gbraid or user.wbraid
        if not has_click and not hash_user_identifiers_google(user, destination.default_region):
            return "google: no click id and no usable user identifier"
    elif isinstance(destination, GoogleAdsDestination):
        has_click = user.gclid or user.gbraid or user.wbraid
        if not has_click and not user_identifiers(user, destination.default_region):
            # Enhanced conversions for leads match on hashed email and phone only (§2.3).
            return "google_ads: no click id and no usable email or phone"
    elif not hash_user_data_tiktok(user, destination.default_region):
        return "tiktok: no usable user data"
    return None


# --- Meta --------------------------------------------------------------------------------------


def compute_appsecret_proof(app_secret: str, access_token: str) -> str:
    """HMAC-SHA256(key=app_secret, msg=access_token), hex (capi.md §1.1; SDK `util.py`)."""
    return hmac.new(app_secret.encode(), access_token.encode(), hashlib.sha256).hexdigest()


def _drop_none(values: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in values.items() if value is not None}


def _meta_user_data(conversion: Conversion, destination: MetaDestination) -> dict[str, Any]:
    """The hashed `user_data` built by `for_destination`, or built now from `user`."""
    if conversion.meta_user_data is not None:
        return conversion.meta_user_data
    return hash_user_data_meta(
        conversion.user, destination.default_region, hash_external_id=destination.hash_external_id
    )


def build_meta_event(conversion: Conversion, destination: MetaDestination) -> dict[str, Any]:
    custom: dict[str, Any] = {}
    if conversion.value is not None:
        custom["value"] = conversion.value
    if conversion.currency:
        # The SDK lowercases currency; Meta accepts either case.
        custom["currency"] = conversion.currency.lower()
    if conversion.order_id is not None:
        custom["order_id"] = conversion.order_id
    if conversion.contents:
        contents: list[dict[str, Any]] = []
        ids: list[str] = []
        items = 0
        for c in conversion.contents:  # one pass: this runs for every event of a batch
            item: dict[str, Any] = {"id": c.id, "quantity": c.quantity}
            if c.item_price is not None:
                item["item_price"] = c.item_price
            contents.append(item)
            ids.append(c.id)
            items += c.quantity
        custom["contents"] = contents
        custom["content_ids"] = ids
        custom["num_items"] = items
    if destination.lead_event_source and conversion.action_source == "system_generated":
        # Conversion Leads (capi.md §1.4): these two are what mark the event as CRM-sourced.
        # Only on CRM events (a stage change, or a mapping that says `system_generated`): Meta's
        # payload specification is "for CRM events ... only", not a website checkout.
        custom["lead_event_source"] = destination.lead_event_source
        custom["event_source"] = "crm"
    event: dict[str, Any] = {
        "event_name": conversion.event_name,
        "event_time": int(conversion.event_time),
        "event_id": conversion.event_id,
        "action_source": conversion.action_source,
        "user_data": _meta_user_data(conversion, destination),
    }
    if conversion.event_source_url:
        event["event_source_url"] = conversion.event_source_url
    if custom:
        event["custom_data"] = custom
    # Always explicit (capi.md §6.4): `[]` says "not LDU", which differs from saying nothing.
    if conversion.ldu:
        event["data_processing_options"] = ["LDU"]
        event["data_processing_options_country"] = destination.ldu_country
        event["data_processing_options_state"] = destination.ldu_state
    else:
        event["data_processing_options"] = []
    return event


def build_meta_request(
    conversions: Sequence[Conversion],
    destination: MetaDestination,
    *,
    appsecret_proof: str | None = None,
) -> dict[str, Any]:
    """`{"data": [...], "test_event_code"?, "appsecret_proof"?}`; the access token travels in the
    query string (`meta_events_url`), not here, so bodies can be logged."""
    return wrap_meta_request(
        [build_meta_event(c, destination) for c in conversions],
        destination,
        appsecret_proof=appsecret_proof,
    )


def wrap_meta_request(
    events: Sequence[Any], destination: MetaDestination, *, appsecret_proof: str | None = None
) -> dict[str, Any]:
    """The request around events already built (dicts, or `msgspec.Raw` JSON of them)."""
    _check_batch(events, "meta")
    body: dict[str, Any] = {"data": events}
    if destination.test_event_code:
        body["test_event_code"] = destination.test_event_code
    if appsecret_proof:
        body["appsecret_proof"] = appsecret_proof
    return body


def meta_events_url(destination: MetaDestination) -> str:
    base = destination.base_url.rstrip("/")
    return f"{base}/{destination.api_version}/{destination.pixel_id}/events"


# --- Google Data Manager -----------------------------------------------------------------------

_GOOGLE_EVENT_SOURCE: dict[ActionSource, str] = {
    "website": "WEB",
    "app": "APP",
    "physical_store": "IN_STORE",
    "phone_call": "PHONE",
    "chat": "MESSAGE",
    "business_messaging": "MESSAGE",
    "email": "OTHER",
    "system_generated": "OTHER",
    "other": "OTHER",
}


def format_rfc3339(timestamp: float) -> str:
    moment = dt.datetime.fromtimestamp(int(timestamp), tz=dt.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _google_consent(conversion: Conversion) -> dict[str, str]:
    def flag(value: bool | None) -> str | None:
        if value is None:
            return None
        return "CONSENT_GRANTED" if value else "CONSENT_DENIED"

    return _drop_none(
        {
            "adUserData": flag(conversion.ad_user_data),
            "adPersonalization": flag(conversion.ad_personalization),
        }
    )


def build_google_event(conversion: Conversion, destination: GoogleDestination) -> dict[str, Any]:
    user = conversion.user
    event: dict[str, Any] = {
        # Dedup key (capi.md §6.2): the order id for purchases, else our milestone id.
        "transactionId": conversion.order_id or conversion.event_id,
        "eventTimestamp": format_rfc3339(conversion.event_time),
        "eventSource": _GOOGLE_EVENT_SOURCE[conversion.action_source],
    }
    identifiers = hash_user_identifiers_google(user, destination.default_region)
    if identifiers:
        event["userData"] = {"userIdentifiers": identifiers[:10]}
    click: dict[str, Any] = dict(click_id(user))
    device = _drop_none({"userAgent": user.user_agent, "ipAddress": user.ip})
    if device:
        click["landingPageDeviceInfo"] = device
    if click:
        event["adIdentifiers"] = click
    consent = _google_consent(conversion)
    if consent:
        event["consent"] = consent
    if conversion.value is not None:
        event["conversionValue"] = conversion.value
    if conversion.currency:
        event["currency"] = conversion.currency.upper()
    return event


def build_google_request(
    conversions: Sequence[Conversion], destination: GoogleDestination
) -> dict[str, Any]:
    """Data Manager `events:ingest` body; enums as names (the fake and Google accept both)."""
    return wrap_google_request(
        [build_google_event(c, destination) for c in conversions], destination
    )


def wrap_google_request(events: Sequence[Any], destination: GoogleDestination) -> dict[str, Any]:
    """The request around events already built (dicts, or `msgspec.Raw` JSON of them)."""
    _check_batch(events, "google")
    target: dict[str, Any] = {
        "operatingAccount": {
            "accountType": destination.account_type,
            "accountId": destination.operating_account_id,
        },
        "productDestinationId": destination.conversion_action_id,
    }
    if destination.login_account_id:
        target["loginAccount"] = {
            "accountType": destination.login_account_type,
            "accountId": destination.login_account_id,
        }
    return {
        "destinations": [target],
        "events": events,
        "encoding": "HEX",
        "validateOnly": destination.validate_only,
    }


def google_ingest_url(destination: GoogleDestination) -> str:
    return f"{destination.base_url.rstrip('/')}/v1/events:ingest"


# --- TikTok ------------------------------------------------------------------------------------


def build_tiktok_event(conversion: Conversion, destination: TikTokDestination) -> dict[str, Any]:
    properties: dict[str, Any] = _drop_none(
        {
            "value": conversion.value,
            "currency": conversion.currency.upper() if conversion.currency else None,
            "order_id": conversion.order_id,
        }
    )
    if conversion.contents:
        properties["contents"] = [
            _drop_none(
                {
                    "content_id": c.id,
                    "content_type": "product",
                    "content_name": c.name,
                    "content_category": c.category,
                    "price": c.item_price,
                    "quantity": c.quantity,
                }
            )
            for c in conversion.contents
        ]
    event: dict[str, Any] = {
        "event": conversion.event_name,
        "event_time": int(conversion.event_time),
        "event_id": conversion.event_id,
        "user": hash_user_data_tiktok(conversion.user, destination.default_region),
        "limited_data_use": conversion.ldu,
    }
    if conversion.event_source_url:
        event["page"] = {"url": conversion.event_source_url}
    if properties:
        event["properties"] = properties
    return event


def build_tiktok_request(
    conversions: Sequence[Conversion], destination: TikTokDestination
) -> dict[str, Any]:
    return wrap_tiktok_request(
        [build_tiktok_event(c, destination) for c in conversions], destination
    )


def wrap_tiktok_request(events: Sequence[Any], destination: TikTokDestination) -> dict[str, Any]:
    """The request around events already built (dicts, or `msgspec.Raw` JSON of them)."""
    _check_batch(events, "tiktok")
    body: dict[str, Any] = {
        "event_source": destination.event_source,
        "event_source_id": destination.pixel_code,
        "data": events,
    }
    if destination.test_event_code:
        body["test_event_code"] = destination.test_event_code
    if destination.partner_name:
        body["partner_name"] = destination.partner_name
    return body


def tiktok_track_url(destination: TikTokDestination) -> str:
    return f"{destination.base_url.rstrip('/')}/open_api/v1.3/event/track/"


# --- dispatch ----------------------------------------------------------------------------------


def build_event(conversion: Conversion, destination: Destination) -> dict[str, Any]:
    """One event in its platform's form: what `ConversionStage` stores in the outbox row, so
    the sender only wraps stored events into a request (`wrap_request`)."""
    if isinstance(destination, MetaDestination):
        return build_meta_event(conversion, destination)
    if isinstance(destination, GoogleDestination):
        return build_google_event(conversion, destination)
    if isinstance(destination, GoogleAdsDestination):
        return build_click_conversion(conversion, destination)
    return build_tiktok_event(conversion, destination)


def wrap_request(
    events: Sequence[Any], destination: Destination, *, appsecret_proof: str | None = None
) -> dict[str, Any]:
    """The request around events built by `build_event` (dicts, or `msgspec.Raw` JSON of them:
    msgspec writes those bytes as they are)."""
    if isinstance(destination, MetaDestination):
        return wrap_meta_request(events, destination, appsecret_proof=appsecret_proof)
    if isinstance(destination, GoogleDestination):
        return wrap_google_request(events, destination)
    if isinstance(destination, GoogleAdsDestination):
        return wrap_google_ads_request(events, destination)
    return wrap_tiktok_request(events, destination)


def build_request(
    conversions: Sequence[Conversion],
    destination: Destination,
    *,
    appsecret_proof: str | None = None,
) -> dict[str, Any]:
    events = [build_event(c, destination) for c in conversions]
    return wrap_request(events, destination, appsecret_proof=appsecret_proof)


def request_url(destination: Destination) -> str:
    if isinstance(destination, MetaDestination):
        return meta_events_url(destination)
    if isinstance(destination, GoogleDestination):
        return google_ingest_url(destination)
    if isinstance(destination, GoogleAdsDestination):
        return upload_url(destination)
    return tiktok_track_url(destination)
