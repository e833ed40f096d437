"""Conversions: the values the pure core works on.

A `Conversion` is one milestone (a CRM stage change, a checkout) with the raw identifiers of the person
it belongs to. Raw PII lives only in these values, inside our process: the builders in `payloads`
turn them into platform bodies that carry SHA-256 hashes instead (research/capi.md §1.3, §2.4, §3).
Secrets (access tokens, app secrets) are deliberately not part of any value here; the shell reads them
from the environment and passes them to the transport.
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec

Platform = Literal["meta", "google", "google_ads", "tiktok"]
"""`google` is the Data Manager API; `google_ads` the Google Ads API's `UploadClickConversions`,
an optional path for accounts Google still allows (capi.md §2.1)."""
PLATFORMS: tuple[Platform, ...] = ("meta", "google", "google_ads", "tiktok")

ActionSource = Literal[
    "email",
    "website",
    "app",
    "phone_call",
    "chat",
    "physical_store",
    "system_generated",
    "business_messaging",
    "other",
]
"""Meta's enum (facebook-business 26.0.3); mapped to Google's `eventSource` in `payloads`."""

TikTokEventSource = Literal["web", "app", "offline", "crm"]


class UserIdentifiers(msgspec.Struct, frozen=True, kw_only=True, gc=False, omit_defaults=True):
    """Raw, un-normalised identifiers of one person, as the CDP holds them.

    Any text field may also hold an already computed SHA-256 (64 hex chars); it is then sent as is.
    (`gc=False` here and below: these values hold only strings, numbers and each other, so they
    cannot be part of a reference cycle, and the sender keeps thousands of them alive at once.
    `omit_defaults` here and below: a stored outbox row leaves out the many unset fields, which
    makes it about a quarter smaller and cheaper to write and read.)
    """

    email: str | None = None
    phone: str | None = None
    phone_region: str | None = None
    """ISO-3166 alpha-2 region for a phone written without a country code (overrides the
    destination's `default_region`): no SDK adds a missing country code (capi.md §0.2)."""
    first_name: str | None = None
    last_name: str | None = None
    gender: str | None = None
    city: str | None = None
    state: str | None = None
    zip: str | None = None
    country: str | None = None
    date_of_birth: str | None = None
    """ISO `YYYY-MM-DD` or `YYYYMMDD`; anything ambiguous (`02/03/1990`) is not sent."""
    external_id: str | None = None
    lead_id: str | None = None
    """Meta Lead Ads `leadgen_id` (15–16 digits), sent unhashed (capi.md §1.4)."""
    gclid: str | None = None
    gbraid: str | None = None
    wbraid: str | None = None
    fbc: str | None = None
    fbp: str | None = None
    ttclid: str | None = None
    ttp: str | None = None
    ip: str | None = None
    user_agent: str | None = None


class Content(msgspec.Struct, frozen=True, kw_only=True, gc=False, omit_defaults=True):
    id: str
    quantity: int = 1
    item_price: float | None = None
    name: str | None = None
    category: str | None = None


class Conversion(msgspec.Struct, frozen=True, kw_only=True, gc=False, omit_defaults=True):
    event_name: str
    """Platform event name (`Purchase`, `Marketing Qualified Lead`, TikTok `CompletePayment`, …):
    mapping CRM stages to names is the playbook's job, not this module's."""
    event_time: float
    """Unix seconds (UTC) when the milestone happened — not when we send it."""
    event_id: str
    """Deterministic dedup id (`derive_event_id`); Meta/TikTok `event_id`, Google `transactionId`
    when there is no `order_id`."""
    user: UserIdentifiers
    action_source: ActionSource = "system_generated"
    value: float | None = None
    currency: str | None = None
    contents: tuple[Content, ...] = ()
    order_id: str | None = None
    event_source_url: str | None = None
    lead_created_at: float | None = None
    """For CRM lead stages: Meta discards a stage event dated before the lead (capi.md §1.4)."""
    ad_user_data: bool | None = None
    """Consent to send user data for advertising; None = unknown (Google: treated as not
    consented for EEA users, capi.md §6.4)."""
    ad_personalization: bool | None = None
    ldu: bool = False
    """Meta Limited Data Use (US state privacy laws); also TikTok `limited_data_use`."""
    meta_user_data: dict[str, Any] | None = None
    """Meta's `user_data`, hashed, when `identifiers.for_destination` has built it; `user` then
    keeps only the unhashed keys. (Built once: hashing into `UserIdentifiers` and then walking
    those digests again into Meta's form cost a sixth of a conversion.)"""


class MetaDestination(msgspec.Struct, frozen=True, kw_only=True):
    pixel_id: str
    api_version: str = "v26.0"
    base_url: str = "https://graph.facebook.com"
    test_event_code: str | None = None
    default_region: str | None = None
    lead_event_source: str | None = None
    """Name of the CRM for Conversion Leads (`HubSpot`, `In-house CRM`); when set, CRM events
    (`action_source: system_generated`, as stage changes are) carry
    `custom_data.lead_event_source` and `custom_data.event_source: crm` (capi.md §1.4)."""
    hash_external_id: bool = True
    """Meta recommends hashing but its Python SDK does not: must equal what the pixel sends."""
    ldu_country: int = 0
    ldu_state: int = 0
    """0/0 lets Meta geolocate; 1/1000 is US/California (capi.md §6.4)."""


class GoogleDestination(msgspec.Struct, frozen=True, kw_only=True):
    """Data Manager API (capi.md §2.2): the primary API for new offline-conversion importers."""

    operating_account_id: str
    conversion_action_id: str
    """Sent as `productDestinationId`."""
    account_type: str = "GOOGLE_ADS"
    login_account_id: str | None = None
    login_account_type: str = "GOOGLE_ADS"
    base_url: str = "https://datamanager.googleapis.com"
    validate_only: bool = False
    default_region: str | None = None
    click_through_window_days: int = 90
    """The conversion action's window; older events come back as `EXPIRED_EVENT` (§6.3)."""


class GoogleAdsDestination(msgspec.Struct, frozen=True, kw_only=True):
    """Google Ads API `customers/{id}:uploadClickConversions` (capi.md §2.3), REST transcoding.

    Closed to new adopters since 2026-06-15 (`CUSTOMER_NOT_ALLOWLISTED_FOR_THIS_FEATURE`): only
    for accounts that already import this way; everyone else uses `GoogleDestination`. The
    developer token is a secret and travels with the access token, outside this value."""

    customer_id: str
    """The account that owns the conversion action, digits only."""
    conversion_action_id: str
    conversion_action_owner: str | None = None
    """The account in the action's resource name when it is not `customer_id` (an action a
    manager account owns); None: `customer_id`."""
    login_customer_id: str | None = None
    """The manager account to act through (`login-customer-id` header), digits only."""
    api_version: str = "v26"
    base_url: str = "https://googleads.googleapis.com"
    validate_only: bool = False
    default_region: str | None = None
    click_through_window_days: int = 90


class TikTokDestination(msgspec.Struct, frozen=True, kw_only=True):
    pixel_code: str
    event_source: TikTokEventSource = "web"
    base_url: str = "https://business-api.tiktok.com"
    test_event_code: str | None = None
    partner_name: str | None = None
    default_region: str | None = None


Destination = MetaDestination | GoogleDestination | GoogleAdsDestination | TikTokDestination


def platform_of(destination: Destination) -> Platform:
    if isinstance(destination, MetaDestination):
        return "meta"
    if isinstance(destination, GoogleDestination):
        return "google"
    if isinstance(destination, GoogleAdsDestination):
        return "google_ads"
    return "tiktok"
